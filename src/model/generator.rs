//! The U-GAT-IT generator (`ResnetGenerator`), section 2.1 of Kim et al., "U-GAT-IT:
//! Unsupervised Generative Attentional Networks with Adaptive Layer-Instance Normalization for
//! Image-to-Image Translation", arXiv 1907.10830.
//!
//! Encoder (reflection-padded convolutions with affine-free instance norm, then residual blocks),
//! the class activation map (CAM) attention head, an MLP that turns the attended features into
//! AdaLIN's `gamma`/`beta`, AdaLIN residual blocks and an ILN up-sampling decoder. Variable paths
//! are UGATIT-pytorch's `state_dict` keys (`DownBlock.1.weight`, `UpBlock1_1.norm1.rho`, …).
//!
//! The ReLUs after a normalisation or the CAM convolution run in place (`relu_`): the ReLU keeps
//! its output for its backward and nothing keeps its input, so each layer holds one map fewer
//! until the backward (150–195 MiB of a light 256 px training step's peak; same numbers).

use super::layers::{cam_conv1x1, global_pools, instance_norm, linear, reflect, Conv2d};
use super::norm::{clip_rho, AdaLIN, ILN};
use crate::precision::full;
use tch::nn;
use tch::Tensor;

/// The encoder halves the resolution this many times (fixed in the reference).
const N_DOWNSAMPLING: i64 = 2;

/// Generator hyper-parameters; the defaults are the paper's (`--ch 64 --n_res 4 --img_size 256`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Channels of the first convolution (`--ch`, the reference's `ngf`).
    pub ngf: i64,
    /// Residual blocks in the encoder bottleneck and AdaLIN blocks in the decoder (`--n_res`).
    pub n_res: i64,
    /// Input size; only the full model depends on it (its MLP reads the whole feature map).
    pub img_size: i64,
    /// The light model pools the attended features before the MLP (`--light`).
    pub light: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self { ngf: 64, n_res: 4, img_size: 256, light: false }
    }
}

impl Config {
    /// Channels of the bottleneck.
    pub fn bottleneck_channels(&self) -> i64 {
        self.ngf * (1 << N_DOWNSAMPLING)
    }

    /// The number of trainable parameters, from the layer shapes alone (in floating point, so
    /// that absurd sizes give a large number rather than an overflow): what a caller checks
    /// before allocating. `tests/summary.rs` holds it to the built network's count.
    pub fn parameter_count(&self) -> f64 {
        let (ngf, dim) = (self.ngf as f64, self.ngf as f64 * (1i64 << N_DOWNSAMPLING) as f64);
        let conv = |c_in: f64, c_out: f64, k: f64| c_in * c_out * k * k;
        let scale = |i: i64| f64::from(1u32 << i);
        let down = conv(3.0, ngf, 7.0)
            + (0..N_DOWNSAMPLING).map(|i| conv(ngf * scale(i), ngf * scale(i + 1), 3.0)).sum::<f64>();
        let res_blocks = self.n_res as f64 * 2.0 * conv(dim, dim, 3.0);
        let cam = 2.0 * dim + conv(2.0 * dim, dim, 1.0) + dim;
        let side = (self.img_size / (1 << N_DOWNSAMPLING)) as f64;
        let mlp_in = if self.light { dim } else { dim * side * side };
        let mlp = mlp_in * dim + 3.0 * dim * dim;
        let ada_blocks = self.n_res as f64 * (2.0 * conv(dim, dim, 3.0) + 2.0 * dim);
        let up = (0..N_DOWNSAMPLING).map(|i| dim / scale(i + 1)).map(|c| conv(2.0 * c, c, 3.0) + 3.0 * c).sum::<f64>();
        down + res_blocks + cam + mlp + ada_blocks + up + conv(ngf, 3.0, 7.0)
    }

    /// FLOPs of the MLP (`FC`, `gamma`, `beta`) for a batch of `batch` (the only linear layers
    /// with real work: the full model's first one reads the whole bottleneck map).
    pub fn mlp_flops(&self, batch: i64) -> f64 {
        let dim = self.bottleneck_channels();
        2.0 * batch as f64 * dim as f64 * (self.mlp_in_features() + 3 * dim) as f64
    }

    /// Input width of the first MLP layer.
    pub fn mlp_in_features(&self) -> i64 {
        let c = self.bottleneck_channels();
        if self.light {
            c
        } else {
            let side = self.img_size / (1 << N_DOWNSAMPLING);
            c * side * side
        }
    }
}

