//! The images the sample grids show.
//!
//! The reference draws its 5 train columns from the training iterators themselves (advancing
//! them) and its 5 test columns from unshuffled test loaders that restart when exhausted.
//! Drawing from the training stream would make the batches depend on how often grids were
//! written, so train previews come from their own stream instead, keyed by the step, and test
//! previews walk the sorted test files cyclically as the reference's do.

use super::augment::{extend_chw_unit, test_pixels, train_pixels, TrainAugment};
use super::loader::Domain;
use super::rng::Rng;
use crate::io::image::load_rgb8;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use tch::Tensor;

/// Stream tag of the train previews ("prev").
pub const STREAM_PREVIEW: u64 = 0x7072_6576;

fn stack(data: &[f32], count: usize, img_size: u32) -> Tensor {
    let s = i64::from(img_size);
    Tensor::from_slice(data).view([count as i64, 3, s, s])
}

/// `count` training images of `domain` for the grid of step `step`: files drawn uniformly
/// (with replacement) and augmented like training samples, from
/// `Rng::for_stream(seed, [PREVIEW, domain, step])`. Returns `[count, 3, S, S]` in [−1, 1].
pub fn train_preview(
    files: &[PathBuf],
    domain: Domain,
    seed: u64,
    step: u64,
    count: usize,
    img_size: u32,
) -> Result<Tensor> {
    if files.is_empty() || count == 0 {
        bail!("no preview images to draw (domain {domain}: {} files, {count} requested)", files.len());
    }
    let mut rng = Rng::for_stream(seed, &[STREAM_PREVIEW, domain.id(), step]);
    let mut data = Vec::new();
    for _ in 0..count {
        let path = &files[rng.below(files.len() as u64) as usize];
        let aug = TrainAugment::draw(&mut rng);
        let img = load_rgb8(path).with_context(|| format!("train preview, domain {domain}"))?;
        let pixels = train_pixels(&img, img_size, aug).with_context(|| format!("augmenting {}", path.display()))?;
        extend_chw_unit(&pixels, &mut data);
    }
    Ok(stack(&data, count, img_size))
}

/// `count` test images with the test transform: files `first, first + 1, …` modulo the number
/// of files (the `k`-th grid of a run with `count` test columns uses `first = k·count`, which is
/// what the reference's restarting unshuffled test loader yields when `count` divides the
/// number of files). Returns `[count, 3, S, S]` in [−1, 1].
pub fn test_images(files: &[PathBuf], first: u64, count: usize, img_size: u32) -> Result<Tensor> {
    if files.is_empty() || count == 0 {
        bail!("no test images to show ({} files, {count} requested)", files.len());
    }
    let n = files.len() as u64;
    let mut data = Vec::new();
    for j in 0..count as u64 {
        let path = &files[((first % n + j % n) % n) as usize];
        let img = load_rgb8(path)?;
        let pixels = test_pixels(&img, img_size).with_context(|| format!("resizing {}", path.display()))?;
        extend_chw_unit(&pixels, &mut data);
    }
    Ok(stack(&data, count, img_size))
}
