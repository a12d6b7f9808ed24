//! Kernel Inception Distance as tfgan's `kernel_classifier_distance_and_std_from_activations`
//! computes it, which is what GAN_Metrics-Tensorflow (and so the U-GAT-IT paper) reports with
//! `max_block_size = 10`.
//!
//! With the cubic polynomial kernel `k(x, y) = (x·y/d + 1)³`, both sets are cut into the same
//! number of contiguous blocks, `ceil(max(n_real, n_fake) / max_block_size)`; within each set the
//! block sizes differ by at most one, the smaller blocks first. Each block pair gives the unbiased
//! MMD² estimate
//!
//! ```text
//! (ΣK_rr − tr K_rr)/(m(m−1)) + (ΣK_ff − tr K_ff)/(n(n−1)) − 2·mean(K_rf)
//! ```
//!
//! and KID is the mean over blocks, reported with the standard error of that mean,
//! `sqrt(Σ(est_b − KID)²/(B−1)/B)` (NaN for a single block). The estimate depends on the order of
//! the samples; we compute in f64 where tfgan used the activations' float32.

use anyhow::{bail, ensure, Result};
use serde::Serialize;
use tch::{Kind, Tensor};

/// The block size GAN_Metrics-Tensorflow passes (tfgan's own default is 1024).
pub const GM_MAX_BLOCK_SIZE: usize = 10;

/// GAN_Metrics-Tensorflow's weight of the source-domain KID in the mean KID (commit 9ced680,
/// "add alpha"); the target-domain KID gets `1 − SOURCE_ALPHA`.
pub const SOURCE_ALPHA: f64 = 0.98;

/// A KID estimate and the standard error of the block mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Kid {
    /// The mean of the block estimates.
    pub mean: f64,
    /// The standard error of that mean (NaN for a single block).
    pub std: f64,
}

impl Kid {
    /// Both values ×100, the scale papers report.
    pub fn x100(self) -> Kid {
        Kid { mean: self.mean * 100.0, std: self.std * 100.0 }
    }
}

/// Block boundaries `[0, …, n]` of `n` samples cut into `n_blocks` contiguous blocks whose sizes
/// differ by at most one, the smaller ones first (tfgan's split).
pub fn block_bounds(n: usize, n_blocks: usize) -> Vec<usize> {
    let base = n / n_blocks;
    let bigger = n - base * n_blocks;
    let mut bounds = Vec::with_capacity(n_blocks + 1);
    let mut at = 0;
    bounds.push(0);
    for b in 0..n_blocks {
        at += if b < n_blocks - bigger { base } else { base + 1 };
        bounds.push(at);
    }
    bounds
}

/// Checks a pair of activation matrices and returns them as f64 `[n, d]`.
pub(crate) fn as_f64_pair(a: &Tensor, b: &Tensor) -> Result<(Tensor, Tensor)> {
    let (sa, sb) = (a.size(), b.size());
    ensure!(sa.len() == 2 && sb.len() == 2, "activations must be [n, d] matrices, got {sa:?} and {sb:?}");
    ensure!(sa[1] == sb[1], "activation widths differ: {} vs {}", sa[1], sb[1]);
    ensure!(sa[1] > 0, "activations have no features");
    let to = |t: &Tensor| t.to_device(tch::Device::Cpu).to_kind(Kind::Double).contiguous();
    Ok((to(a), to(b)))
}

/// How many blocks KID splits `n_real` and `n_fake` samples into (blocks of at most
/// `max_block_size`), failing when a block would hold fewer than two samples of either set:
/// callers can check their image counts before extracting any feature.
pub fn blocks(n_real: usize, n_fake: usize, max_block_size: usize) -> Result<usize> {
    ensure!(max_block_size >= 1, "the KID block size must be at least 1");
    let n_blocks = n_real.max(n_fake).div_ceil(max_block_size);
    if n_real.min(n_fake) < 2 * n_blocks.max(1) {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        bail!(
            "KID needs at least 2 images of each set in every block: {n_real} real and {n_fake} generated \
             image{} make {n_blocks} block{} of at most {max_block_size}; use at least {} images in each \
             folder, or a larger --max-block-size",
            plural(n_fake),
            plural(n_blocks),
            2 * n_blocks.max(1)
        );
    }
    Ok(n_blocks)
}

/// KID between `real` and `fake` activations (`[n, d]`, any float kind).
///
/// Fails when a block would hold fewer than two samples of either set (the unbiased estimate
/// divides by `m(m−1)`; tfgan would return NaN or infinity there).
pub fn kid(real: &Tensor, fake: &Tensor, max_block_size: usize) -> Result<Kid> {
    let (r, f) = as_f64_pair(real, fake)?;
    let (n_r, n_f) = (r.size()[0] as usize, f.size()[0] as usize);
    let n_blocks = blocks(n_r, n_f, max_block_size)?;
    let dim = r.size()[1] as f64;
    let kernel = |x: &Tensor, y: &Tensor| (x.matmul(&y.tr()) / dim + 1.0).pow_tensor_scalar(3);
    let (br, bf) = (block_bounds(n_r, n_blocks), block_bounds(n_f, n_blocks));
    let mut ests = Vec::with_capacity(n_blocks);
    for b in 0..n_blocks {
        let x = r.narrow(0, br[b] as i64, (br[b + 1] - br[b]) as i64);
        let y = f.narrow(0, bf[b] as i64, (bf[b + 1] - bf[b]) as i64);
        let (m, n) = ((br[b + 1] - br[b]) as f64, (bf[b + 1] - bf[b]) as f64);
        let within =
            |k: Tensor, c: f64| (k.sum(Kind::Double).double_value(&[]) - k.trace().double_value(&[])) / (c * (c - 1.0));
        let cross = kernel(&x, &y).mean(Kind::Double).double_value(&[]);
        ests.push(within(kernel(&x, &x), m) + within(kernel(&y, &y), n) - 2.0 * cross);
    }
    let nb = n_blocks as f64;
    let mean = ests.iter().sum::<f64>() / nb;
    let std = if n_blocks <= 1 {
        f64::NAN
    } else {
        let var = ests.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (nb - 1.0);
        (var / nb).sqrt()
    };
    Ok(Kid { mean, std })
}

/// GAN_Metrics-Tensorflow's `mean_kernel_inception_distance`:
/// `(0.02·KID(target, fake) + 0.98·KID(source, fake)) / 2`, for the mean and the std alike.
///
/// This rewards resemblance to the SOURCE domain: an identity "translation" scores about 0.
pub fn mean_kid(target: Kid, source: Kid) -> Kid {
    let mix = |t: f64, s: f64| ((1.0 - SOURCE_ALPHA) * t + SOURCE_ALPHA * s) / 2.0;
    Kid { mean: mix(target.mean, source.mean), std: mix(target.std, source.std) }
}