/// What the generator returns.
#[derive(Debug)]
pub struct GeneratorOutput {
    /// Translated image in [-1, 1], `[B, 3, H, W]`.
    pub image: Tensor,
    /// The CAM logits of the global average and max pooling branches, `[B, 2]`.
    pub cam_logit: Tensor,
    /// Channel sum of the attended features, `[B, 1, H/4, W/4]`.
    pub heatmap: Tensor,
    /// The full generator's `FC.0` input (the flattened feature map, `[B, C·H/4·W/4]`) and
    /// output (before its ReLU, `[B, C]`), while gradients are recorded: training keeps that
    /// layer's weight gradient, `Σ dyᵀ x`, as these factors (`train/mlp_grad.rs`).
    pub mlp: Option<(Tensor, Tensor)>,
}

/// `x + [pad, conv, IN, ReLU, pad, conv, IN](x)` (keys `conv_block.1`, `conv_block.5`).
#[derive(Debug)]
struct ResnetBlock {
    conv1: Conv2d,
    conv2: Conv2d,
}

impl ResnetBlock {
    fn new(vs: nn::Path, dim: i64) -> Self {
        let vs = vs / "conv_block";
        Self {
            conv1: Conv2d::new(&vs / "1", dim, dim, 3, 1, false),
            conv2: Conv2d::new(&vs / "5", dim, dim, 3, 1, false),
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let h = instance_norm(&self.conv1.forward(&reflect(xs, 1))).relu_();
        xs + instance_norm(&self.conv2.forward(&reflect(&h, 1)))
    }
}

/// The decoder's residual block with AdaLIN (`ResnetAdaILNBlock`), residual included.
#[derive(Debug)]
struct ResnetAdaLINBlock {
    conv1: Conv2d,
    norm1: AdaLIN,
    conv2: Conv2d,
    norm2: AdaLIN,
}

impl ResnetAdaLINBlock {
    fn new(vs: nn::Path, dim: i64) -> Self {
        Self {
            conv1: Conv2d::new(&vs / "conv1", dim, dim, 3, 1, false),
            norm1: AdaLIN::new(&vs / "norm1", dim),
            conv2: Conv2d::new(&vs / "conv2", dim, dim, 3, 1, false),
            norm2: AdaLIN::new(&vs / "norm2", dim),
        }
    }

    fn forward(&self, xs: &Tensor, gamma: &Tensor, beta: &Tensor) -> Tensor {
        let h = self.norm1.forward(&self.conv1.forward(&reflect(xs, 1)), gamma, beta).relu_();
        xs + self.norm2.forward(&self.conv2.forward(&reflect(&h, 1)), gamma, beta)
    }
}

/// One decoder up-sampling stage: nearest ×2, pad 1, 3×3 conv, ILN, ReLU.
#[derive(Debug)]
struct UpStage {
    conv: Conv2d,
    norm: ILN,
}

/// The U-GAT-IT generator `G_{s→t}`.
#[derive(Debug)]
pub struct ResnetGenerator {
    config: Config,
    /// Encoder convolutions at `DownBlock.{1,5,9}`: (conv, reflection padding).
    down_convs: Vec<(Conv2d, i64)>,
    res_blocks: Vec<ResnetBlock>,
    gap_fc: nn::Linear,
    gmp_fc: nn::Linear,
    conv1x1: Conv2d,
    /// `FC.0`, `FC.2`: the MLP, each layer followed by a ReLU.
    fc: Vec<nn::Linear>,
    gamma: nn::Linear,
    beta: nn::Linear,
    up_blocks: Vec<ResnetAdaLINBlock>,
    up_stages: Vec<UpStage>,
    out_conv: Conv2d,
}

impl ResnetGenerator {
    pub fn new(vs: &nn::Path, config: Config) -> Self {
        let Config { ngf, n_res, .. } = config;
        let down = vs / "DownBlock";
        let mut down_convs = vec![(Conv2d::new(&down / "1", 3, ngf, 7, 1, false), 3)];
        for i in 0..N_DOWNSAMPLING {
            let mult = 1 << i;
            let conv = Conv2d::new(&down / (5 + 4 * i), ngf * mult, ngf * mult * 2, 3, 2, false);
            down_convs.push((conv, 1));
        }
        let dim = config.bottleneck_channels();
        let first_res = 4 * (N_DOWNSAMPLING + 1);
        let res_blocks = (0..n_res).map(|i| ResnetBlock::new(&down / (first_res + i), dim)).collect();

        let fc = vs / "FC";
        let up2 = vs / "UpBlock2";
        let up_stages = (0..N_DOWNSAMPLING)
            .map(|i| {
                let c_in = dim >> i;
                UpStage {
                    conv: Conv2d::new(&up2 / (2 + 5 * i), c_in, c_in / 2, 3, 1, false),
                    norm: ILN::new(&up2 / (3 + 5 * i), c_in / 2),
                }
            })
            .collect();
        Self {
            config,
            down_convs,
            res_blocks,
            gap_fc: linear(vs / "gap_fc", dim, 1, false),
            gmp_fc: linear(vs / "gmp_fc", dim, 1, false),
            conv1x1: Conv2d::new(vs / "conv1x1", 2 * dim, dim, 1, 1, true),
            fc: vec![linear(&fc / "0", config.mlp_in_features(), dim, false), linear(&fc / "2", dim, dim, false)],
            gamma: linear(vs / "gamma", dim, dim, false),
            beta: linear(vs / "beta", dim, dim, false),
            up_blocks: (1..=n_res).map(|i| ResnetAdaLINBlock::new(vs / format!("UpBlock1_{i}"), dim)).collect(),
            up_stages,
            out_conv: Conv2d::new(&up2 / (5 * N_DOWNSAMPLING + 1), ngf, 3, 7, 1, false),
        }
    }

