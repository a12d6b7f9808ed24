//! How the networks compute: the arithmetic precision (`--precision`), the activations' memory
//! layout (`--memory-format`), CUDA graphs (`--cuda-graphs`) and Winograd's convolutions
//! (`--winograd`), resolved for a device into a [`Compute`].
//!
//! Low precision is mixed precision, as `torch.autocast` defines it: convolutions, linear layers
//! and matrix products run in bfloat16 or float16; the normalisations (instance norm, AdaLIN,
//! ILN), the pools, the losses and the spectral norm's power iteration read float32 (the models
//! cast where a low-precision activation enters them), and the weights, Adam's moments and the
//! checkpoints stay float32.

use crate::choice::Choice;
use crate::model::winograd;
use crate::shim::{self, Autocast};
use anyhow::{bail, Result};
use std::sync::Once;
use tch::{Device, Kind, Tensor};

/// Arithmetic of the convolutions, linear layers and matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// float32 throughout: the references' numbers.
    Fp32,
    /// bfloat16 (CPU with AVX-512 BF16 or AMX, and CUDA from Ampere on).
    Bf16,
    /// float16 (CUDA only).
    Fp16,
}

impl Choice for Precision {
    const ALL: &'static [Self] = &[Precision::Fp32, Precision::Bf16, Precision::Fp16];
}

impl Precision {
    /// The low-precision dtype, `None` for float32.
    pub fn autocast_kind(self) -> Option<Kind> {
        match self {
            Precision::Fp32 => None,
            Precision::Bf16 => Some(Kind::BFloat16),
            Precision::Fp16 => Some(Kind::Half),
        }
    }
}

/// What the networks are run for: [`MemoryFormat::Auto`] resolves differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Training steps (forward and backward).
    Training,
    /// Translation without gradients.
    Inference,
}

/// Layout of the activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryFormat {
    /// Where it wins: channels-last for translation on CPU (oneDNN's native layout; 1.1–1.2×
    /// faster here) and with low precision on CUDA (tensor cores'); NCHW for training on CPU
    /// (the channels-last backward measured 1.75× slower, BENCHMARKS.md) and float32 on CUDA.
    Auto,
    /// NHWC strides.
    ChannelsLast,
    /// NCHW, as the references run.
    Contiguous,
}

impl Choice for MemoryFormat {
    const ALL: &'static [Self] = &[MemoryFormat::Auto, MemoryFormat::ChannelsLast, MemoryFormat::Contiguous];
}

/// The resolved way of computing on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compute {
    pub device: Device,
    pub precision: Precision,
    pub channels_last: bool,
    /// Repeated work of fixed shapes (a training step, a translation batch) is captured into a
    /// CUDA graph and replayed (`--cuda-graphs`; CUDA only).
    pub cuda_graphs: bool,
    /// The wide 3×3 convolutions run by Winograd's algorithm ([`crate::model::winograd`]; float32
    /// translation on the CPU, `--winograd`).
    pub winograd: bool,
}

/// The state a forward pass runs in ([`Compute::region`]), until dropped.
pub struct Region {
    autocast: Option<Autocast>,
    _winograd: Option<winograd::Scope>,
}

impl Region {
    /// Whether autocast is on in this region (a low precision).
    pub fn autocasts(&self) -> bool {
        self.autocast.is_some()
    }
}

impl Compute {
    /// Resolves `format` for `device` and `workload`, and checks that `precision` runs there.
    pub fn new(device: Device, precision: Precision, format: MemoryFormat, workload: Workload) -> Result<Self> {
        if precision == Precision::Fp16 && !device.is_cuda() {
            bail!("--precision fp16 runs on CUDA only; on CPU use --precision bf16");
        }
        let channels_last = match format {
            MemoryFormat::Auto if device.is_cuda() => precision != Precision::Fp32,
            MemoryFormat::Auto => workload == Workload::Inference,
            MemoryFormat::ChannelsLast => true,
            MemoryFormat::Contiguous => false,
        };
        if precision == Precision::Bf16 && device == Device::Cpu && native_cpu_bf16() == Some(false) {
            static WARNED: Once = Once::new();
            warn_once(
                &WARNED,
                "this CPU has no bf16 arithmetic (AVX-512 BF16 or AMX): --precision bf16 is emulated here, far slower than fp32",
            );
        }
        let winograd = workload == Workload::Inference && device == Device::Cpu && precision == Precision::Fp32;
        Ok(Self { device, precision, channels_last, cuda_graphs: false, winograd })
    }

