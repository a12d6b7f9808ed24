//! Adaptive Layer-Instance Normalization (AdaLIN) and Layer-Instance Normalization (ILN),
//! section 2.1.1 of Kim et al., "U-GAT-IT", arXiv 1907.10830.
//!
//! `â = ρ·â_I + (1−ρ)·â_L` mixes instance and layer statistics with a learned per-channel `ρ`.
//! As in the PyTorch reference (UGATIT-pytorch HEAD), both variances are *unbiased* (divisor
//! N−1) and eps sits inside the square root; the official TensorFlow code uses biased moments.

use tch::nn::{self, Init};
use tch::Tensor;

/// Added to the variance inside the square root.
pub const EPS: f64 = 1e-5;

/// The instance- and layer-normalised versions of `xs`, mixed by `rho` (`[1, C, 1, 1]`).
fn layer_instance_mix(xs: &Tensor, rho: &Tensor) -> Tensor {
    let normalise = |dims: &[i64]| {
        let mean = xs.mean_dim(dims, true, None);
        let var = xs.var_dim(dims, true, true);
        (xs - mean) / (var + EPS).sqrt()
    };
    let out_in = normalise(&[2, 3]);
    let out_ln = normalise(&[1, 2, 3]);
    rho * out_in + (1.0 - rho) * out_ln
}

/// AdaLIN: the affine parameters `gamma`, `beta` come from the generator's MLP (one per sample).
#[derive(Debug)]
pub struct AdaLIN {
    /// Mixing weight, `[1, C, 1, 1]`, initialised to 0.9.
    pub rho: Tensor,
}

impl AdaLIN {
    pub fn new(vs: nn::Path, channels: i64) -> Self {
        Self { rho: vs.var("rho", &[1, channels, 1, 1], Init::Const(0.9)) }
    }

    /// `xs`: `[B, C, H, W]`; `gamma`, `beta`: `[B, C]`.
    pub fn forward(&self, xs: &Tensor, gamma: &Tensor, beta: &Tensor) -> Tensor {
        let out = layer_instance_mix(xs, &self.rho);
        out * gamma.unsqueeze(-1).unsqueeze(-1) + beta.unsqueeze(-1).unsqueeze(-1)
    }
}

/// ILN: the decoder's up-sampling normalisation, with its own learned `gamma` and `beta`.
#[derive(Debug)]
pub struct ILN {
    /// Mixing weight, `[1, C, 1, 1]`, initialised to 0 (pure layer norm at start).
    pub rho: Tensor,
    pub gamma: Tensor,
    pub beta: Tensor,
}

impl ILN {
    pub fn new(vs: nn::Path, channels: i64) -> Self {
        let shape = [1, channels, 1, 1];
        Self {
            rho: vs.var("rho", &shape, Init::Const(0.0)),
            gamma: vs.var("gamma", &shape, Init::Const(1.0)),
            beta: vs.var("beta", &shape, Init::Const(0.0)),
        }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        layer_instance_mix(xs, &self.rho) * &self.gamma + &self.beta
    }
}

/// Clamps `rho` to [0, 1] in place, as the reference's `RhoClipper` does after each generator step.
pub fn clip_rho(rho: &Tensor) {
    tch::no_grad(|| {
        let _ = rho.shallow_clone().clamp_(0.0, 1.0);
    });
}