    pub fn config(&self) -> Config {
        self.config
    }

    /// Translates `xs` (`[B, 3, H, W]` in [-1, 1]). The generator has no train/eval difference.
    pub fn forward(&self, xs: &Tensor) -> GeneratorOutput {
        let mut x = xs.shallow_clone();
        for (conv, pad) in &self.down_convs {
            x = instance_norm(&conv.forward(&reflect(&x, *pad))).relu_();
        }
        for block in &self.res_blocks {
            x = block.forward(&x);
        }

        let (gap, gmp) = global_pools(&x);
        let cam_logit = Tensor::cat(&[gap.apply(&self.gap_fc), gmp.apply(&self.gmp_fc)], 1);
        let x = cam_conv1x1(&x, &self.conv1x1, &self.gap_fc.ws, &self.gmp_fc.ws).relu_();
        let heatmap = full(&x).sum_dim_intlist(1, true, None);

        let batch = x.size()[0];
        // `reshape`: a channels-last map is not viewable as [B, C·H·W] in NCHW order.
        let mut h = if self.config.light {
            full(&x).adaptive_avg_pool2d([1, 1]).view([batch, -1])
        } else {
            x.reshape([batch, -1])
        };
        let mut mlp = None;
        for (i, layer) in self.fc.iter().enumerate() {
            let y = h.apply(layer);
            if i == 0 && !self.config.light && y.requires_grad() {
                mlp = Some((h.shallow_clone(), y.shallow_clone()));
            }
            h = y.relu();
        }
        let (gamma, beta) = (h.apply(&self.gamma), h.apply(&self.beta));

        let mut x = x;
        for block in &self.up_blocks {
            x = block.forward(&x, &gamma, &beta);
        }
        for stage in &self.up_stages {
            let size = x.size();
            let up = x.upsample_nearest2d([size[2] * 2, size[3] * 2], 2.0, 2.0);
            x = stage.norm.forward(&stage.conv.forward(&reflect(&up, 1))).relu_();
        }
        let image = full(&self.out_conv.forward(&reflect(&x, 3)).tanh());
        GeneratorOutput { image, cam_logit: full(&cam_logit), heatmap, mlp }
    }

    /// `FC.0`'s weight, the full generator's largest (`[C, C·H/4·W/4]`).
    pub fn mlp_weight(&self) -> &Tensor {
        &self.fc[0].ws
    }

    /// Clamps every AdaLIN and ILN `rho` to [0, 1] (the reference's `RhoClipper`), to be called
    /// after each generator optimiser step.
    pub fn clip_rho(&self) {
        let ada = self.up_blocks.iter().flat_map(|b| [&b.norm1.rho, &b.norm2.rho]);
        ada.chain(self.up_stages.iter().map(|s| &s.norm.rho)).for_each(clip_rho);
    }
}