    /// float32 NCHW on `device`, every convolution direct: the references' arithmetic and layout.
    pub fn reference(device: Device) -> Self {
        Self { device, precision: Precision::Fp32, channels_last: false, cuda_graphs: false, winograd: false }
    }

    /// The same with CUDA graphs where `on` and the device is a GPU.
    pub fn with_cuda_graphs(self, on: bool) -> Self {
        Self { cuda_graphs: on && self.device.is_cuda(), ..self }
    }

    /// The same with Winograd's convolutions where `on` and [`Compute::new`] allowed them (float32
    /// translation on the CPU: without gradients, where their rounding cannot reach training).
    pub fn with_winograd(self, on: bool) -> Self {
        Self { winograd: on && self.winograd, ..self }
    }

    /// The region forwards run inside: autocast for a low precision, Winograd's convolutions where
    /// [`Compute::winograd`].
    ///
    /// libtorch refuses autocast only for dtypes a device type cannot autocast to, which
    /// [`Compute::new`] rules out; should it refuse anyway, the work runs in float32 (still
    /// correct) after one warning.
    pub fn region(&self) -> Region {
        static WARNED: Once = Once::new();
        let autocast = self.precision.autocast_kind().and_then(|kind| {
            Autocast::enter(self.device, kind)
                .map_err(|e| warn_once(&WARNED, &format!("{e:#}; computing in fp32")))
                .ok()
        });
        Region { autocast, _winograd: self.winograd.then(winograd::Scope::enter) }
    }

    /// `f` of the batch `xs` in this layout, inside [`Compute::region`], without gradients: how a
    /// translation runs.
    pub fn infer<T>(&self, xs: &Tensor, f: impl FnOnce(&Tensor) -> T) -> T {
        let xs = self.input(xs);
        let _region = self.region();
        tch::no_grad(|| f(&xs))
    }

    /// An input batch in this layout (a layout only changes speed: where libtorch cannot give
    /// it, the batch stays as it is, after one warning).
    pub fn input(&self, xs: &Tensor) -> Tensor {
        if !self.channels_last {
            return xs.shallow_clone();
        }
        static WARNED: Once = Once::new();
        shim::channels_last(xs).unwrap_or_else(|e| {
            warn_once(&WARNED, &format!("{e:#}; computing in NCHW"));
            xs.shallow_clone()
        })
    }
}

/// The gradients of `outputs` with respect to `inputs` (`Tensor::run_backward`), computed with
/// autocast off on the outputs' device.
///
/// Inside an autocast region libtorch would autocast the backward formulas' own calls: a matrix
/// product whose forward ran in float32 on purpose (a weight-bound layer,
/// [`crate::model::layers::conv_patches`]) would have its weight gradient computed in bf16 and
/// cast back (0.4% error, and two weight-sized copies). With autocast off each backward kernel
/// runs in the dtype of the forward it differentiates, as torch's own `loss.backward()` after an
/// autocast block does.
pub fn gradients<T: std::borrow::Borrow<Tensor>, U: std::borrow::Borrow<Tensor>>(
    outputs: &[T],
    inputs: &[U],
    keep_graph: bool,
    create_graph: bool,
) -> Vec<Tensor> {
    let device = outputs.first().map_or(Device::Cpu, |t| t.borrow().device());
    shim::without_autocast(device, || Tensor::run_backward(outputs, inputs, keep_graph, create_graph))
}

/// Whether this CPU computes in bf16 natively (x86: AVX-512 BF16 or AMX; Arm: the `bf16`
/// feature), from Linux's `/proc/cpuinfo`; `None` where that does not say.
fn native_cpu_bf16() -> Option<bool> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("flags") || l.starts_with("Features"))?;
    let features = line.split_once(':')?.1.split_whitespace();
    Some(features.into_iter().any(|f| matches!(f, "avx512_bf16" | "amx_bf16" | "bf16")))
}

/// Prints `message` the first time its call site gets here.
fn warn_once(site: &'static Once, message: &str) {
    site.call_once(|| eprintln!("warning: {message}"));
}

/// `xs` in float32 (itself when it already is): where a low-precision activation enters a
/// normalisation, a reduction or a loss.
pub fn full(xs: &Tensor) -> Tensor {
    if xs.kind() == Kind::Float {
        xs.shallow_clone()
    } else {
        xs.to_kind(Kind::Float)
    }
}
