//! Building blocks shared by the generator and the discriminators.
//!
//! The reference builds every layer with PyTorch's default initialisation
//! (`kaiming_uniform_(a=√5)` for weights, `U(±1/√fan_in)` for biases), which works out to
//! `U(±1/√fan_in)` for both. tch's own defaults differ (ReLU gain, zero bias), so the layers here
//! set their initialisers explicitly.

use crate::precision::full;
use crate::shim::without_autocast;
use tch::nn::{self, Init};
use tch::Tensor;

/// `U(±1/√fan_in)`: PyTorch's default for both the weights and the biases of conv and linear layers.
pub fn torch_default_init(fan_in: i64) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform { lo: -bound, up: bound }
}

/// A 2-D convolution without padding, under the process's CUDA settings
/// ([`crate::device::CudaSettings`]), in the autocast dtype inside an autocast region (as
/// `conv2d` would be: libtorch's `_convolution` is not autocast itself).
///
/// Weight-bound layers (no more output positions than output channels: the deep discriminator
/// layers) are computed by [`conv_patches`] instead, and the 3×3 convolutions that
/// [`super::winograd::applies`] accepts by Winograd's algorithm.
pub fn conv(xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>, stride: i64) -> Tensor {
    if weight_bound(xs, weight, stride) {
        let (ys, _) = conv_patches(xs, weight, stride, None);
        return match bias {
            Some(bias) => ys + bias.view([1, -1, 1, 1]),
            None => ys,
        };
    }
    if super::winograd::applies(xs, weight, stride) {
        super::flops::record_conv(xs, weight, stride);
        return super::winograd::conv3x3(xs, weight, bias);
    }
    let cuda = crate::device::cuda_settings();
    let low = crate::shim::autocast_kind(xs.device());
    let cast = |t: &Tensor| match low {
        Some(kind) if t.kind() != kind => t.to_kind(kind),
        _ => t.shallow_clone(),
    };
    let (xs, weight, bias) = (cast(xs), cast(weight), bias.map(cast));
    super::flops::record_conv(&xs, &weight, stride);
    xs.internal_convolution(
        &weight,
        bias.as_ref(),
        [stride],
        [0],
        [1],
        false,
        [0],
        1,
        cuda.cudnn_benchmark,
        false,
        true,
        cuda.tf32,
    )
}

/// `B·H_out·W_out` of a convolution without padding.
pub fn output_positions(xs: &Tensor, weight: &Tensor, stride: i64) -> i64 {
    let (b, _, h, w) = xs.size4().expect("convolution input is [B, C, H, W]");
    let k = weight.size()[2];
    b * ((h - k) / stride + 1) * ((w - k) / stride + 1)
}

/// Whether a convolution has no more output positions than output channels: then it is bound
/// by its weight, and [`conv_patches`] computes it.
pub fn weight_bound(xs: &Tensor, weight: &Tensor, stride: i64) -> bool {
    output_positions(xs, weight, stride) <= weight.size()[0]
}

/// A convolution without padding or bias as one float32 matrix product of the `[C_out, C_in·k²]`
/// weight with the input's `[C_in·k², B·H_out·W_out]` patches (im2col), whatever the autocast
/// dtype; `extra` columns `[C_in·k², n]` ride along in the same product, which returns
/// `weight · extra` as `[C_out, n]` beside the output (empty without them).
///
/// For layers with a few output positions and millions of weights, where oneDNN's convolution
/// kernels (forward and backward) run at ~2 GFLOP/s and a bf16 autocast casts the whole weight
/// and its gradient each call: the product is bound by reading and writing the weight, which it
/// does once each way, in float32 at no cost in time.
pub fn conv_patches(xs: &Tensor, weight: &Tensor, stride: i64, extra: Option<&Tensor>) -> (Tensor, Tensor) {
    super::flops::record_conv(xs, weight, stride);
    let (b, _, h, w) = xs.size4().expect("convolution input is [B, C, H, W]");
    let [c_out, _, k, _] = weight.size()[..] else { unreachable!("conv weights are 4-d") };
    let (h_out, w_out) = ((h - k) / stride + 1, (w - k) / stride + 1);
    let n = b * h_out * w_out;
    without_autocast(xs.device(), || {
        let patches = full(xs).im2col([k, k], [1, 1], [0, 0], [stride, stride]);
        let patches = patches.permute([1, 0, 2]).reshape([-1, n]);
        let columns = match extra {
            Some(extra) => Tensor::cat(&[&patches, extra], 1),
            None => patches,
        };
        let product = weight.reshape([c_out, -1]).mm(&columns);
        let ys = product.narrow(1, 0, n).view([c_out, b, h_out, w_out]).permute([1, 0, 2, 3]).contiguous();
        (ys, product.narrow(1, n, product.size()[1] - n))
    })
}

