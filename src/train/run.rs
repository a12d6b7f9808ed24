//! The training loop: UGATIT-pytorch's `--phase train`, with exact resume, progress bar, loss
//! log, loss plot and sample grids, into the run folder described in [`super::run_dir`].
//!
//! Before anything is written the configuration and the whole dataset are checked and the
//! folder's lock is taken; a new run refuses a folder that holds another run unless told to
//! replace it; non-finite losses stop the run before they reach a checkpoint.

use super::checkpoint;
use super::config::TrainConfig;
use super::evaluate::{plain_mean, Evaluator, COLUMNS};
use super::log::LossLog;
use super::optim::{learning_rate, AdamConfig};
use super::run_dir::{RunLock, RunPaths};
use super::step::{LossTerms, PenaltyNoise, Trainer};
use crate::data::augment::test_transform;
use crate::data::dataset::Dataset;
use crate::data::loader::UnpairedLoader;
use crate::data::rng::mix64;
use crate::io::image::load_rgb8;
use crate::model::UGATIT;
use crate::observe::tensorboard::{EventWriter, Value};
use crate::pictures::{png_bytes, render_grid, sample_columns, save_png};
use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
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

/// The step in a UGATIT-pytorch checkpoint name (`selfie2anime_params_0100000.pt`) or an
/// official TF one (`UGATIT.model-1000000`, `.index` or not).
pub fn step_in_name(path: &Path) -> Option<i64> {
    let name = path.file_name()?.to_str()?;
    let name = name.strip_suffix(".index").unwrap_or(name);
    if let Some((_, step)) = name.rsplit_once(".model-") {
        return step.parse().ok();
    }
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

/// How a run may treat its folder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// A new run (fresh or imported) may replace the files of an earlier run in its folder.
    pub overwrite: bool,
}

/// The step a run starts after, read from the checkpoint without building a model.
fn starting_step(start: &Start) -> Result<i64> {
    Ok(match start {
        Start::Fresh => 0,
        Start::Resume(path) => checkpoint::info(path)?.step,
        Start::Import(path) => step_in_name(path).unwrap_or(0),
    })
}

/// Refuses a new run into a folder that holds an earlier run, unless `overwrite`, in which case
/// the earlier run's files are removed.
fn claim_folder(paths: &RunPaths, start: &Start, options: Options) -> Result<()> {
    let previous = paths.previous_run();
    if matches!(start, Start::Resume(_)) || previous.is_empty() {
        return Ok(());
    }
    if !options.overwrite {
        bail!(
            "{} holds an earlier run ({}): continue it with --resume, or start over with --overwrite (its files are removed first)",
            paths.dir.display(),
            previous.join(", ")
        );
    }
    eprintln!("--overwrite: removing the earlier run's {} from {}", previous.join(", "), paths.dir.display());
    paths.remove_previous_run()
}

/// Says when the first outputs will appear, so a short run is not a surprise.
fn announce(config: &TrainConfig, done: i64, paths: &RunPaths) {
    let next = |freq: i64| ((done / freq + 1) * freq).min(config.iteration);
    eprintln!(
        "training steps {}..{} into {}: sample grids and loss plot every {} steps (first at step {}), latest checkpoint every {} (first at step {}), numbered checkpoints every {}",
        done + 1,
        config.iteration,
        paths.dir.display(),
        config.print_freq,
        next(config.print_freq),
        config.save_latest_freq,
        next(config.save_latest_freq),
        config.save_freq,
    );
}

/// The networks of a `--resume-from` checkpoint, read before anything is written.
fn import(path: &Path) -> Result<crate::io::checkpoint::Checkpoint> {
    let checkpoint = crate::io::checkpoint::read(path)?;
    if checkpoint.metadata.contains_key(crate::io::checkpoint::VARIANT_KEY) {
        bail!(
            "{}: the official TensorFlow model cannot be trained further here: its generator and discriminators differ from UGATIT-pytorch's (use it with translate, test, eval or serve)",
            path.display()
        );
    }
    Ok(checkpoint)
}

