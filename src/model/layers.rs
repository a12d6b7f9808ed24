//! Building blocks shared by the generator and the discriminators.
//!
//! The reference builds every layer with PyTorch's default initialisation
//! (`kaiming_uniform_(a=√5)` for weights, `U(±1/√fan_in)` for biases), which works out to
//! `U(±1/√fan_in)` for both. tch's own defaults differ (ReLU gain, zero bias), so the layers here
//! set their initialisers explicitly.

use crate::precision::full;
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
pub fn conv(xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>, stride: i64) -> Tensor {
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
