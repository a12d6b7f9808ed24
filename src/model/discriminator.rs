//! The U-GAT-IT discriminator, section 2.2 of Kim et al., "U-GAT-IT", arXiv 1907.10830.
//!
//! A PatchGAN-style stack of spectrally normalised 4×4 convolutions with LeakyReLU(0.2), the CAM
//! attention head, and a final 4×4 convolution to a one-channel logit map. The paper pairs a
//! global discriminator (`n_layers` 7: 286×286 receptive field, 6×6 logits at 256 px) with a
//! local one (`n_layers` 5: 70×70, 30×30 logits).
//!
//! Faithful to UGATIT-pytorch, the CAM *logits* use the spectrally normalised FC weight while the
//! feature re-weighting uses the raw `weight_orig` (the first entry of `gap_fc.parameters()`).

use super::layers::{cam_conv1x1, global_pools, reflect, Conv2d};
use super::spectral_norm::{SnConv2d, SnLinear};
use crate::precision::full;
use tch::nn;
use tch::Tensor;

/// LeakyReLU slope used throughout the discriminator.
const SLOPE: f64 = 0.2;

/// Discriminator hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Channels of the first convolution (`--ch`, the reference's `ndf`).
    pub ndf: i64,
    /// Depth as the reference counts it: 7 for the global, 5 for the local discriminator. It has
    /// `n_layers - 2` strided convolutions; the official TF code's `--n_dis` is `n_layers - 1`.
    pub n_layers: i64,
}

impl Default for Config {
    /// The global discriminator.
    fn default() -> Self {
        Self::global(64)
    }
}

impl Config {
    /// The reference's global discriminator (`n_layers` 7).
    pub fn global(ndf: i64) -> Self {
        Self { ndf, n_layers: 7 }
    }

    /// The reference's local discriminator (`n_layers` 5).
    pub fn local(ndf: i64) -> Self {
        Self { ndf, n_layers: 5 }
    }

    /// The number of trainable parameters, from the layer shapes alone (see
    /// `generator::Config::parameter_count`).
    pub fn parameter_count(&self) -> f64 {
        let conv = |c_in: f64, c_out: f64, bias: bool| c_in * c_out * 16.0 + if bias { c_out } else { 0.0 };
        let ndf = self.ndf as f64;
        let strided: f64 =
            (1..self.n_layers - 1).map(|i| ndf * 2f64.powi(i as i32 - 1)).map(|c| conv(c, 2.0 * c, true)).sum();
        let c = ndf * 2f64.powi(self.n_layers as i32 - 2);
        conv(3.0, ndf, true) + strided + 2.0 * c + (2.0 * c * c + c) + conv(c, 1.0, false)
    }

    /// Channels of the features the CAM head sees.
    pub fn cam_channels(&self) -> i64 {
        self.ndf << (self.n_layers - 2)
    }

    /// The side of the logit map for a square input of side `img_size`, or `None` when the input is
    /// too small for this depth (a reflection pad wider than its feature map).
    pub fn logit_size(&self, img_size: i64) -> Option<i64> {
        let mut side = img_size;
        // Strided layers: pad 1, k4 s2; then the stride-1 layer and the final conv: pad 1, k4 s1.
        for _ in 0..self.n_layers - 2 {
            if side < 2 {
                return None;
            }
            side = (side + 2 - 4) / 2 + 1;
        }
        for _ in 0..2 {
            if side < 2 {
                return None;
            }
            side = side + 2 - 4 + 1;
        }
        (side >= 1).then_some(side)
    }
}

/// What a discriminator returns.
#[derive(Debug)]
pub struct DiscriminatorOutput {
    /// Patch logits, `[B, 1, h, w]`.
    pub logit: Tensor,
    /// CAM logits of the average and max pooling branches, `[B, 2]`.
    pub cam_logit: Tensor,
    /// Channel sum of the attended features, `[B, 1, h', w']`.
    pub heatmap: Tensor,
}

/// A global or local U-GAT-IT discriminator (`disGA`, `disLA`, …).
#[derive(Debug)]
pub struct Discriminator {
    config: Config,
    /// `model.{1,4,7,…}`: each is reflection pad 1, SN conv k4, LeakyReLU(0.2).
    model: Vec<SnConv2d>,
    gap_fc: SnLinear,
    gmp_fc: SnLinear,
    conv1x1: Conv2d,
    conv: SnConv2d,
    /// The LeakyReLU slope as a tensor (libtorch's `prelu` is the only leaky ReLU with a slope).
    slope: Tensor,
}

impl Discriminator {
    pub fn new(vs: &nn::Path, config: Config) -> Self {
        let Config { ndf, n_layers } = config;
        let model_vs = vs / "model";
        let mut model = vec![SnConv2d::new(&model_vs / 1, 3, ndf, 4, 2, true)];
        for i in 1..n_layers - 1 {
            let c_in = ndf << (i - 1);
            let stride = if i < n_layers - 2 { 2 } else { 1 };
            model.push(SnConv2d::new(&model_vs / (1 + 3 * i), c_in, c_in * 2, 4, stride, true));
        }
        let c = config.cam_channels();
        Self {
            config,
            model,
            gap_fc: SnLinear::new(vs / "gap_fc", c, 1),
            gmp_fc: SnLinear::new(vs / "gmp_fc", c, 1),
            conv1x1: Conv2d::new(vs / "conv1x1", 2 * c, c, 1, 1, true),
            conv: SnConv2d::new(vs / "conv", c, 1, 4, 1, false),
            slope: Tensor::from(SLOPE as f32).to_device(vs.device()),
        }
    }

    pub fn config(&self) -> Config {
        self.config
    }

    fn leaky_relu(&self, xs: &Tensor) -> Tensor {
        xs.prelu(&self.slope.to_kind(xs.kind()))
    }

    /// Scores `xs`. In train mode every spectral norm runs one power iteration and updates its
    /// stored `u`, `v`; in eval mode they are used as stored.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> DiscriminatorOutput {
        let mut x = xs.shallow_clone();
        for conv in &self.model {
            x = self.leaky_relu(&conv.forward_t(&reflect(&x, 1), train));
        }
        let (gap, gmp) = global_pools(&x);
        let cam_logit = Tensor::cat(&[self.gap_fc.forward_t(&gap, train), self.gmp_fc.forward_t(&gmp, train)], 1);
        let x =
            self.leaky_relu(&cam_conv1x1(&x, &self.conv1x1, &self.gap_fc.sn.weight_orig, &self.gmp_fc.sn.weight_orig));
        let heatmap = full(&x).sum_dim_intlist(1, true, None);
        let logit = full(&self.conv.forward_t(&reflect(&x, 1), train));
        DiscriminatorOutput { logit, cam_logit: full(&cam_logit), heatmap }
    }
}
