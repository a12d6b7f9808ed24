//! What a training run writes into its folder (see [`super::run_dir`]) and when: the loss log and
//! plot, TensorBoard events, sample grids, KID rows and checkpoints. In a distributed run only
//! rank 0 has [`Outputs`]; every rank knows from [`writes_at`] when rank 0 is busy writing.

use super::checkpoint;
use super::config::TrainConfig;
use super::evaluate::{plain_mean, Evaluator, COLUMNS};
use super::log::LossLog;
use super::run_dir::RunPaths;
use super::step::Trainer;
use crate::data::augment::test_transform;
use crate::data::dataset::Dataset;
use crate::io::image::load_rgb8;
use crate::model::UGATIT;
use crate::observe::tensorboard::{EventWriter, Value};
use crate::pictures::{png_bytes, render_grid, sample_columns, save_png};
use anyhow::Result;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// Images per domain and split shown in the sample grids (the reference's 5 train + 5 test).
const SAMPLES_PER_SPLIT: usize = 5;

/// A batch of fixed images for the sample grids, `[N, 3, S, S]` on the training device.
fn sample_batch(paths: &[PathBuf], img_size: i64, device: Device) -> Result<Tensor> {
    let tensors = paths
        .iter()
        .take(SAMPLES_PER_SPLIT)
        .map(|p| test_transform(&load_rgb8(p)?, img_size as u32))
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::stack(&tensors, 0).to_device(device))
}

/// Fixed sample images: the first train and test images of each domain (test transform).
struct Samples {
    a: Tensor,
    b: Tensor,
}

impl Samples {
    fn new(data: &Dataset, img_size: i64, device: Device) -> Result<Self> {
        let both = |train: &[PathBuf], test: &[PathBuf]| -> Result<Tensor> {
            Ok(Tensor::cat(&[sample_batch(train, img_size, device)?, sample_batch(test, img_size, device)?], 0))
        };
        Ok(Self { a: both(&data.train_a, &data.test_a)?, b: both(&data.train_b, &data.test_b)? })
    }

    /// Writes the grids of `step` into `dir` and returns them as TensorBoard images.
    fn write(&self, nets: &UGATIT, dir: &Path, step: i64, tile: u32) -> Result<Vec<(&'static str, Value)>> {
        let mut images = Vec::new();
        for (tag, real, forward, backward) in
            [("A2B", &self.a, &nets.gen_a2b, &nets.gen_b2a), ("B2A", &self.b, &nets.gen_b2a, &nets.gen_a2b)]
        {
            let grid = render_grid(&sample_columns(real, forward, backward), tile)?;
            save_png(&grid, &dir.join(format!("{tag}_{step:07}.png")))?;
            let (width, height) = grid.dimensions();
            let name = if tag == "A2B" { "samples/A2B" } else { "samples/B2A" };
            images.push((name, Value::Image { png: png_bytes(&grid)?, width, height }));
        }
        Ok(images)
    }
}

/// Whether rank 0 writes anything after `step` (grids, checkpoints, KID): the same answer on
/// every rank.
pub fn writes_at(config: &TrainConfig, step: i64, interrupted: bool) -> bool {
    let every = |freq: i64| freq > 0 && step % freq == 0;
    step == config.iteration
        || interrupted
        || every(config.print_freq)
        || every(config.save_freq)
        || every(config.save_latest_freq)
        || every(config.eval_freq)
}

/// The open outputs of a run.
pub struct Outputs {
    paths: RunPaths,
    log: LossLog,
    board: EventWriter,
    samples: Samples,
    evaluator: Option<(Evaluator, Option<f64>)>,
    /// The last checkpoint written and its step.
    saved: (i64, Option<PathBuf>),
}

impl Outputs {
    /// Opens the logs of a run that has completed `done` steps (the run folder exists).
    pub fn open(
        paths: RunPaths,
        data: &Dataset,
        evaluator: Option<Evaluator>,
        config: &TrainConfig,
        done: i64,
        device: Device,
    ) -> Result<Self> {
        let evaluator = match evaluator {
            Some(mut e) => {
                let best = e.open_log(&paths.dir, done)?;
                Some((e, best))
            }
            None => None,
        };
        let log = LossLog::open(&paths.csv(), done)?;
        let board = EventWriter::create(&paths.dir.join("tb"))?;
        let samples = Samples::new(data, config.img_size, device)?;
        let saved = (done, (done > 0).then(|| paths.latest()));
        Ok(Self { paths, log, board, samples, evaluator, saved })
    }

    /// Logs one step's learning rate and loss terms.
    pub fn record(&mut self, step: i64, lr: f64, named: &[(&'static str, f64)]) -> Result<()> {
        self.log.push(step, lr, named.iter().map(|(_, v)| *v).collect())?;
        let mut scalars: Vec<(&str, Value)> = vec![("lr", Value::Scalar(lr as f32))];
        scalars.extend(named.iter().map(|(name, v)| (*name, Value::Scalar(*v as f32))));
        self.board.write(step, &scalars)
    }

    /// What a diverged run leaves: the last checkpoint, untouched (after flushing the log).
    pub fn kept(&mut self) -> Result<String> {
        self.log.flush()?;
        Ok(match &self.saved.1 {
            Some(path) => format!("the last checkpoint, {} (step {}), is untouched", path.display(), self.saved.0),
            None => "no checkpoint was written".to_string(),
        })
    }

    /// Everything due after `step`: grids and plot, numbered checkpoint, KID (and the best
    /// checkpoint), the latest checkpoint (also when `interrupted`); `say` prints a line.
    pub fn after_step(
        &mut self,
        step: i64,
        trainer: &Trainer,
        config: &TrainConfig,
        interrupted: bool,
        say: &dyn Fn(String),
    ) -> Result<()> {
        let last = step == config.iteration;
        if step % config.print_freq == 0 || last {
            let grids = self.samples.write(&trainer.nets, &self.paths.dir.join("img"), step, config.img_size as u32)?;
            self.board.write(step, &grids)?;
            self.board.flush()?;
            self.log.flush()?;
            self.log.plot(&self.paths.dir.join("losses.png"))?;
        }
        if step % config.save_freq == 0 {
            checkpoint::save(&self.paths.numbered(step), trainer, step, config)?;
        }
        if let Some((evaluator, best)) = self.evaluator.as_mut().filter(|_| step % config.eval_freq.max(1) == 0 || last)
        {
            let row = evaluator.evaluate(&trainer.nets, step)?;
            let kids: Vec<(&str, Value)> =
                COLUMNS.iter().zip(&row).map(|(n, v)| (*n, Value::Scalar(*v as f32))).collect();
            self.board.write(step, &kids)?;
            let score = plain_mean(&row);
            say(format!("[{step:>5}/{:>5}] KID x100 A2B {:.4}, B2A {:.4}", config.iteration, row[0], row[2]));
            if best.is_none_or(|b| score < b) {
                *best = Some(score);
                checkpoint::save(&self.paths.dir.join("model").join("best.safetensors"), trainer, step, config)?;
            }
        }
        if step % config.save_latest_freq == 0 || last || interrupted {
            self.log.flush()?;
            checkpoint::save(&self.paths.latest(), trainer, step, config)?;
            self.saved = (step, Some(self.paths.latest()));
        }
        Ok(())
    }

    /// Flushes the logs at the end of a run.
    pub fn finish(&mut self) -> Result<()> {
        self.log.flush()?;
        self.board.flush()
    }

    pub fn paths(&self) -> &RunPaths {
        &self.paths
    }
}
