//! UGATIT-pytorch's image transforms, on 8-bit RGB images from [`crate::io::image`].
//!
//! * train: `RandomHorizontalFlip(0.5)` → `Resize((S+30, S+30))` (PIL bilinear) →
//!   `RandomCrop(S)` → `ToTensor` → `Normalize(0.5, 0.5)`;
//! * test: `Resize((S, S))` → `ToTensor` → `Normalize(0.5, 0.5)`.
//!
//! Both resizes ignore the aspect ratio, as the reference's do. The random choices are drawn
//! separately ([`TrainAugment::draw`]) so that the loader can key them to a stream and tests can
//! fix them.
//!
//! The value map is `x/127.5 − 1` rounded once to f32 (the correctly rounded value);
//! torchvision computes `(x/255 − 0.5)/0.5` in f32, which can differ in the last bit.

use super::rng::Rng;
use crate::io::image::{resize_bilinear_pil, RgbImage};
use anyhow::{bail, Context, Result};
use image::imageops;
use std::sync::OnceLock;
use tch::Tensor;

/// How much larger than the crop the training resize is (`img_size + 30` in the reference).
pub const RESIZE_MARGIN: u32 = 30;

/// The random choices of one training transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainAugment {
    /// Mirror left–right before resizing.
    pub flip: bool,
    /// First row of the crop in the resized `(S+30)²` image, `0..=30`.
    pub top: u32,
    /// First column of the crop, `0..=30`.
    pub left: u32,
}

impl TrainAugment {
    /// Draws the choices in the reference's order: the flip coin (p = 0.5), then the crop row,
    /// then the crop column (each uniform over the `RESIZE_MARGIN + 1` valid offsets).
    pub fn draw(rng: &mut Rng) -> Self {
        let flip = rng.chance(0.5);
        let offsets = u64::from(RESIZE_MARGIN) + 1;
        let top = rng.below(offsets) as u32;
        let left = rng.below(offsets) as u32;
        Self { flip, top, left }
    }

    /// No flip, centre crop: a deterministic stand-in for tests and debugging.
    pub fn centre() -> Self {
        Self { flip: false, top: RESIZE_MARGIN / 2, left: RESIZE_MARGIN / 2 }
    }
}

fn check_sizes(img: &RgbImage, img_size: u32) -> Result<()> {
    if img_size == 0 {
        bail!("the image size must be positive");
    }
    if img.width() == 0 || img.height() == 0 {
        bail!("the image is empty ({}x{})", img.width(), img.height());
    }
    Ok(())
}

/// The 8-bit result of the training transform (before the value map).
pub fn train_pixels(img: &RgbImage, img_size: u32, aug: TrainAugment) -> Result<RgbImage> {
    check_sizes(img, img_size)?;
    let big = img_size.checked_add(RESIZE_MARGIN).context("the image size is too large")?;
    if aug.top > RESIZE_MARGIN || aug.left > RESIZE_MARGIN {
        bail!("crop offset ({}, {}) outside 0..={RESIZE_MARGIN}", aug.top, aug.left);
    }
    // Flip first, as the reference does, so bit-exactness never rests on the resize commuting
    // with mirroring.
    let resized = if aug.flip {
        resize_bilinear_pil(&imageops::flip_horizontal(img), big, big)
    } else {
        resize_bilinear_pil(img, big, big)
    };
    Ok(imageops::crop_imm(&resized, aug.left, aug.top, img_size, img_size).to_image())
}

/// The 8-bit result of the test transform (before the value map).
pub fn test_pixels(img: &RgbImage, img_size: u32) -> Result<RgbImage> {
    check_sizes(img, img_size)?;
    Ok(resize_bilinear_pil(img, img_size, img_size))
}

/// The training transform as a `[3, S, S]` float tensor in [−1, 1] on the CPU.
pub fn train_transform(img: &RgbImage, img_size: u32, aug: TrainAugment) -> Result<Tensor> {
    Ok(image_to_tensor(&train_pixels(img, img_size, aug)?))
}

/// The test transform as a `[3, S, S]` float tensor in [−1, 1] on the CPU.
pub fn test_transform(img: &RgbImage, img_size: u32) -> Result<Tensor> {
    Ok(image_to_tensor(&test_pixels(img, img_size)?))
}

/// `x/127.5 − 1` for every byte value, each correctly rounded to f32.
fn unit_lut() -> &'static [f32; 256] {
    static LUT: OnceLock<[f32; 256]> = OnceLock::new();
    LUT.get_or_init(|| std::array::from_fn(|v| (v as f64 / 127.5 - 1.0) as f32))
}

/// Appends `img` to `out` in channel-major (`[3, H, W]`) order, mapped to [−1, 1].
/// Batches are assembled this way without intermediate tensors.
pub fn extend_chw_unit(img: &RgbImage, out: &mut Vec<f32>) {
    let lut = unit_lut();
    let raw = img.as_raw();
    out.reserve(raw.len());
    for c in 0..3 {
        out.extend(raw.iter().skip(c).step_by(3).map(|&v| lut[usize::from(v)]));
    }
}

/// `img` as a `[3, H, W]` float tensor in [−1, 1] on the CPU.
pub fn image_to_tensor(img: &RgbImage) -> Tensor {
    let mut data = Vec::with_capacity(img.as_raw().len());
    extend_chw_unit(img, &mut data);
    Tensor::from_slice(&data).view([3, i64::from(img.height()), i64::from(img.width())])
}
