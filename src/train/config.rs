//! The run configuration: UGATIT-pytorch's flags (same names, same defaults) plus the seed, the
//! adversarial loss type, the device and checkpoint cadence.
//!
//! Every setting is declared once, in [`train_settings!`]: its TOML key (= field name), its
//! flag (`--` + the key in kebab case), its type, default, help text (the doc comment) and the
//! check its value must pass. This module builds [`TrainConfig`] from that list; the command
//! line (`crate::cli::settings`) builds its flags from the same list, so a setting cannot exist
//! in one and not the other. A run is layered: defaults → `--config` TOML → flags → (with
//! `--resume`) the checkpoint's [`RunIdentity`]. The effective configuration is written to the
//! result folder as `config.toml` and into every checkpoint.

use super::losses::GanType;
use super::step::LossWeights;
use crate::choice::Choice;
use crate::distributed::DistBackend;
use crate::model::{discriminator, generator, ugatit};
use crate::precision::{Compute, MemoryFormat, Precision, Workload};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The settings of a training run, in groups: `arch` (the networks' shapes; also `summary` and
/// `bench`), `step` (what one iteration computes; also `bench`), `device` (where it runs; every
/// subcommand that computes), `dist` (how many ranks train together; `train`) and `run` (the rest
/// of `train`). Each entry is
/// `/// help` `name: Type = default, check;` with `check` a function of [`checks`].
///
/// It hands the list to the macro named by its argument (the callback pattern), which is how both
/// [`TrainConfig`] and the CLI's flags are generated from it.
#[macro_export]
macro_rules! train_settings {
    ($callback:ident) => {
        $callback! {
            arch {
                /// Light generator: its MLP reads pooled features (far less memory than the full one).
                light: bool = false, any;
                /// Image size (multiple of 4); the full generator's MLP depends on it.
                img_size: i64 = 256, image_size;
                /// Base channel count of the generators and discriminators.
                ch: i64 = 64, at_least_one;
                /// Residual blocks in each generator.
                n_res: i64 = 4, at_least_one;
                /// Discriminator depth as the official TF code counts it: global n_dis+1 layers, local n_dis-1 (6: the reference's 7/5).
                n_dis: i64 = 6, discriminator_depth;
            }
            step {
                /// Images per domain in each iteration, per rank: a distributed run's global batch is ranks × this.
                batch_size: i64 = 1, at_least_one;
                /// Adversarial loss: lsgan (the paper's), gan, hinge, wgan-gp, wgan-lp or dragan.
                gan_type: GanType = GanType::Lsgan, any;
            }
            device {
                /// cpu, cuda or cuda:N.
                device: String = "cpu".to_string(), any;
                /// CUDA: TF32 tensor-core convolutions (PyTorch's default; faster, ~1e-3 relative error).
                tf32: bool = false, any;
                /// CUDA: let cuDNN time its algorithms (faster for fixed sizes; not bitwise reproducible; on whenever --cuda-graphs is).
                cudnn_benchmark: bool = false, any;
                /// CUDA: capture a training step (single-process, fp32 or bf16) and a translation batch into a CUDA graph after warm-up and replay it; false launches every kernel from the host.
                cuda_graphs: bool = true, any;
                /// Arithmetic of convolutions, linear layers and matrix products: fp32 (the references'), bf16 (CPU or CUDA) or fp16 (CUDA); norms, losses and weights stay fp32.
                precision: Precision = Precision::Fp32, any;
                /// Activation layout: auto (channels-last for translation on CPU and for bf16/fp16 on CUDA), channels-last or contiguous.
                memory_format: MemoryFormat = MemoryFormat::Auto, any;
                /// CPU, fp32 translation (also --eval-freq's): the wide 3×3 convolutions by Winograd's F(4x4, 3x3), 1.6-2.1x faster at ~1e-5 relative error; false computes them directly, as the references do (training steps always do).
                winograd: bool = true, any;
            }
            dist {
                /// Start this many local training processes (ranks) over c10d and wait for them (torchrun's flag); under torchrun or srun, which set RANK, it is ignored.
                nproc_per_node: i64 = 1, at_least_one;
                /// Collectives' library: auto (nccl for CUDA ranks, gloo for CPU ranks), gloo or nccl.
                dist_backend: DistBackend = DistBackend::Auto, any;
                /// Seconds the ranks wait for each other at the rendezvous and in each collective before the job stops.
                dist_timeout: f64 = 60.0, positive;
            }
            run {
                /// Dataset folder with trainA/ trainB/ testA/ testB/.
                dataset: PathBuf = PathBuf::from("dataset/selfie2anime"), any;
                /// Total training iterations.
                iteration: i64 = 1_000_000, at_least_one;
                /// Sample grids and the loss plot every this many steps.
                print_freq: i64 = 1000, at_least_one;
                /// A numbered checkpoint every this many steps.
                save_freq: i64 = 100_000, at_least_one;
                /// The latest checkpoint every this many steps.
                save_latest_freq: i64 = 1000, at_least_one;
                /// Linear learning-rate decay over the second half of the run.
                decay_flag: bool = true, any;
                /// Adam's learning rate (both optimisers).
                lr: f64 = 1e-4, non_negative;
                /// Adam's L2 penalty, added to every parameter's gradient.
                weight_decay: f64 = 1e-4, non_negative;
                /// Weight of the adversarial losses.
                adv_weight: f64 = 1.0, non_negative;
                /// Weight of the cycle-consistency loss.
                cycle_weight: f64 = 10.0, non_negative;
                /// Weight of the identity loss.
                identity_weight: f64 = 10.0, non_negative;
                /// Weight of the CAM (auxiliary classifier) loss.
                cam_weight: f64 = 1000.0, non_negative;
                /// Results go to <result-dir>/<dataset folder name>/.
                result_dir: PathBuf = PathBuf::from("results"), any;
                /// Seed of the initial weights, the data order and every random draw.
                seed: u64 = 0, any;
                /// Train on the readable images and report the others, instead of stopping.
                skip_bad_images: bool = false, any;
                /// KID of both directions on the test split every this many steps and at the end, into metrics.csv (0: off).
                eval_freq: i64 = 0, at_least_zero;
                /// Score only the first K test images of each domain (0: all).
                eval_limit: i64 = 0, at_least_zero;
            }
        }
    };
}

macro_rules! define_train_config {
    ($($group:ident { $($(#[doc = $doc:literal])* $field:ident: $ty:ty = $default:expr, $check:ident;)* })*) => {
        /// Everything that defines a training run (see [`train_settings!`] for each field).
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct TrainConfig {
            $($($(#[doc = $doc])* pub $field: $ty,)*)*
        }

        impl Default for TrainConfig {
            fn default() -> Self {
                Self { $($($field: $default,)*)* }
            }
        }

        impl TrainConfig {
            /// The TOML keys of all settings, in declaration order.
            pub const KEYS: &'static [&'static str] = &[$($(stringify!($field),)*)*];

            /// Each setting's own check (cross-setting checks are in [`TrainConfig::validate`]).
            fn check_each(&self) -> Result<()> {
                $($(checks::$check(stringify!($field), &self.$field)?;)*)*
                Ok(())
            }
        }
    };
}

train_settings!(define_train_config);

/// The flag of a setting: `batch_size` → `--batch-size`.
pub fn flag_name(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

/// The checks a setting's value can be given in [`train_settings!`]; errors name the flag.
pub mod checks {
    use super::flag_name;
    use anyhow::{bail, Result};

    /// No constraint.
    pub fn any<T>(_key: &str, _value: &T) -> Result<()> {
        Ok(())
    }

    /// A count: 1 or more.
    pub fn at_least_one(key: &str, value: &i64) -> Result<()> {
        if *value < 1 {
            bail!("{} must be at least 1 (got {value})", flag_name(key));
        }
        Ok(())
    }

    /// 0 or more (0 switches a feature off).
    pub fn at_least_zero(key: &str, value: &i64) -> Result<()> {
        if *value < 0 {
            bail!("{} must be 0 or more (got {value})", flag_name(key));
        }
        Ok(())
    }

    /// A finite number, 0 or more (a rate or a weight).
    pub fn non_negative(key: &str, value: &f64) -> Result<()> {
        if !value.is_finite() || *value < 0.0 {
            bail!("{} must be a finite number of at least 0 (got {value})", flag_name(key));
        }
        Ok(())
    }

    /// A finite number above 0 (a duration in seconds).
    pub fn positive(key: &str, value: &f64) -> Result<()> {
        if !value.is_finite() || *value <= 0.0 {
            bail!("{} must be a finite number above 0 (got {value})", flag_name(key));
        }
        Ok(())
    }

    /// A size the generator can translate: a multiple of 4 (two downsamplings, two upsamplings)
    /// and at least 16.
    pub fn image_size(key: &str, value: &i64) -> Result<()> {
        if *value % 4 != 0 || *value < 16 {
            bail!("{} {value} must be a multiple of 4 and at least 16", flag_name(key));
        }
        Ok(())
    }

    /// The local discriminator has `n_dis − 1` layers, at least 3.
    pub fn discriminator_depth(key: &str, value: &i64) -> Result<()> {
        if *value < 4 {
            bail!("{} {value} is too small: the local discriminator needs n_dis >= 4", flag_name(key));
        }
        Ok(())
    }
}

/// The networks' shapes: what `summary`, `bench` and a checkpoint's tensors depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Architecture {
    pub light: bool,
    pub img_size: i64,
    pub ch: i64,
    pub n_res: i64,
    pub n_dis: i64,
}

impl Architecture {
    /// The generator's configuration.
    pub fn generator(&self) -> generator::Config {
        generator::Config { ngf: self.ch, n_res: self.n_res, img_size: self.img_size, light: self.light }
    }

    /// The six networks' configuration, after checking that `img_size` suits the discriminators.
    pub fn model_config(&self) -> Result<ugatit::Config> {
        checks::at_least_one("ch", &self.ch)?;
        checks::at_least_one("n_res", &self.n_res)?;
        checks::image_size("img_size", &self.img_size)?;
        checks::discriminator_depth("n_dis", &self.n_dis)?;
        let config = ugatit::Config {
            generator: self.generator(),
            global_dis: discriminator::Config { ndf: self.ch, n_layers: self.n_dis + 1 },
            local_dis: discriminator::Config { ndf: self.ch, n_layers: self.n_dis - 1 },
        };
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
}

impl Architecture {
    /// Refuses sizes whose parameters alone would not fit in this machine's available memory:
    /// when `training`, all six networks four times over (weights, gradients, Adam's two
    /// moments), else the largest network once (`summary` builds one at a time).
    pub fn check_host_memory(&self, training: bool) -> Result<()> {
        let counts = self.model_config()?.parameter_counts();
        let total: f64 = counts.iter().sum();
        let (need, what) = if training {
            (total * 16.0, "to train (weights, gradients and Adam's moments in float32)")
        } else {
            (counts.iter().fold(0.0, |a: f64, &b| a.max(b)) * 4.0, "to build the largest network")
        };
        let Some(available) = crate::device::available_host_memory() else { return Ok(()) };
        if need > available {
            let gb = |b: f64| b / 1e9;
            bail!(
                "--ch {} --img-size {}{}: the networks have {total:.3e} parameters and need about {:.1} GB {what}, more than the {:.1} GB of memory available; use a smaller --ch{}",
                self.ch,
                self.img_size,
                if self.light { " --light" } else { "" },
                gb(need),
                gb(available),
                if self.light { "" } else { " or --img-size, or --light" }
            );
        }
        Ok(())
    }
}

/// What a resumed run must keep from its checkpoint: the networks' shapes and everything that
/// decides the random draws and the batches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunIdentity {
    pub arch: Architecture,
    pub seed: u64,
    pub batch_size: i64,
    pub gan_type: GanType,
}

impl RunIdentity {
    /// `--flag saved → given` for each setting that differs, in declaration order.
    pub fn differences(&self, given: &RunIdentity) -> Vec<String> {
        let (a, b) = (&self.arch, &given.arch);
        let pairs = [
            ("light", a.light.to_string(), b.light.to_string()),
            ("img_size", a.img_size.to_string(), b.img_size.to_string()),
            ("ch", a.ch.to_string(), b.ch.to_string()),
            ("n_res", a.n_res.to_string(), b.n_res.to_string()),
            ("n_dis", a.n_dis.to_string(), b.n_dis.to_string()),
            ("batch_size", self.batch_size.to_string(), given.batch_size.to_string()),
            ("gan_type", self.gan_type.name().to_string(), given.gan_type.name().to_string()),
            ("seed", self.seed.to_string(), given.seed.to_string()),
        ];
        pairs
            .into_iter()
            .filter(|(_, saved, now)| saved != now)
            .map(|(key, saved, now)| format!("{} {saved} (checkpoint) vs {now} (given)", flag_name(key)))
            .collect()
    }
}

impl TrainConfig {
    /// Reads a TOML file; unknown keys are errors (a typo would otherwise be silently ignored).
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{}: invalid configuration", path.display()))
    }

    /// The configuration as TOML (what `config.toml` and checkpoints hold).
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

    /// The `tf32` and `cudnn_benchmark` settings; a graph's shapes are fixed, so `cuda_graphs`
    /// lets cuDNN pick its algorithms for them.
    pub fn cuda_settings(&self) -> crate::device::CudaSettings {
        crate::device::CudaSettings { tf32: self.tf32, cudnn_benchmark: self.cudnn_benchmark || self.cuda_graphs }
    }

    /// Starts the device settings: the CUDA switches, `device`, then `precision` and
    /// `memory_format` resolved for it and `workload`.
    pub fn start_compute(&self, workload: Workload) -> Result<Compute> {
        let device = crate::device::start(&self.device, self.cuda_settings())?;
        Ok(Compute::new(device, self.precision, self.memory_format, workload)?
            .with_cuda_graphs(self.cuda_graphs)
            .with_winograd(self.winograd))
    }

    /// `dist_timeout` as a duration.
    pub fn dist_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.dist_timeout)
    }

    pub fn architecture(&self) -> Architecture {
        Architecture { light: self.light, img_size: self.img_size, ch: self.ch, n_res: self.n_res, n_dis: self.n_dis }
    }

    pub fn identity(&self) -> RunIdentity {
        RunIdentity { arch: self.architecture(), seed: self.seed, batch_size: self.batch_size, gan_type: self.gan_type }
    }

    /// The networks' architecture, after checking that `img_size` suits the discriminators.
    pub fn model_config(&self) -> Result<ugatit::Config> {
        self.architecture().model_config()
    }

    /// Checks every setting, then the architecture as a whole.
    pub fn validate(&self) -> Result<()> {
        self.check_each()?;
        self.model_config().map(drop)
    }

    /// `<result_dir>/<dataset folder name>`.
    pub fn run_dir(&self) -> PathBuf {
        self.result_dir.join(dataset_name(&self.dataset))
    }
}

/// A dataset's name for its result folder: the folder's own name, also when given as `.` or
/// `some/path/..` (resolved against the file system), else `dataset`.
pub fn dataset_name(dataset: &Path) -> String {
    let named = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    named(dataset)
        .or_else(|| dataset.canonicalize().ok().as_deref().and_then(named))
        .unwrap_or_else(|| "dataset".into())
}