/// A square 2-D convolution without padding (the reference pads explicitly, by reflection).
#[derive(Debug)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub stride: i64,
}

impl Conv2d {
    pub fn new(vs: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, bias: bool) -> Self {
        Self::named(&vs, "weight", c_in, c_out, k, stride, bias)
    }

    /// A convolution whose weight is stored as `weight_name` (spectral norm calls it `weight_orig`).
    pub fn named(vs: &nn::Path, weight_name: &str, c_in: i64, c_out: i64, k: i64, stride: i64, bias: bool) -> Self {
        let init = torch_default_init(c_in * k * k);
        let weight = vs.var(weight_name, &[c_out, c_in, k, k], init);
        let bias = bias.then(|| vs.var("bias", &[c_out], init));
        Self { weight, bias, stride }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        conv(xs, &self.weight, self.bias.as_ref(), self.stride)
    }
}

/// A linear layer, weight stored `[out, in]` as in PyTorch.
pub fn linear(vs: nn::Path, c_in: i64, c_out: i64, bias: bool) -> nn::Linear {
    let init = torch_default_init(c_in);
    let cfg = nn::LinearConfig { ws_init: init, bs_init: Some(init), bias };
    nn::linear(vs, c_in, c_out, cfg)
}

/// Reflection padding of `p` pixels on every side.
pub fn reflect(xs: &Tensor, p: i64) -> Tensor {
    xs.reflection_pad2d([p, p, p, p])
}

/// Instance normalisation without affine parameters (PyTorch `InstanceNorm2d` defaults:
/// biased variance, eps 1e-5, no running statistics), in float32.
///
/// Written out rather than calling libtorch's `instance_norm`, which makes its input contiguous
/// and so would return every channels-last activation in NCHW.
pub fn instance_norm(xs: &Tensor) -> Tensor {
    let xs = full(xs);
    let (var, mean) = super::norm::instance_moments(&xs, super::norm::Variance::Biased);
    let scale = (var + 1e-5).rsqrt();
    (-(mean * &scale)).addcmul(&xs, &scale)
}

/// The CAM attention's `conv1x1(cat([x·w_gap, x·w_gmp], 1))`, where the reference re-weights the
/// `[B, C, H, W]` features channel-wise by each CAM classifier's `[1, C]` weight.
///
/// Where the features outnumber the weight (the generators), computed as one convolution of `x`
/// with the folded weight `W[:, :C]·w_gap + W[:, C:]·w_gmp`: the same linear map at half the
/// arithmetic, without the two re-weighted copies. Where the weight is larger (the deep
/// discriminator layers, a few pixels wide), as the reference writes it, so that no weight-sized
/// copy is kept for the backward pass.
pub fn cam_conv1x1(xs: &Tensor, conv1x1: &Conv2d, w_gap: &Tensor, w_gmp: &Tensor) -> Tensor {
    let (b, c, h, w) = xs.size4().expect("CAM features are [B, C, H, W]");
    let c_out = conv1x1.weight.size()[0];
    if 2 * b * h * w < c_out {
        let x = Tensor::cat(&[xs * w_gap.view([1, c, 1, 1]), xs * w_gmp.view([1, c, 1, 1])], 1);
        return conv(&x, &conv1x1.weight, conv1x1.bias.as_ref(), 1);
    }
    let scale = Tensor::cat(&[w_gap, w_gmp], 1).view([1, 2 * c, 1, 1]);
    let scaled = &conv1x1.weight * scale;
    let weight = scaled.narrow(1, 0, c) + scaled.narrow(1, c, c);
    conv(xs, &weight, conv1x1.bias.as_ref(), 1)
}

/// Global average and max pooling to `[B, C]`, in float32.
pub fn global_pools(xs: &Tensor) -> (Tensor, Tensor) {
    let xs = full(xs);
    let b = xs.size()[0];
    let gap = xs.adaptive_avg_pool2d([1, 1]).view([b, -1]);
    let gmp = xs.adaptive_max_pool2d([1, 1]).0.view([b, -1]);
    (gap, gmp)
}
