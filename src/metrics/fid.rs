//! Fréchet Inception Distance as tfgan's `frechet_classifier_distance_from_activations`
//! computes it (GAN_Metrics-Tensorflow prints it divided by 100; we report the plain value).
//!
//! `FID = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2·tr √(Σ₁Σ₂)`, with unbiased covariances, all in f64.
//! `tr √(Σ₁Σ₂)` is evaluated as `tr √(A Σ₂ A)` with `A = √Σ₁`, which has the same eigenvalues and
//! is symmetric, so both roots come from symmetric eigen-decompositions in f64. tfgan takes its
//! roots by SVD, square-rooting singular values ≥ 1e-10 and keeping smaller ones as they are; for
//! a symmetric matrix that is `sign(λ)·g(|λ|)` per eigenvalue `λ`, which is what we apply, so
//! round-off eigenvalues of either sign contribute (almost) nothing instead of `√|noise|`.
//!
//! With n = 100 images and d = 2048 features the covariances have rank ≤ 99 and everything but
//! ~99 eigenvalues is round-off. [`fid`] therefore works in sample space when that is smaller:
//! with centred data `Cᵢ` (`Σᵢ = CᵢᵀCᵢ/(nᵢ−1)`), the non-zero eigenvalues of `Σ₁Σ₂` are those of
//! `M Mᵀ/((n₁−1)(n₂−1))` with `M = C₁C₂ᵀ` (n₁×n₂), because `XY` and `YX` share their non-zero
//! spectrum. That is the same quantity without the 2048×2048 decompositions: about a thousand
//! times faster, and closer to the exact value. A general `sqrtm(Σ₁Σ₂)` (scipy, pytorch-fid) is
//! markedly less accurate on these rank-deficient products (1.5e-4 absolute on a set with itself).

use super::kid::as_f64_pair;
use anyhow::{ensure, Context, Result};
use tch::{Kind, Tensor};

/// Below this a singular value is not square-rooted (tfgan's `eps`).
const SQRT_EPS: f64 = 1e-10;

/// Mean `[d]` and unbiased covariance `[d, d]` of `[n, d]` activations, in f64.
pub fn mean_cov(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let n = x.size()[0];
    ensure!(n >= 2, "FID needs at least 2 samples per set, got {n}");
    let mu = x.mean_dim(0, false, Kind::Double);
    let c = x - &mu;
    let cov = c.tr().matmul(&c) / (n - 1) as f64;
    Ok((mu, cov))
}

/// tfgan's root of one eigenvalue: `sign(λ)·√|λ|`, or `λ` itself when `|λ| < 1e-10`.
fn root(lambda: f64) -> f64 {
    if lambda.abs() < SQRT_EPS {
        lambda
    } else {
        lambda.signum() * lambda.abs().sqrt()
    }
}

fn symmetric(m: &Tensor) -> Tensor {
    (m + m.tr()) * 0.5
}

/// Eigenvalues of a symmetric matrix.
fn eigvalsh(m: &Tensor) -> Result<Vec<f64>> {
    let vals = symmetric(m).f_linalg_eigvalsh("L").context("symmetric eigen-decomposition failed")?;
    Ok(Vec::<f64>::try_from(&vals)?)
}

/// `Σ root(λ)` over the eigenvalues of a symmetric matrix: `tr √M` the way tfgan takes it.
fn trace_sqrt_symmetric(m: &Tensor) -> Result<f64> {
    Ok(eigvalsh(m)?.into_iter().map(root).sum())
}

/// `tr √(Σ₁Σ₂)` through `tr √(√Σ₁ Σ₂ √Σ₁)`, from `[d, d]` covariances.
pub fn trace_sqrt_product(sigma1: &Tensor, sigma2: &Tensor) -> Result<f64> {
    let (vals, vecs) = symmetric(sigma1).f_linalg_eigh("L").context("symmetric eigen-decomposition failed")?;
    let roots = Tensor::from_slice(&Vec::<f64>::try_from(&vals)?.into_iter().map(root).collect::<Vec<_>>());
    let a = (&vecs * roots.unsqueeze(0)).matmul(&vecs.tr());
    trace_sqrt_symmetric(&a.matmul(sigma2).matmul(&a))
}

/// `tr √(Σ₁Σ₂)` from centred `[n₁, d]` and `[n₂, d]` data, in sample space (see the module
/// documentation).
fn trace_sqrt_product_samples(c1: &Tensor, c2: &Tensor) -> Result<f64> {
    let (n1, n2) = (c1.size()[0], c2.size()[0]);
    let m = c1.matmul(&c2.tr());
    let gram = if n1 <= n2 { m.matmul(&m.tr()) } else { m.tr().matmul(&m) };
    trace_sqrt_symmetric(&(gram / ((n1 - 1) * (n2 - 1)) as f64))
}

/// The Fréchet distance between two Gaussians given by their means and covariances.
pub fn frechet_distance(mu1: &Tensor, sigma1: &Tensor, mu2: &Tensor, sigma2: &Tensor) -> Result<f64> {
    let mean_term = (mu1 - mu2).square().sum(Kind::Double).double_value(&[]);
    let traces = sigma1.trace().double_value(&[]) + sigma2.trace().double_value(&[]);
    Ok(mean_term + traces - 2.0 * trace_sqrt_product(sigma1, sigma2)?)
}

/// FID between two `[n, d]` activation sets (any float kind; computed in f64).
pub fn fid(a: &Tensor, b: &Tensor) -> Result<f64> {
    let (a, b) = as_f64_pair(a, b)?;
    let (n1, n2, d) = (a.size()[0], b.size()[0], a.size()[1]);
    let value = if n1.min(n2) < d {
        ensure!(n1 >= 2 && n2 >= 2, "FID needs at least 2 samples per set, got {n1} and {n2}");
        let (mu1, mu2) = (a.mean_dim(0, false, Kind::Double), b.mean_dim(0, false, Kind::Double));
        let (c1, c2) = (&a - &mu1, &b - &mu2);
        let mean_term = (&mu1 - &mu2).square().sum(Kind::Double).double_value(&[]);
        let trace = |c: &Tensor, n: i64| c.square().sum(Kind::Double).double_value(&[]) / (n - 1) as f64;
        mean_term + trace(&c1, n1) + trace(&c2, n2) - 2.0 * trace_sqrt_product_samples(&c1, &c2)?
    } else {
        let (mu1, s1) = mean_cov(&a)?;
        let (mu2, s2) = mean_cov(&b)?;
        frechet_distance(&mu1, &s1, &mu2, &s2)?
    };
    ensure!(value.is_finite(), "FID is not finite ({value}): check the activations for NaN");
    Ok(value)
}