/// Runs (or with [`Start::Resume`], continues) training as `config` says; `interrupt` is polled
/// between steps.
pub fn train(config: &TrainConfig, start: &Start, options: Options, interrupt: &AtomicBool) -> Result<Outcome> {
    config.validate()?;
    let compute = config.start_compute(crate::precision::Workload::Training)?;
    let device = compute.device;
    if device == Device::Cpu {
        config.architecture().check_host_memory(true)?;
    }
    let report = Dataset::scan(&config.dataset, config.skip_bad_images)?;
    let imported = match start {
        Start::Import(path) => Some(import(path)?),
        _ => None,
    };
    let done = starting_step(start)?;
    if done > config.iteration {
        bail!(
            "the checkpoint is at step {done}, past --iteration {}: give --iteration {} or more to train further",
            config.iteration,
            done + 1
        );
    }
    let paths = RunPaths::new(config);
    if done == config.iteration {
        eprintln!("{}: already at step {done} of {}; nothing to do", paths.dir.display(), config.iteration);
        return Ok(Outcome::Finished);
    }
    let evaluator = (config.eval_freq > 0)
        .then(|| {
            let size = config.img_size as u32;
            Evaluator::new(&report.dataset.test_a, &report.dataset.test_b, config.eval_limit as usize, size, device)
        })
        .transpose()?;
    let _lock = RunLock::acquire(&paths.dir)?;
    claim_folder(&paths, start, options)?;
    let stale = paths.remove_stale_temp_files()?;
    if stale > 0 {
        eprintln!("removed {stale} temporary file(s) left by an interrupted save");
    }
    paths.create()?;
    for bad in &report.skipped {
        eprintln!("skipping {bad}");
    }
    let data = report.dataset;

    tch::manual_seed(config.seed as i64);
    let nets = UGATIT::new(config.model_config()?, device);
    let adam = AdamConfig { weight_decay: config.weight_decay, ..AdamConfig::default() };
    let mut trainer = Trainer::new(nets, config.gan_type, config.loss_weights(), adam).computing(compute);
    match (start, &imported) {
        (Start::Resume(path), _) => drop(checkpoint::load(path, &mut trainer)?),
        (Start::Import(path), Some(imported)) => {
            crate::io::safetensors::copy_into(&imported.tensors, "", &trainer.nets.vs, path)?
        }
        _ => {}
    }
    crate::io::atomic::write_atomic(&paths.dir.join("config.toml"), config.to_toml().as_bytes())?;
    announce(config, done, &paths);

    let mut evaluator = match evaluator {
        Some(mut e) => {
            let best = e.open_log(&paths.dir, done)?;
            Some((e, best))
        }
        None => None,
    };
    let mut log = LossLog::open(&paths.csv(), done)?;
    let mut board = EventWriter::create(&paths.dir.join("tb"))?;
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
    let mut saved = (done, if done > 0 { Some(paths.latest()) } else { None });
    let mut last_losses = (f64::NAN, f64::NAN);
    let say = |line: String| if bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) };
    for step in done + 1..=config.iteration {
        let (real_a, real_b) = loader.next()?;
        let (real_a, real_b) = (real_a.to_device(device), real_b.to_device(device));
        let lr = learning_rate(config.lr, step, config.iteration, config.decay_flag);
        tch::manual_seed(step_seed(config.seed, step));
        let noise = PenaltyNoise::draw(config.gan_type, &real_a);
        let losses = trainer.step(&real_a, &real_b, &noise, lr).values()?;
        let (d_loss, g_loss) = (losses.d_loss, losses.g_loss);
        last_losses = (d_loss, g_loss);
        let named: Vec<(&'static str, f64)> =
            LossTerms::<f64>::NAMES.iter().copied().zip(losses.into_values()).collect();
        log.push(step, lr, named.iter().map(|(_, v)| *v).collect())?;
        let mut scalars: Vec<(&str, Value)> = vec![("lr", Value::Scalar(lr as f32))];
        scalars.extend(named.iter().map(|(name, v)| (*name, Value::Scalar(*v as f32))));
        board.write(step, &scalars)?;
        if let Some((name, value)) = named.iter().find(|(_, v)| !v.is_finite()) {
            log.flush()?;
            bar.abandon();
            let kept = match &saved.1 {
                Some(path) => format!("the last checkpoint, {} (step {}), is untouched", path.display(), saved.0),
                None => "no checkpoint was written".to_string(),
            };
            bail!(
                "step {step}: the loss term {name} is {value}; training diverged and was stopped ({kept}; losses.csv has every term up to this step)"
            );
        }
        bar.set_position(step as u64);
        bar.set_message(format!("d_loss {d_loss:.5} g_loss {g_loss:.5}"));

        let last = step == config.iteration;
        if step % config.print_freq == 0 || last {
            let elapsed = started.elapsed().as_secs_f64();
            say(format!(
                "[{step:>5}/{:>5}] time: {elapsed:.4} d_loss: {d_loss:.8}, g_loss: {g_loss:.8}",
                config.iteration
            ));
            let grids = samples.write(&trainer.nets, &paths.dir.join("img"), step, config.img_size as u32)?;
            board.write(step, &grids)?;
            board.flush()?;
            log.flush()?;
            log.plot(&paths.dir.join("losses.png"))?;
        }
        if step % config.save_freq == 0 {
            checkpoint::save(&paths.numbered(step), &trainer, step, config)?;
        }
        if let Some((evaluator, best)) = evaluator.as_mut().filter(|_| step % config.eval_freq.max(1) == 0 || last) {
            let row = evaluator.evaluate(&trainer.nets, step)?;
            let kids: Vec<(&str, Value)> =
                COLUMNS.iter().zip(&row).map(|(n, v)| (*n, Value::Scalar(*v as f32))).collect();
            board.write(step, &kids)?;
            let score = plain_mean(&row);
            say(format!("[{step:>5}/{:>5}] KID x100 A2B {:.4}, B2A {:.4}", config.iteration, row[0], row[2]));
            if best.is_none_or(|b| score < b) {
                *best = Some(score);
                checkpoint::save(&paths.dir.join("model").join("best.safetensors"), &trainer, step, config)?;
            }
        }
        let interrupted = interrupt.load(Ordering::SeqCst);
        if step % config.save_latest_freq == 0 || last || interrupted {
            log.flush()?;
            checkpoint::save(&paths.latest(), &trainer, step, config)?;
            saved = (step, Some(paths.latest()));
        }
        if interrupted {
            bar.abandon_with_message(format!("interrupted at step {step}; saved {}", paths.latest().display()));
            return Ok(Outcome::Interrupted(step));
        }
    }
    log.flush()?;
    board.flush()?;
    bar.finish();
    eprintln!(
        "finished step {} ({} steps in {:.1} s): d_loss {:.5}, g_loss {:.5}; checkpoint {}, every loss in {}",
        config.iteration,
        config.iteration - done,
        started.elapsed().as_secs_f64(),
        last_losses.0,
        last_losses.1,
        paths.latest().display(),
        paths.csv().display()
    );
    Ok(Outcome::Finished)
}
