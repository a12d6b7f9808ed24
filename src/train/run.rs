//! The training loop: UGATIT-pytorch's `--phase train`, with exact resume, progress bar, loss
//! log, loss plot and sample grids.
//!
//! Layout of `<result_dir>/<dataset>/`: `config.toml` (the effective configuration),
//! `losses.csv` (every loss term of every step), `losses.png`, `img/A2B_%07d.png` and
//! `img/B2A_%07d.png` (sample grids), `model/latest.safetensors` and
//! `model/<dataset>_params_%07d.safetensors`.

use super::checkpoint;
use super::config::TrainConfig;
use super::optim::{learning_rate, AdamConfig};
use super::step::{PenaltyNoise, Trainer, LOSS_NAMES};
use crate::data::augment::test_transform;
use crate::data::dataset::Dataset;
use crate::data::loader::UnpairedLoader;
use crate::data::rng::mix64;
use crate::io::image::load_rgb8;
use crate::model::UGATIT;
use crate::pictures::{plot_losses, render_grid, sample_columns, save_png};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Tensor};

/// Images per domain and split shown in the sample grids (the reference's 5 train + 5 test).
const SAMPLES_PER_SPLIT: usize = 5;

/// Where a run's state comes from.
#[derive(Debug, Clone)]
pub enum Start {
    /// Fresh networks from the seed.
    Fresh,
    /// Our training checkpoint: networks, optimisers and step.
    Resume(PathBuf),
    /// Networks from any checkpoint [`crate::io::checkpoint::read`] reads; the step from a name ending in
    /// `_params_<step>` (UGATIT-pytorch's numbered checkpoints), else 0.
    Import(PathBuf),
}

/// The step in a UGATIT-pytorch checkpoint name (`selfie2anime_params_0100000.pt`).
pub fn step_in_name(path: &Path) -> Option<i64> {
    path.file_stem()?.to_str()?.rsplit_once("_params_")?.1.parse().ok()
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// All iterations done.
    Finished,
    /// Stopped by SIGINT/SIGTERM after saving the latest checkpoint at this step.
    Interrupted(i64),
}

/// Where the run's files go.
pub struct RunPaths {
    pub dir: PathBuf,
}

impl RunPaths {
    pub fn new(config: &TrainConfig) -> Self {
        Self { dir: config.run_dir() }
    }
    pub fn latest(&self) -> PathBuf {
        self.dir.join("model").join("latest.safetensors")
    }
    fn numbered(&self, step: i64) -> PathBuf {
        let name = self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.dir.join("model").join(format!("{name}_params_{step:07}.safetensors"))
    }
    fn csv(&self) -> PathBuf {
        self.dir.join("losses.csv")
    }
}

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
        let a = Tensor::cat(
            &[sample_batch(&data.train_a, img_size, device)?, sample_batch(&data.test_a, img_size, device)?],
            0,
        );
        let b = Tensor::cat(
            &[sample_batch(&data.train_b, img_size, device)?, sample_batch(&data.test_b, img_size, device)?],
            0,
        );
        Ok(Self { a, b })
    }

    fn write(&self, nets: &UGATIT, dir: &Path, step: i64, tile: u32) -> Result<()> {
        let a2b = render_grid(&sample_columns(&self.a, &nets.gen_a2b, &nets.gen_b2a), tile)?;
        save_png(&a2b, &dir.join(format!("A2B_{step:07}.png")))?;
        let b2a = render_grid(&sample_columns(&self.b, &nets.gen_b2a, &nets.gen_a2b), tile)?;
        save_png(&b2a, &dir.join(format!("B2A_{step:07}.png")))
    }
}

/// The per-step loss log, kept in memory for the plot and appended to `losses.csv`.
struct LossLog {
    writer: BufWriter<File>,
    history: Vec<(i64, Vec<f64>)>,
}

impl LossLog {
    /// Opens the log, keeping only the rows of steps up to `last_step` (rows a killed run wrote
    /// after its last checkpoint would otherwise appear twice).
    fn open(path: &Path, last_step: i64) -> Result<Self> {
        let mut history: Vec<(i64, Vec<f64>)> = Vec::new();
        if last_step > 0 && path.exists() {
            let reader = BufReader::new(File::open(path).with_context(|| format!("reading {}", path.display()))?);
            for line in reader.lines().skip(1) {
                let line = line?;
                let mut fields = line.split(',');
                let Some(Ok(step)) = fields.next().map(str::parse::<i64>) else { continue };
                if step > last_step {
                    break;
                }
                let _lr = fields.next();
                history.push((step, fields.filter_map(|f| f.parse().ok()).collect()));
            }
        }
        let mut text = format!("step,lr,{}\n", LOSS_NAMES.join(","));
        for (step, values) in &history {
            text.push_str(&Self::row(*step, f64::NAN, values));
        }
        // Rewritten whole (small), then appended to.
        crate::io::atomic::write_atomic(path, text.as_bytes())?;
        let file = OpenOptions::new().append(true).open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(Self { writer: BufWriter::new(file), history })
    }

    fn row(step: i64, lr: f64, values: &[f64]) -> String {
        let values: Vec<String> = values.iter().map(|v| format!("{v:.8}")).collect();
        format!("{step},{lr:e},{}\n", values.join(","))
    }

