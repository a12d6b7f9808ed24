//! 3×3 convolutions by Winograd's minimal filtering F(4×4, 3×3) (Lavin and Gray, "Fast Algorithms
//! for Convolutional Neural Networks", CVPR 2016), for translation on the CPU in float32.
//!
//! Each 6×6 input tile `d` and each filter `g` are carried into the transform domain
//! (`V = Bᵀ d B`, `U = G g Gᵀ`); there the convolution is 36 independent channel products
//! `M = U·V` (one batched GEMM), and `Aᵀ M A` gives a 4×4 output tile: 36 multiplications per
//! tile and channel pair instead of 144. libtorch's oneDNN convolutions are direct, so the
//! generators' 256-channel convolutions ran at the fp32 GEMM's rate over 4× the products;
//! here they take 0.45–0.6× the time (BENCHMARKS.md). The price is rounding: ~1.5e-5 of the
//! output's range per convolution instead of ~3e-7, far below an 8-bit image's step; training
//! steps never use it (their gradients are the direct convolution's, as the references compute
//! them), only the translations of `--eval-freq`.
//!
//! Enabled per thread by a [`Scope`] ([`crate::precision::Compute::region`] opens one for
//! translation on CPU in float32 unless `--winograd false`); [`applies`] says which convolutions
//! take this path inside it.

use std::cell::Cell;
use tch::{Device, Kind, Tensor};

/// `Bᵀ` for the interpolation points 0, ±1, ±2 and ∞.
#[rustfmt::skip]
const B_T: [f32; 36] = [
    4., 0., -5., 0., 1., 0.,
    0., -4., -4., 1., 1., 0.,
    0., 4., -4., -1., 1., 0.,
    0., -2., -1., 2., 1., 0.,
    0., 2., -1., -2., 1., 0.,
    0., 4., 0., -5., 0., 1.,
];

/// `G`, the filter transform.
#[rustfmt::skip]
const G: [f32; 18] = [
    1. / 4., 0., 0.,
    -1. / 6., -1. / 6., -1. / 6.,
    -1. / 6., 1. / 6., -1. / 6.,
    1. / 24., 1. / 12., 1. / 6.,
    1. / 24., -1. / 12., 1. / 6.,
    0., 0., 1.,
];

/// `Aᵀ`, the output transform.
#[rustfmt::skip]
const A_T: [f32; 24] = [
    1., 1., 1., 1., 1., 0.,
    0., 1., -1., 2., -2., 0.,
    0., 1., 1., 4., 4., 0.,
    0., 1., -1., 8., -8., 1.,
];

/// 4×4 output tiles per chunk: the chunk's transformed tiles (36 × tiles × channels floats, 4.7 MB
/// at 256 channels) stay in cache between the transforms and the products; measured on 2 cores,
/// 64–256 tiles do about equally well, whole maps 1.5–2× worse.
const TILES_PER_CHUNK: i64 = 128;

/// The transforms' per-tile cost grows with `C_in + C_out`, the products' with `C_in·C_out`: at
/// a harmonic mean of the channel counts below this, the transforms cost what the products save
/// (128 → 64 channels on 256² maps measured 0.95–1.25× the direct time, 256 → 128 on 128² 0.6×).
const MIN_HARMONIC_CHANNELS: i64 = 128;

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(false) };
}

/// While alive, the convolutions on this thread that [`applies`] accepts run by Winograd.
#[derive(Debug)]
pub struct Scope {
    previous: bool,
}

impl Scope {
    /// Opens a scope; only where no gradient will be taken (translation).
    pub fn enter() -> Self {
        Self { previous: ENABLED.with(|on| on.replace(true)) }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        ENABLED.with(|on| on.set(self.previous));
    }
}

