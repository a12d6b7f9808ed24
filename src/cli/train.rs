//! `ugatit train`: flags named like UGATIT-pytorch's `main.py`, layered over `--config FILE`
//! (TOML) and, with `--resume`, over the checkpoint's own configuration.

use crate::train::config::TrainConfig;
use crate::train::losses::GanType;
use crate::train::run::{self, Outcome, RunPaths, Start};
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The bundled demo dataset (a handful of selfie2anime images), used when no dataset is given.
pub const DEMO_DATASET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/sample");
/// The settings of the demo run: small enough to finish in minutes on two CPU cores.
pub const DEMO_CONFIG: &str = include_str!("../../configs/demo.toml");

/// Train U-GAT-IT. Without --dataset or --config, runs a short demo on the bundled sample.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// TOML file with any of the settings below (flags override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Dataset folder with trainA/ trainB/ testA/ testB/.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Continue from <result-dir>/<dataset>/model/latest.safetensors.
    #[arg(long)]
    pub resume: bool,
    /// Start from the networks of another checkpoint: UGATIT-pytorch .pt, PaddleGAN .pdparams or
    /// ours. Optimiser state starts fresh; a name ending in `_params_<step>` (the reference's)
    /// continues after that step, as the reference's own resume does.
    #[arg(long, value_name = "PATH", conflicts_with = "resume")]
    pub resume_from: Option<PathBuf>,
    #[arg(long)]
    pub iteration: Option<i64>,
    #[arg(long)]
    pub batch_size: Option<i64>,
    /// Sample grids and loss plot every N steps.
    #[arg(long)]
    pub print_freq: Option<i64>,
    /// Numbered checkpoint every N steps.
    #[arg(long)]
    pub save_freq: Option<i64>,
    /// Latest checkpoint every N steps.
    #[arg(long)]
    pub save_latest_freq: Option<i64>,
    /// Linear learning-rate decay over the second half (true/false).
    #[arg(long)]
    pub decay_flag: Option<bool>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub weight_decay: Option<f64>,
    #[arg(long)]
    pub adv_weight: Option<f64>,
    #[arg(long)]
    pub cycle_weight: Option<f64>,
    #[arg(long)]
    pub identity_weight: Option<f64>,
    #[arg(long)]
    pub cam_weight: Option<f64>,
    #[arg(long)]
    pub ch: Option<i64>,
    #[arg(long)]
    pub n_res: Option<i64>,
    /// Discriminator depth as the official TF code counts it (6: the reference's global 7 / local 5 layers).
    #[arg(long)]
    pub n_dis: Option<i64>,
    #[arg(long)]
    pub img_size: Option<i64>,
    /// Light generator (true/false; bare --light means true).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub light: Option<bool>,
    #[arg(long)]
    pub result_dir: Option<PathBuf>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, value_enum)]
    pub gan_type: Option<GanType>,
    /// cpu, cuda or cuda:N.
    #[arg(long)]
    pub device: Option<String>,
    /// Train on the readable images and report the others, instead of stopping.
    #[arg(long)]
    pub skip_bad_images: bool,
    /// CUDA: TF32 convolutions, as PyTorch does by default (true/false).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub tf32: Option<bool>,
    /// CUDA: cuDNN algorithm search (true/false).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub cudnn_benchmark: Option<bool>,
}

macro_rules! overlay {
    ($config:ident, $args:ident, $($field:ident),*) => {
        $(if let Some(v) = $args.$field.clone() { $config.$field = v; })*
    };
}

/// Settings that define the networks' shapes and the run's randomness: a resumed run must keep them.
fn architecture(c: &TrainConfig) -> (i64, i64, i64, i64, bool, u64, i64) {
    (c.ch, c.n_res, c.n_dis, c.img_size, c.light, c.seed, c.batch_size)
}

impl TrainArgs {
    fn apply(&self, config: &mut TrainConfig) {
        overlay!(
            config,
            self,
            dataset,
            iteration,
            batch_size,
            print_freq,
            save_freq,
            save_latest_freq,
            decay_flag,
            lr,
            weight_decay,
            adv_weight,
            cycle_weight,
            identity_weight,
            cam_weight,
            ch,
            n_res,
            n_dis,
            img_size,
            light,
            result_dir,
            seed,
            gan_type,
            device
        );
        config.skip_bad_images |= self.skip_bad_images;
    }

    /// The configuration before the checkpoint is consulted: defaults (or the demo), the file, the flags.
    pub fn resolve(&self) -> Result<TrainConfig> {
        let mut config = match (&self.config, &self.dataset) {
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
        if architecture(&resumed) != architecture(&saved) || resumed.gan_type != saved.gan_type {
            bail!(
                "--resume: {} was trained with other --ch/--n-res/--n-dis/--img-size/--light/--seed/--batch-size/--gan-type; drop those flags to continue it",
                latest.display()
            );
        }
        config = resumed;
        Start::Resume(latest)
    } else {
        Start::Fresh
    };
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;
    eprintln!("training into {}", config.run_dir().display());
    match run::train(&config, &start, interrupt)? {
        Outcome::Finished => Ok(()),
        Outcome::Interrupted(step) => {
            eprintln!("interrupted after step {step}; continue with --resume");
            std::process::exit(130)
        }
    }
}
