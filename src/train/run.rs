//! The training loop: UGATIT-pytorch's `--phase train`, with exact resume, progress bar, loss
//! log, loss plot and sample grids, into the run folder described in [`super::run_dir`].
//!
//! Before anything is written the configuration and the whole dataset are checked and the
//! folder's lock is taken; a new run refuses a folder that holds another run unless told to
//! replace it; non-finite losses stop the run before they reach a checkpoint.
//!
//! Under torchrun's variables the process is one rank of a data-parallel job
//! ([`crate::distributed`]): it joins the others, checks that they were given the same settings,
//! takes rank 0's weights, trains on its slice of each global batch, and leaves every file to
//! rank 0. The ranks agree after each step whether any was asked to stop, so all stop after the
//! same step, with one checkpoint.

use super::checkpoint;
use super::config::TrainConfig;
use super::evaluate::Evaluator;
use super::graphed::Steps;
use super::optim::{learning_rate, AdamConfig};
use super::outputs::{writes_at, Outputs};
use super::run_dir::{RunLock, RunPaths};
use super::step::{LossTerms, PenaltyNoise, Trainer};
use crate::data::dataset::Dataset;
use crate::data::loader::{BatchPlan, UnpairedLoader};
use crate::data::rng::mix64;
use crate::distributed::{Distributed, World};
use crate::model::UGATIT;
use crate::precision::{Compute, Precision, Workload};
use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::Device;

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

/// The rank's configuration: a CUDA run puts each rank on `cuda:LOCAL_RANK`.
pub fn for_rank(config: &TrainConfig, world: Option<&World>) -> Result<TrainConfig> {
    let mut config = config.clone();
    if let Some(world) = world {
        if crate::device::parse(&config.device)?.is_cuda() {
            config.device = format!("cuda:{}", world.local_rank);
        }
    }
    Ok(config)
}

/// The settings every rank must share: all but where each runs.
fn shared_settings(config: &TrainConfig) -> String {
    TrainConfig { device: String::new(), ..config.clone() }.to_toml()
}

/// `key rank0 vs this` for each TOML line that differs.
fn setting_differences(first: &str, mine: &str) -> String {
    let lines = |text: &str| text.lines().map(str::to_owned).collect::<std::collections::BTreeSet<_>>();
    let (a, b) = (lines(first), lines(mine));
    let differ: Vec<String> = b.difference(&a).cloned().collect();
    let theirs: Vec<String> = a.difference(&b).cloned().collect();
    format!("this rank has {} where rank 0 has {}", differ.join(", "), theirs.join(", "))
}

/// Joins the job this process is a rank of, if any, and checks that every rank has the same
/// settings and starting step (`done` steps behind it).
pub fn join(world: Option<World>, config: &TrainConfig, device: Device, done: i64) -> Result<Option<Rc<Distributed>>> {
    let Some(world) = world else { return Ok(None) };
    if device == Device::Cpu {
        tch::set_num_threads(world.cpu_threads());
    }
    let dist = Distributed::join(world, config.dist_backend, device, config.dist_timeout())?;
    dist.check_same("settings", &shared_settings(config), setting_differences)?;
    dist.check_same("starting step", &done.to_string(), |a, b| format!("step {b} where rank 0 starts after step {a}"))?;
    if dist.writes() {
        eprintln!(
            "{} ranks joined ({} per machine); global batch {} = {} ranks x --batch-size {}",
            dist.size(),
            dist.world.local_size,
            dist.size() as i64 * config.batch_size,
            dist.size(),
            config.batch_size
        );
    }
    Ok(Some(Rc::new(dist)))
}

/// Refuses to resume a checkpoint of a different number of ranks: the global batch (ranks ×
/// `--batch-size`) decides the data order, so it must stay the same.
fn check_world_size(start: &Start, ranks: usize) -> Result<()> {
    let Start::Resume(path) = start else { return Ok(()) };
    let saved = checkpoint::info(path)?.world_size;
    if saved != ranks as i64 {
        bail!(
            "{} was written by a run of {saved} rank(s); resume it with {saved} (--nproc-per-node {saved} or torchrun's), because the global batch (ranks x --batch-size) decides the data order",
            path.display()
        );
    }
    Ok(())
}

