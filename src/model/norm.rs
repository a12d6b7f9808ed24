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

/// `ρ·IN(x) + (1−ρ)·LN(x)` as the per-sample, per-channel affine map `x·scale + shift` it is.
///
/// One pass over `x` gives the instance statistics; the layer statistics follow from them
/// (`Σ(x−μ_L)² = Σ_c [(HW−1)·σ²_c + HW·(μ_c−μ_L)²]`), so the whole normalisation costs one
/// reduction and one fused multiply-add over the feature map instead of a dozen element-wise
/// passes, in time and in saved activations.
fn layer_instance_affine(xs: &Tensor, rho: &Tensor) -> (Tensor, Tensor) {
    let size = xs.size();
    let (c, hw) = (size[1], size[2] * size[3]);
    let (in_var, in_mean) = xs.var_mean_dim(&[2i64, 3][..], true, true);
    let ln_mean = in_mean.mean_dim(1, true, None);
    let spread = &in_var * (hw - 1) as f64 + (&in_mean - &ln_mean).square() * hw as f64;
    let ln_var = spread.sum_dim_intlist(1, true, None) / (c * hw - 1) as f64;
    let (a, b) = ((in_var + EPS).rsqrt(), (ln_var + EPS).rsqrt());
    let (rho_a, rho_b) = (rho * a, (1.0 - rho) * b);
    let shift = -(&rho_a * in_mean + &rho_b * ln_mean);
    (rho_a + rho_b, shift)
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
        let (scale, shift) = layer_instance_affine(xs, &self.rho);
        let gamma = gamma.unsqueeze(-1).unsqueeze(-1);
        (shift * &gamma + beta.unsqueeze(-1).unsqueeze(-1)).addcmul(xs, &(scale * gamma))
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
        let (scale, shift) = layer_instance_affine(xs, &self.rho);
        (shift * &self.gamma + &self.beta).addcmul(xs, &(scale * &self.gamma))
    }
}

/// Clamps `rho` to [0, 1] in place, as the reference's `RhoClipper` does after each generator step.
pub fn clip_rho(rho: &Tensor) {
    tch::no_grad(|| {
        let _ = rho.shallow_clone().clamp_(0.0, 1.0);
    });
}