/// Whether a [`super::layers::conv`] of `xs` by `weight` at `stride` runs here: inside a
/// [`Scope`], on the CPU, float32, 3×3 at stride 1, an output whose sides are multiples of 4,
/// enough channels ([`MIN_HARMONIC_CHANNELS`]) and no autograd graph through the input.
pub fn applies(xs: &Tensor, weight: &Tensor, stride: i64) -> bool {
    if !ENABLED.with(Cell::get) || stride != 1 || xs.device() != Device::Cpu || xs.requires_grad() {
        return false;
    }
    let (&[_, c_in, h, w], &[c_out, _, kh, kw]) = (&xs.size()[..], &weight.size()[..]) else {
        return false;
    };
    let kinds = xs.kind() == Kind::Float && weight.kind() == Kind::Float;
    let tiles = (h - 2) % 4 == 0 && (w - 2) % 4 == 0 && h > 2 && w > 2;
    kinds && tiles && kh == 3 && kw == 3 && 2 * c_in * c_out >= MIN_HARMONIC_CHANNELS * (c_in + c_out)
}

/// The 3×3 stride-1 convolution without padding of `xs` (`[B, C_in, H+2, W+2]`, either layout)
/// by `weight` (`[C_out, C_in, 3, 3]`), in the input's layout; `H`, `W` multiples of 4.
///
/// The transformed tiles are laid out as the input is: tiles × channels for channels-last (each
/// tile's channels contiguous, as each pixel's are; 1.1–1.2× faster there), channels × tiles for
/// NCHW.
pub fn conv3x3(xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let matrix = |values: &[f32], rows: i64| Tensor::from_slice(values).view([rows, -1]);
    let (b_t, g, a_t) = (matrix(&B_T, 6), matrix(&G, 6), matrix(&A_T, 4));
    let (input_transform, output_transform) = (b_t.kron(&b_t), a_t.kron(&a_t));
    let [n, c_in, h, w] = xs.size()[..] else { unreachable!("applies checked a 4-d input") };
    let c_out = weight.size()[0];
    let (h, w) = (h - 2, w - 2);
    let (tile_rows, tile_cols) = (h / 4, w / 4);
    // U = G g Gᵀ for every filter at once: (G⊗G) acting on the flattened 3×3 filters.
    let u = g.kron(&g).mm(&weight.reshape([c_out * c_in, 9]).tr()).view([36, c_out, c_in]);

    let channels_last = xs.stride()[1] == 1 && c_in > 1;
    let out = if channels_last {
        Tensor::empty([n, h, w, c_out], (Kind::Float, Device::Cpu)).permute([0, 3, 1, 2])
    } else {
        Tensor::empty([n, c_out, h, w], (Kind::Float, Device::Cpu))
    };
    let rows_per_chunk = (TILES_PER_CHUNK / (n * tile_cols)).max(1);
    for first in (0..tile_rows).step_by(rows_per_chunk as usize) {
        let rows = rows_per_chunk.min(tile_rows - first);
        let tiles = n * rows * tile_cols;
        // [B, C_in, rows, cols, 6, 6]: the chunk's overlapping 6×6 tiles, stride 4.
        let d = xs.narrow(2, 4 * first, 4 * rows + 2).unfold(2, 6, 4).unfold(3, 6, 4);
        // M, then the output tiles as [B, C_out, rows, 4, cols, 4].
        let y = if channels_last {
            let d = d.permute([4, 5, 0, 2, 3, 1]).reshape([36, -1]);
            let v = input_transform.mm(&d).view([36, tiles, c_in]);
            let m = v.bmm(&u.transpose(1, 2)).view([36, -1]);
            output_transform.mm(&m).view([4, 4, n, rows, tile_cols, c_out]).permute([2, 5, 3, 0, 4, 1])
        } else {
            let d = d.permute([4, 5, 1, 0, 2, 3]).reshape([36, -1]);
            let v = input_transform.mm(&d).view([36, c_in, tiles]);
            let m = u.bmm(&v).view([36, -1]);
            output_transform.mm(&m).view([4, 4, c_out, n, rows, tile_cols]).permute([3, 2, 4, 0, 5, 1])
        };
        // Straight into the output's rows, whatever its layout: one copy.
        out.narrow(2, 4 * first, 4 * rows).view([n, c_out, rows, 4, tile_cols, 4]).copy_(&y);
    }
    match bias {
        Some(bias) => out + bias.view([1, -1, 1, 1]),
        None => out,
    }
}