    fn push(&mut self, step: i64, lr: f64, values: Vec<f64>) -> Result<()> {
        self.writer.write_all(Self::row(step, lr, &values).as_bytes())?;
        self.history.push((step, values));
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(self.writer.flush()?)
    }

    /// Plots the total and main terms.
    fn plot(&self, path: &Path) -> Result<()> {
        let pick = ["d_loss", "g_loss", "G_recon_A", "G_recon_B", "G_cam_A", "G_cam_B"];
        let series: Vec<(&str, Vec<(f64, f64)>)> = pick
            .iter()
            .filter_map(|name| {
                let i = LOSS_NAMES.iter().position(|n| n == name)?;
                Some((*name, self.history.iter().filter_map(|(s, v)| Some((*s as f64, *v.get(i)?))).collect()))
            })
            .collect();
        plot_losses(&series, path)
    }
}

/// A per-step seed for libtorch's generator (gradient-penalty draws), so resumed runs draw alike.
fn step_seed(seed: u64, step: i64) -> i64 {
    (mix64(seed ^ mix64(step as u64)) >> 1) as i64
}

fn progress_bar(start: i64, total: i64) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_position((start - 1) as u64);
    let style = ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}, {per_sec}] {msg}")
        .expect("valid template");
    bar.set_style(style);
    bar
}

/// Runs (or with `resume`, continues) training as `config` says; `interrupt` is polled between
/// steps.
pub fn train(config: &TrainConfig, start: &Start, interrupt: Arc<AtomicBool>) -> Result<Outcome> {
    config.validate()?;
    let device = crate::device::start(&config.device, config.cuda_settings())?;
    let paths = RunPaths::new(config);
    for sub in ["model", "img"] {
        std::fs::create_dir_all(paths.dir.join(sub)).with_context(|| format!("creating {}", paths.dir.display()))?;
    }

    let report = Dataset::scan(&config.dataset, config.skip_bad_images)?;
    for bad in &report.skipped {
        eprintln!("skipping {bad}");
    }
    let data = report.dataset;

    tch::manual_seed(config.seed as i64);
    let nets = UGATIT::new(config.model_config()?, device);
    let adam = AdamConfig { weight_decay: config.weight_decay, ..AdamConfig::default() };
    let mut trainer = Trainer::new(nets, config.gan_type, config.loss_weights(), adam);
    let done = match start {
        Start::Fresh => 0,
        Start::Resume(path) => checkpoint::load(path, &mut trainer)?,
        Start::Import(path) => {
            let tensors = crate::io::checkpoint::read(path)?.tensors;
            crate::io::safetensors::copy_into(&tensors, "", &trainer.nets.vs, path)?;
            step_in_name(path).unwrap_or(0)
        }
    };
    crate::io::atomic::write_atomic(&paths.dir.join("config.toml"), config.to_toml().as_bytes())?;
    if done >= config.iteration {
        eprintln!("{}: already at step {done} of {}", paths.latest().display(), config.iteration);
        return Ok(Outcome::Finished);
    }

    let mut log = LossLog::open(&paths.csv(), done)?;
    let samples = Samples::new(&data, config.img_size, device)?;
    let workers = 2;
    let mut loader = UnpairedLoader::new(
        data.train_a.clone(),
        data.train_b.clone(),
        config.batch_size as usize,
        config.img_size as u32,
        config.seed,
        (done + 1) as u64,
        workers,
    )?;
    let bar = progress_bar(done + 1, config.iteration);
    let started = Instant::now();
    for step in done + 1..=config.iteration {
        let (real_a, real_b) = loader.next()?;
        let (real_a, real_b) = (real_a.to_device(device), real_b.to_device(device));
        let lr = learning_rate(config.lr, step, config.iteration, config.decay_flag);
        tch::manual_seed(step_seed(config.seed, step));
        let noise = PenaltyNoise::draw(config.gan_type, &real_a);
        let losses = trainer.step(&real_a, &real_b, &noise, lr).values()?;
        let (d_loss, g_loss) = (losses.d_loss, losses.g_loss);
        log.push(step, lr, losses.into_values())?;
        bar.set_position(step as u64);
        bar.set_message(format!("d_loss {d_loss:.5} g_loss {g_loss:.5}"));

        if step % config.print_freq == 0 {
            let line = format!(
                "[{step:>5}/{:>5}] time: {:.4} d_loss: {d_loss:.8}, g_loss: {g_loss:.8}",
                config.iteration,
                started.elapsed().as_secs_f64()
            );
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
            samples.write(&trainer.nets, &paths.dir.join("img"), step, config.img_size as u32)?;
            log.flush()?;
            log.plot(&paths.dir.join("losses.png"))?;
        }
        if step % config.save_freq == 0 {
            checkpoint::save(&paths.numbered(step), &trainer, step, config)?;
        }
        let interrupted = interrupt.load(Ordering::SeqCst);
        if step % config.save_latest_freq == 0 || step == config.iteration || interrupted {
            log.flush()?;
            checkpoint::save(&paths.latest(), &trainer, step, config)?;
        }
        if interrupted {
            bar.abandon_with_message(format!("interrupted at step {step}; saved {}", paths.latest().display()));
            return Ok(Outcome::Interrupted(step));
        }
    }
    log.flush()?;
    bar.finish();
    Ok(Outcome::Finished)
}
