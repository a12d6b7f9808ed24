//! The reference's sample grid: one column per sample, seven rows
//! (real | identity heatmap | identity | translation heatmap | translation | cycle heatmap | cycle),
//! written as PNG every `print_freq` steps (UGATIT-pytorch's `A2B_%07d.png` / `B2A_%07d.png`).
//!
//! Image tiles are `x·0.5 + 0.5`, scaled by 255 and rounded with saturation (OpenCV's
//! `imwrite` conversion of the reference's float grid). Heatmap tiles follow the reference's
//! `cam()`: min–max normalisation, `uint8(255·x)` truncation, OpenCV bilinear resize to the tile
//! size, then the JET colour map. The output is RGB (the reference works in BGR only because
//! OpenCV writes BGR).

use crate::model::Generate;
use anyhow::{bail, Context, Result};
use image::{ImageEncoder, Rgb, RgbImage};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Rows of a sample column.
pub const ROWS: u32 = 7;

/// One column of the grid: images are `[3, H, W]` in [−1, 1], heatmaps `[1, h, w]` raw
/// channel sums (the generator's heatmap output); a leading batch dimension of 1 is accepted.
/// Tensors may live on any device and have any floating kind.
#[derive(Debug)]
pub struct SampleColumn {
    pub real: Tensor,
    pub heat_identity: Tensor,
    pub identity: Tensor,
    pub heat_translated: Tensor,
    pub translated: Tensor,
    pub heat_cycle: Tensor,
    pub cycle: Tensor,
}

