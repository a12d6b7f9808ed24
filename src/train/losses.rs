//! Adversarial losses and gradient penalties (section 2.3 of Kim et al., arXiv 1907.10830).
//!
//! The paper and UGATIT-pytorch use LSGAN; the official TensorFlow code also offers vanilla GAN,
//! hinge, WGAN-GP, WGAN-LP and DRAGAN, defined here as it defines them: means over every element
//! of a logit map, and the gradient penalty (weight [`GP_WEIGHT`]) on both the patch logits and the
//! CAM logits.

use crate::choice::Choice;
use crate::model::Discriminator;
use tch::{Kind, Reduction, Tensor};

/// Weight of the gradient penalty (the official code's `--GP_ld`).
pub const GP_WEIGHT: f64 = 10.0;

/// The adversarial objective (`--gan-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GanType {
    /// Least squares (the paper's choice).
    Lsgan,
    /// Non-saturating GAN with sigmoid cross-entropy.
    Gan,
    /// Hinge loss.
    Hinge,
    /// Wasserstein with a two-sided gradient penalty.
    WganGp,
    /// Wasserstein with a one-sided (Lipschitz) penalty.
    WganLp,
    /// Vanilla GAN with a gradient penalty around perturbed real samples.
    Dragan,
}

impl Choice for GanType {
    const ALL: &'static [Self] =
        &[GanType::Lsgan, GanType::Gan, GanType::Hinge, GanType::WganGp, GanType::WganLp, GanType::Dragan];
}

impl GanType {
    /// Whether the discriminator loss carries a gradient penalty.
    pub fn has_gradient_penalty(self) -> bool {
        matches!(self, GanType::WganGp | GanType::WganLp | GanType::Dragan)
    }
}

/// Mean sigmoid cross-entropy of `logits` against a constant label.
pub fn bce_with_logits(logits: &Tensor, target: f64) -> Tensor {
    logits.binary_cross_entropy_with_logits::<Tensor>(&logits.full_like(target), None, None, Reduction::Mean)
}

/// Mean squared difference from a constant, `mean((x - target)²)`.
pub fn mse(x: &Tensor, target: f64) -> Tensor {
    (x - target).square().mean(Kind::Float)
}

/// One half of a generator's CAM loss: its auxiliary classifier should say "source domain" (1)
/// for the logits of an image it translates and "not source" (0) for an image already in its
/// target domain. The halves come from different forwards, which the training step differentiates
/// in different passes.
pub fn cam_loss(logit: &Tensor, is_source: bool) -> Tensor {
    bce_with_logits(logit, if is_source { 1.0 } else { 0.0 })
}

/// The cycle-consistency loss (the paper's L_cycle): `mean|G_t→s(G_s→t(x)) − x|`, the image
/// translated and translated back against the original.
pub fn cycle_loss(cycled: &Tensor, real: &Tensor) -> Tensor {
    cycled.l1_loss(real, Reduction::Mean)
}

/// The identity loss (the paper's L_identity): `mean|G_s→t(x_t) − x_t|`, a target-domain image
/// through the generator into that domain against itself.
pub fn identity_loss(same: &Tensor, real: &Tensor) -> Tensor {
    same.l1_loss(real, Reduction::Mean)
}

/// The discriminator's loss on the logits of a real and a fake batch.
pub fn discriminator_loss(gan: GanType, real: &Tensor, fake: &Tensor) -> Tensor {
    match gan {
        GanType::Lsgan => mse(real, 1.0) + fake.square().mean(Kind::Float),
        GanType::Gan | GanType::Dragan => bce_with_logits(real, 1.0) + bce_with_logits(fake, 0.0),
        GanType::Hinge => (real.neg() + 1.0).relu().mean(Kind::Float) + (fake + 1.0).relu().mean(Kind::Float),
        GanType::WganGp | GanType::WganLp => fake.mean(Kind::Float) - real.mean(Kind::Float),
    }
}

/// The generator's adversarial loss on the logits of its fakes.
pub fn generator_loss(gan: GanType, fake: &Tensor) -> Tensor {
    match gan {
        GanType::Lsgan => mse(fake, 1.0),
        GanType::Gan | GanType::Dragan => bce_with_logits(fake, 1.0),
        GanType::Hinge | GanType::WganGp | GanType::WganLp => -fake.mean(Kind::Float),
    }
}

/// The point between `real` and `fake` where the penalty is taken: `real + α(fake − real)`,
/// `alpha` of shape `[B, 1, 1, 1]`. For DRAGAN `fake` is replaced by `real + 0.5·σ(real)·noise`
/// (σ over the whole batch, biased), `noise` uniform in [0, 1) of `real`'s shape.
///
/// σ is the square root of a `var_mean` over every dimension: libtorch's whole-tensor `std`
/// reads its mean back to the host on the CPU, a synchronisation `tests/cuda_graphs.rs` forbids
/// in a step (a CUDA graph cannot capture one).
pub fn penalty_point(gan: GanType, real: &Tensor, fake: &Tensor, alpha: &Tensor, noise: Option<&Tensor>) -> Tensor {
    let fake = match (gan, noise) {
        (GanType::Dragan, Some(noise)) => {
            let every: Vec<i64> = (0..real.dim() as i64).collect();
            let (var, _) = real.var_mean_dim(&every[..], false, false);
            real + var.sqrt() * 0.5 * noise
        }
        _ => fake.shallow_clone(),
    };
    real + alpha * (fake - real)
}

/// `GP_WEIGHT · mean(f(‖∇ₓ Σ out‖ − 1))` for one discriminator output `out` of input `x`, with
/// `f` the square (WGAN-GP, DRAGAN) or the squared positive part (WGAN-LP).
fn penalty(gan: GanType, out: &Tensor, x: &Tensor) -> Tensor {
    let grad = crate::precision::gradients(&[out.sum(Kind::Float)], &[x], true, true).remove(0);
    let norm = grad.flatten(1, -1).norm_scalaropt_dim(2, [1], false);
    let excess = norm - 1.0;
    let excess = if gan == GanType::WganLp { excess.relu() } else { excess };
    excess.square().mean(Kind::Float) * GP_WEIGHT
}

/// The penalty of one discriminator at the interpolated point `x` (which must require grad), on
/// its patch and CAM logits. A train-mode forward.
pub fn gradient_penalty(gan: GanType, d: &Discriminator, x: &Tensor) -> Tensor {
    let out = d.forward_t(x, true);
    penalty(gan, &out.logit, x) + penalty(gan, &out.cam_logit, x)
}