/// Runs (or with [`Start::Resume`], continues) training as `config` says; `interrupt` is polled
/// between steps.
pub fn train(config: &TrainConfig, start: &Start, options: Options, interrupt: &AtomicBool) -> Result<Outcome> {
    config.validate()?;
    let world = World::from_env()?;
    let config = &for_rank(config, world.as_ref())?;
    let (rank, ranks) = world.as_ref().map_or((0, 1), |w| (w.rank, w.size));
    let writer = rank == 0;
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
    check_world_size(start, ranks)?;
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
    let dist = join(world, config, device, done)?;
    let evaluator = (writer && config.eval_freq > 0)
        .then(|| {
            let size = config.img_size as u32;
            let compute = Compute::new(device, Precision::Fp32, config.memory_format, Workload::Inference)?
                .with_winograd(config.winograd);
            Evaluator::new(&report.dataset.test_a, &report.dataset.test_b, config.eval_limit as usize, size, compute)
        })
        .transpose()?;
    let _lock = if writer { Some(RunLock::acquire(&paths.dir)?) } else { None };
    if writer {
        claim_folder(&paths, start, options)?;
        let stale = paths.remove_stale_temp_files()?;
        if stale > 0 {
            eprintln!("removed {stale} temporary file(s) left by an interrupted save");
        }
        paths.create()?;
        for bad in &report.skipped {
            eprintln!("skipping {bad}");
        }
    }
    let data = report.dataset;

    tch::manual_seed(config.seed as i64);
    let nets = UGATIT::new(config.model_config()?, device);
    let adam = AdamConfig { weight_decay: config.weight_decay, ..AdamConfig::default() };
    let mut trainer =
        Trainer::new(nets, config.gan_type, config.loss_weights(), adam).computing(compute).distributed(dist.clone());
    match (start, &imported) {
        (Start::Resume(path), _) => drop(checkpoint::load(path, &mut trainer)?),
        (Start::Import(path), Some(imported)) => {
            crate::io::safetensors::copy_into(&imported.tensors, "", &trainer.nets.vs, path)?
        }
        _ => {}
    }
    if let Some(dist) = &dist {
        dist.broadcast_variables(&trainer.nets.vs)?;
    }
    let mut outputs = if writer {
        crate::io::atomic::write_atomic(&paths.dir.join("config.toml"), config.to_toml().as_bytes())?;
        announce(config, done, &paths);
        Some(Outputs::open(paths, &data, evaluator, config, done, device)?)
    } else {
        None
    };
    let workers = 2;
    let global = config.batch_size as usize * ranks;
    let plan = BatchPlan::new(data.train_a.clone(), data.train_b.clone(), global, config.img_size as u32, config.seed)?
        .sharded(rank, ranks)?;
    let mut loader = UnpairedLoader::with_plan(plan, (done + 1) as u64, workers)?;
    let bar = if writer { progress_bar(done + 1, config.iteration) } else { ProgressBar::hidden() };
    let mut steps = Steps::new(&trainer);
    let started = Instant::now();
    let mut last_losses = (f64::NAN, f64::NAN);
    let say = |line: String| {
        if !writer {
        } else if bar.is_hidden() {
            eprintln!("{line}")
        } else {
            bar.println(line)
        }
    };
    for step in done + 1..=config.iteration {
        if let Some(dist) = &dist {
            dist.starting(step);
        }
        let (real_a, real_b) = loader.next()?;
        let (real_a, real_b) = (real_a.to_device(device), real_b.to_device(device));
        let lr = learning_rate(config.lr, step, config.iteration, config.decay_flag);
        tch::manual_seed(step_seed(config.seed, step));
        let noise = PenaltyNoise::draw_part(config.gan_type, &real_a, rank, ranks);
        let losses = steps.step(&mut trainer, &real_a, &real_b, &noise, lr)?;
        let (d_loss, g_loss) = (losses.d_loss, losses.g_loss);
        last_losses = (d_loss, g_loss);
        let named: Vec<(&'static str, f64)> =
            LossTerms::<f64>::NAMES.iter().copied().zip(losses.into_values()).collect();
        if let Some(outputs) = outputs.as_mut() {
            outputs.record(step, lr, &named)?;
        }
        if let Some((name, value)) = named.iter().find(|(_, v)| !v.is_finite()) {
            bar.abandon();
            let kept = match outputs.as_mut() {
                Some(outputs) => format!("{}; losses.csv has every term up to this step", outputs.kept()?),
                None => "rank 0 keeps the last checkpoint".to_string(),
            };
            bail!("step {step}: the loss term {name} is {value}; training diverged and was stopped ({kept})");
        }
        bar.set_position(step as u64);
        bar.set_message(format!("d_loss {d_loss:.5} g_loss {g_loss:.5}"));

        let interrupted = match &dist {
            Some(dist) => dist.any(interrupt.load(Ordering::SeqCst), dist.timeout, "agreeing whether to stop")?,
            None => interrupt.load(Ordering::SeqCst),
        };
        if step % config.print_freq == 0 || step == config.iteration {
            let elapsed = started.elapsed().as_secs_f64();
            say(format!(
                "[{step:>5}/{:>5}] time: {elapsed:.4} d_loss: {d_loss:.8}, g_loss: {g_loss:.8}",
                config.iteration
            ));
        }
        if let Some(outputs) = outputs.as_mut() {
            outputs.after_step(step, &trainer, config, interrupted, &say)?;
        }
        if let Some(dist) = dist.as_ref().filter(|_| writes_at(config, step, interrupted)) {
            // The others wait while rank 0 writes, then all check they still hold one model.
            dist.wait_for_rank_0_files()?;
            dist.check_identical(&trainer.nets.vs, step)?;
        }
        if interrupted {
            let latest = RunPaths::new(config).latest();
            bar.abandon_with_message(format!("interrupted at step {step}; saved {}", latest.display()));
            return Ok(Outcome::Interrupted(step));
        }
    }
    if let Some(outputs) = outputs.as_mut() {
        outputs.finish()?;
    }
    bar.finish();
    if writer {
        eprintln!(
            "finished step {} ({} steps in {:.1} s): d_loss {:.5}, g_loss {:.5}; checkpoint {}, every loss in {}",
            config.iteration,
            config.iteration - done,
            started.elapsed().as_secs_f64(),
            last_losses.0,
            last_losses.1,
            RunPaths::new(config).latest().display(),
            RunPaths::new(config).csv().display()
        );
    }
    Ok(Outcome::Finished)
}