impl SampleColumn {
    /// The rows top to bottom, with `true` marking heatmaps.
    fn rows(&self) -> [(&'static str, &Tensor, bool); ROWS as usize] {
        [
            ("real", &self.real, false),
            ("identity heatmap", &self.heat_identity, true),
            ("identity", &self.identity, false),
            ("translation heatmap", &self.heat_translated, true),
            ("translation", &self.translated, false),
            ("cycle heatmap", &self.heat_cycle, true),
            ("cycle", &self.cycle, false),
        ]
    }
}

/// The columns of one direction for each image of the batch `real` (`[N, 3, S, S]`): its
/// identity through `backward`, its translation through `forward` and that translation's cycle
/// back through `backward`, each with its heatmap. Computed without gradients.
pub fn sample_columns(real: &Tensor, forward: &dyn Generate, backward: &dyn Generate) -> Vec<SampleColumn> {
    tch::no_grad(|| {
        let identity = backward.generate(real);
        let translated = forward.generate(real);
        let cycle = backward.generate(&translated.image);
        (0..real.size()[0])
            .map(|i| SampleColumn {
                real: real.get(i),
                heat_identity: identity.heatmap.get(i),
                identity: identity.image.get(i),
                heat_translated: translated.heatmap.get(i),
                translated: translated.image.get(i),
                heat_cycle: cycle.heatmap.get(i),
                cycle: cycle.image.get(i),
            })
            .collect()
    })
}

/// Renders `columns` as a grid of `ROWS × columns.len()` tiles of `tile × tile` pixels
/// (height `7·tile`, width `N·tile`).
pub fn render_grid(columns: &[SampleColumn], tile: u32) -> Result<RgbImage> {
    if columns.is_empty() {
        bail!("a sample grid needs at least one column");
    }
    if tile == 0 {
        bail!("the tile size must be positive");
    }
    let width = u32::try_from(columns.len()).ok().and_then(|n| n.checked_mul(tile));
    let height = ROWS.checked_mul(tile);
    let (Some(width), Some(height)) = (width, height) else {
        bail!("a grid of {} columns of {tile}-pixel tiles is too large", columns.len());
    };
    let mut grid = RgbImage::new(width, height);
    for (c, column) in columns.iter().enumerate() {
        for (r, (name, t, heat)) in column.rows().into_iter().enumerate() {
            let tile_img = if heat { heatmap_tile(t, tile) } else { image_tile(t, tile) }
                .with_context(|| format!("sample column {c}, row {r} ({name})"))?;
            image::imageops::replace(&mut grid, &tile_img, i64::from(c as u32 * tile), i64::from(r as u32 * tile));
        }
    }
    Ok(grid)
}

/// The values of `t` as f32 on the CPU with its shape, after dropping leading size-1 dims
/// down to `keep` dims.
fn host_values(t: &Tensor, keep: usize) -> Result<(Vec<f32>, Vec<i64>)> {
    let mut shape = t.size();
    while shape.len() > keep && shape[0] == 1 {
        shape.remove(0);
    }
    if !t.is_floating_point() {
        bail!("expected a floating-point tensor, got {:?}", t.kind());
    }
    let flat = t.detach().to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view([-1]);
    let values = Vec::<f32>::try_from(&flat).context("copying the tensor to the host")?;
    Ok((values, shape))
}

/// An image tensor (`[3, H, W]` in [−1, 1]) as a `tile × tile` RGB tile (resized with PIL
/// bilinear only when its size differs; the reference never needs that).
pub fn image_tile(t: &Tensor, tile: u32) -> Result<RgbImage> {
    let (values, shape) = host_values(t, 3)?;
    let [3, h, w] = shape[..] else {
        bail!("expected an image of shape [3, H, W], got {:?}", t.size());
    };
    let (h, w) = (u32::try_from(h)?, u32::try_from(w)?);
    if h == 0 || w == 0 {
        bail!("the image is empty ({w}x{h})");
    }
    let plane = (h * w) as usize;
    let img = RgbImage::from_fn(w, h, |x, y| {
        let i = (y * w + x) as usize;
        Rgb([0, 1, 2].map(|c| unit_to_u8(values[c * plane + i])))
    });
    Ok(if (w, h) == (tile, tile) { img } else { crate::io::image::resize_bilinear_pil(&img, tile, tile) })
}

/// `x·0.5 + 0.5` (in f32, as the reference's denorm) times 255, rounded half to even and
/// saturated (OpenCV's float → uint8 conversion); NaN becomes 0.
fn unit_to_u8(x: f32) -> u8 {
    let v = (f64::from(x * 0.5 + 0.5) * 255.0).round_ties_even();
    if v.is_nan() {
        0
    } else {
        v.clamp(0.0, 255.0) as u8
    }
}

/// A heatmap tensor (`[1, h, w]` or `[h, w]`, raw values) as a `tile × tile` JET-coloured tile.
///
/// Min–max normalised over its finite values (a constant map, or one without finite values,
/// becomes all zeros instead of the reference's NaN; non-finite entries become 0), truncated to
/// `uint8(255·x)`, resized like `cv2.resize(INTER_LINEAR)` and coloured with [`jet`].
pub fn heatmap_tile(t: &Tensor, tile: u32) -> Result<RgbImage> {
    let (values, shape) = host_values(t, 2)?;
    let (h, w) = match shape[..] {
        [1, h, w] | [h, w] => (h, w),
        _ => bail!("expected a heatmap of shape [1, h, w], got {:?}", t.size()),
    };
    let (h, w) = (usize::try_from(h)?, usize::try_from(w)?);
    if h == 0 || w == 0 {
        bail!("the heatmap is empty ({w}x{h})");
    }
    let bytes = normalise_heatmap(&values);
    let resized = resize_linear_cv(&bytes, w, h, tile as usize, tile as usize);
    let mut img = RgbImage::new(tile, tile);
    for (p, &v) in img.pixels_mut().zip(&resized) {
        *p = Rgb(jet(v));
    }
    Ok(img)
}

/// The reference's `x -= min; x /= max; uint8(255·x)`, in f32 as numpy computes it.
fn normalise_heatmap(values: &[f32]) -> Vec<u8> {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let min = finite.clone().fold(f32::INFINITY, f32::min);
    let max = finite.fold(f32::NEG_INFINITY, f32::max);
    let range = max - min;
    if !(range.is_finite() && range > 0.0) {
        return vec![0; values.len()];
    }
    values
        .iter()
        .map(|&v| if v.is_finite() { (255.0 * ((v - min) / range)).clamp(0.0, 255.0) as u8 } else { 0 })
        .collect()
}

/// Source index pairs and the 11-bit fixed-point weight of the second, per output index, as
/// OpenCV's `INTER_LINEAR` computes them: half-pixel centres, clamped at the borders.
fn cv_axis(src: usize, dst: usize) -> Vec<(usize, usize, i32)> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|d| {
            let f = (d as f64 + 0.5) * scale - 0.5;
            let i = f.floor();
            let (i, frac) = if i < 0.0 {
                (0, 0.0)
            } else if i as usize >= src - 1 {
                (src - 1, 0.0)
            } else {
                (i as usize, f - i)
            };
            (i, (i + 1).min(src - 1), (frac * 2048.0).round() as i32)
        })
        .collect()
}

