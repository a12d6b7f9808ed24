//! `ugatit train`: flags named like UGATIT-pytorch's `main.py`, layered over `--config FILE`
//! (TOML) and, with `--resume`, over the checkpoint's own configuration.

use super::settings;
use crate::distributed::launch::launch_if_asked;
use crate::train::config::TrainConfig;
use crate::train::run::{self, Options, Outcome, Start};
use crate::train::run_dir::RunPaths;
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// The bundled demo dataset (a handful of selfie2anime images), used when no dataset is given.
pub const DEMO_DATASET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/sample");
/// The settings of the demo run: small enough to finish in minutes on two CPU cores.
pub const DEMO_CONFIG: &str = include_str!("../../configs/demo.toml");

/// Train U-GAT-IT. Without --dataset or --config, runs a short demo on the bundled sample.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// TOML file with any of the settings below (flags override it).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Continue from <result-dir>/<dataset>/model/latest.safetensors.
    #[arg(long)]
    pub resume: bool,
    /// Start from the networks of another checkpoint: UGATIT-pytorch .pt, PaddleGAN .pdparams or
    /// ours. Optimiser state starts fresh; a name ending in `_params_<step>` (the reference's)
    /// continues after that step, as the reference's own resume does.
    #[arg(long, value_name = "PATH", conflicts_with = "resume")]
    pub resume_from: Option<PathBuf>,
    /// Start a new run in a folder that holds an earlier one: the earlier run's config.toml,
    /// losses, grids and checkpoints are removed first.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    #[command(flatten)]
    pub run: settings::run::Flags,
    #[command(flatten)]
    pub step: settings::step::Flags,
    #[command(flatten)]
    pub arch: settings::arch::Flags,
    #[command(flatten)]
    pub device: settings::device::Flags,
    #[command(flatten)]
    pub dist: settings::dist::Flags,
}

impl TrainArgs {
    /// Overrides the settings given as flags.
    pub fn apply(&self, config: &mut TrainConfig) {
        self.run.apply(config);
        self.step.apply(config);
        self.arch.apply(config);
        self.device.apply(config);
        self.dist.apply(config);
    }

    /// The configuration before the checkpoint is consulted: defaults (or the demo), the file, the flags.
    pub fn resolve(&self) -> Result<TrainConfig> {
        let mut config = match (&self.config, &self.run.dataset) {
            (Some(path), _) => TrainConfig::from_toml_file(path)?,
            (None, Some(_)) => TrainConfig::default(),
            (None, None) => {
                let mut demo: TrainConfig = toml::from_str(DEMO_CONFIG)?;
                demo.dataset = PathBuf::from(DEMO_DATASET);
                demo
            }
        };
        self.apply(&mut config);
        Ok(config)
    }
}

/// The signal that asked the run to stop (0: none), set by [`on_signal`].
static SIGNAL: AtomicI32 = AtomicI32::new(0);
static INTERRUPT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(signal: libc::c_int) {
    // Only atomic stores: async-signal-safe.
    SIGNAL.store(signal, Ordering::SeqCst);
    INTERRUPT.store(true, Ordering::SeqCst);
}

/// SIGINT and SIGTERM finish the current step, save and exit with 128 + the signal's number.
fn catch_stop_signals() -> Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installs a handler that only performs atomic stores.
        let previous = unsafe { libc::signal(signal, on_signal as *const () as libc::sighandler_t) };
        if previous == libc::SIG_ERR {
            bail!("cannot install a handler for signal {signal}");
        }
    }
    Ok(())
}

pub fn run(args: TrainArgs) -> Result<()> {
    let mut config = args.resolve()?;
    let latest = RunPaths::new(&config).latest();
    let start = if let Some(path) = &args.resume_from {
        Start::Import(path.clone())
    } else if args.resume {
        if !latest.exists() {
            bail!("--resume: no checkpoint at {}", latest.display());
        }
        let saved = crate::train::checkpoint::info(&latest)?.config;
        let mut resumed = saved.clone();
        args.apply(&mut resumed);
        let differences = saved.identity().differences(&resumed.identity());
        if !differences.is_empty() {
            bail!(
                "--resume: {} was trained with other settings: {}; drop those flags to continue it",
                latest.display(),
                differences.join(", ")
            );
        }
        config = resumed;
        Start::Resume(latest)
    } else {
        Start::Fresh
    };
    catch_stop_signals()?;
    let launched = launch_if_asked(config.nproc_per_node, config.dist_timeout(), &INTERRUPT, &SIGNAL)?;
    if let Some(code) = launched {
        if code != 0 {
            eprintln!("interrupted; continue with --resume");
            std::process::exit(code);
        }
        return Ok(());
    }
    match run::train(&config, &start, Options { overwrite: args.overwrite }, &INTERRUPT)? {
        Outcome::Finished => Ok(()),
        Outcome::Interrupted(step) => {
            eprintln!("interrupted after step {step}; continue with --resume");
            std::process::exit(128 + SIGNAL.load(Ordering::SeqCst))
        }
    }
}
