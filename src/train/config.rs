//! The run configuration: UGATIT-pytorch's flags (same names, same defaults) plus the seed, the
//! adversarial loss type, the device and checkpoint cadence. Read from `--config FILE` (TOML)
//! with command-line flags overriding it, and written to the result folder as `config.toml`.

use super::losses::GanType;
use super::step::LossWeights;
use crate::model::{discriminator, generator, ugatit};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Everything that defines a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Dataset folder with `trainA/ trainB/ testA/ testB/`.
    pub dataset: PathBuf,
    /// Total training iterations.
    pub iteration: i64,
    pub batch_size: i64,
    /// Sample grids (and the loss plot) every this many steps.
    pub print_freq: i64,
    /// A numbered checkpoint every this many steps.
    pub save_freq: i64,
    /// The `latest` checkpoint every this many steps.
    pub save_latest_freq: i64,
    /// Linear learning-rate decay over the second half of the run.
    pub decay_flag: bool,
    pub lr: f64,
    /// Adam's L2 penalty, on every parameter.
    pub weight_decay: f64,
    pub adv_weight: f64,
    pub cycle_weight: f64,
    pub identity_weight: f64,
    pub cam_weight: f64,
    /// Base channel count of all networks.
    pub ch: i64,
    /// Residual blocks in each generator.
    pub n_res: i64,
    /// Discriminator depth in the official TF code's terms: the global discriminator gets
    /// `n_dis + 1` reference layers, the local one `n_dis - 1`. The reference's 7/5 is `n_dis` 6.
    pub n_dis: i64,
    pub img_size: i64,
    pub light: bool,
    /// Results go to `<result_dir>/<dataset folder name>/`.
    pub result_dir: PathBuf,
    pub seed: u64,
    pub gan_type: GanType,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Drop unreadable images (reported at start) instead of stopping.
    pub skip_bad_images: bool,
    /// CUDA: TF32 tensor-core convolutions (PyTorch's default; faster, ~1e-3 relative error).
    pub tf32: bool,
    /// CUDA: let cuDNN time its algorithms (faster for fixed sizes; not bitwise reproducible).
    pub cudnn_benchmark: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            dataset: PathBuf::from("dataset/selfie2anime"),
            iteration: 1_000_000,
            batch_size: 1,
            print_freq: 1000,
            save_freq: 100_000,
            save_latest_freq: 1000,
            decay_flag: true,
            lr: 1e-4,
            weight_decay: 1e-4,
            adv_weight: 1.0,
            cycle_weight: 10.0,
            identity_weight: 10.0,
            cam_weight: 1000.0,
            ch: 64,
            n_res: 4,
            n_dis: 6,
            img_size: 256,
            light: false,
            result_dir: PathBuf::from("results"),
            seed: 0,
            gan_type: GanType::Lsgan,
            device: "cpu".into(),
            skip_bad_images: false,
            tf32: false,
            cudnn_benchmark: false,
        }
    }
}

impl TrainConfig {
    /// Reads a TOML file; unknown keys are errors (a typo would otherwise be silently ignored).
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{}: invalid configuration", path.display()))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the configuration serialises")
    }

    pub fn loss_weights(&self) -> LossWeights {
        LossWeights {
            adv: self.adv_weight,
            cycle: self.cycle_weight,
            identity: self.identity_weight,
            cam: self.cam_weight,
        }
    }

    /// The networks' architecture, after checking that `img_size` suits the discriminators.
    pub fn model_config(&self) -> Result<ugatit::Config> {
        let g = generator::Config { ngf: self.ch, n_res: self.n_res, img_size: self.img_size, light: self.light };
        if self.n_dis < 4 {
            bail!("--n-dis {} is too small: the local discriminator needs n_dis >= 4", self.n_dis);
        }
        let config = ugatit::Config {
            generator: g,
            global_dis: discriminator::Config { ndf: self.ch, n_layers: self.n_dis + 1 },
            local_dis: discriminator::Config { ndf: self.ch, n_layers: self.n_dis - 1 },
        };
        if self.img_size % 4 != 0 || self.img_size < 16 {
            bail!("--img-size {} must be a multiple of 4 and at least 16", self.img_size);
        }
        if config.global_dis.logit_size(self.img_size).is_none() {
            let smallest = (16..=4096).step_by(4).find(|&s| config.global_dis.logit_size(s).is_some()).unwrap_or(0);
            let deepest = (4..self.n_dis)
                .rev()
                .find(|&n| discriminator::Config { ndf: self.ch, n_layers: n + 1 }.logit_size(self.img_size).is_some());
            let hint = deepest.map(|n| format!(", or --n-dis {n} or less")).unwrap_or_default();
            bail!(
                "--img-size {} is too small for the global discriminator of --n-dis {}: use --img-size {smallest} or more{hint}",
                self.img_size,
                self.n_dis
            );
        }
        Ok(config)
    }

    /// Checks values a run cannot start with.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("--iteration", self.iteration),
            ("--batch-size", self.batch_size),
            ("--print-freq", self.print_freq),
            ("--save-freq", self.save_freq),
            ("--save-latest-freq", self.save_latest_freq),
            ("--ch", self.ch),
            ("--n-res", self.n_res),
        ] {
            if v < 1 {
                bail!("{name} must be at least 1 (got {v})");
            }
        }
        self.model_config().map(drop)
    }

    /// `<result_dir>/<dataset folder name>`.
    pub fn run_dir(&self) -> PathBuf {
        let name =
            self.dataset.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "dataset".into());
        self.result_dir.join(name)
    }
}