/// A single-channel `uint8` bilinear resize in the manner of `cv2.resize(INTER_LINEAR)`:
/// 11-bit weights per axis, the horizontal sums kept as integers, and the vertical combination
/// rounded the way OpenCV's x86 SIMD path does (`(r >> 4)·β >> 16` per row, then `+2 >> 2`).
/// No antialiasing when shrinking. Against OpenCV 5.0 a 64→256 upscale of random bytes differs
/// by one level on about 0.25% of the pixels (all in the two clamped border rows at each end).
fn resize_linear_cv(src: &[u8], w: usize, h: usize, ow: usize, oh: usize) -> Vec<u8> {
    let xs = cv_axis(w, ow);
    let ys = cv_axis(h, oh);
    let mut out = Vec::with_capacity(ow * oh);
    for &(y0, y1, fy) in &ys {
        for &(x0, x1, fx) in &xs {
            let row = |y: usize| i32::from(src[y * w + x0]) * (2048 - fx) + i32::from(src[y * w + x1]) * fx;
            let v = ((((2048 - fy) * (row(y0) >> 4)) >> 16) + ((fy * (row(y1) >> 4)) >> 16) + 2) >> 2;
            out.push(v.clamp(0, 255) as u8);
        }
    }
    out
}

/// OpenCV's `COLORMAP_JET` as RGB: the piecewise-linear ramps
/// `r = clamp(1.5 − |4v − 3|)`, `g = clamp(1.5 − |4v − 2|)`, `b = clamp(1.5 − |4v − 1|)`
/// with `v = i/255`, times 255, rounded half to even. This reproduces OpenCV's table entry for
/// entry except blue at 159, where OpenCV's float interpolation lands just below 1.5 and gives
/// 1; that entry is special-cased. Endpoints: 0 → (0, 0, 128), 255 → (128, 0, 0).
pub fn jet(i: u8) -> [u8; 3] {
    // 2·255·channel = 765 − |8i − 510·t| exactly, so the only rounding is of halves.
    let i = i32::from(i);
    let channel = |t: i32| -> u8 {
        let twice = (765 - (8 * i - 510 * t).abs()).clamp(0, 510);
        let (q, r) = (twice / 2, twice % 2);
        // Ties go to the even neighbour.
        (q + (r == 1 && q % 2 == 1) as i32) as u8
    };
    let blue = if i == 159 { 1 } else { channel(1) };
    [channel(3), channel(2), blue]
}

/// Encodes `img` as PNG into `out`.
pub fn write_png(img: &RgbImage, out: &mut dyn std::io::Write) -> Result<()> {
    image::codecs::png::PngEncoder::new(out)
        .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
        .context("encoding PNG")
}

/// `img` as the bytes of a PNG file.
pub fn png_bytes(img: &RgbImage) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    write_png(img, &mut out)?;
    Ok(out)
}

/// Saves `img` as PNG at `path`, atomically (temporary file + rename).
pub fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    crate::io::atomic::write_atomically(path, |out| write_png(img, out))
}
