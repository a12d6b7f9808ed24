//! The generator of the authors' official TensorFlow code (taki0112/UGATIT, `UGATIT.generator`),
//! the network of their released selfie2anime checkpoints (Kim et al., "U-GAT-IT", arXiv
//! 1907.10830). Same architecture as [`super::ResnetGenerator`], but each of these differs, and
//! each changes the output (`tools/oracle/TF_CHECKPOINT.md` §4 has the details, checked
//! against TensorFlow by `tests/tf_checkpoint.rs`):
//!
//! - every convolution and every dense layer has a bias;
//! - the encoder's instance norms are affine (`gamma`, `beta`), all norms use *biased*
//!   variances (`tf.nn.moments`), eps 1e-5 inside the square root;
//! - the stride-2 down-sampling convolutions reflect-pad top/left by 1 and bottom/right by 0;
//! - one CAM classifier (`CAM_logit`) serves both poolings, and its channel weight is
//!   `kernel + bias`;
//! - AdaLIN's mixing weight is `clip(rho − 0.1, 0, 1)` with the release's `smoothing`.
//!
//! Variables live at the official names with `/` as `.` (`conv.conv2d.kernel`,
//! `MLP.linear_0.dense.kernel`, …) in torch layouts: convolution kernels OIHW, dense kernels
//! `[out, in]`, and the full model's first dense kernel with its inputs in NCHW order (TF
//! flattens NHWC). [`crate::io::checkpoint`] converts a TF bundle into these.

use super::layers::{conv, instance_norm, reflect};
use super::norm::{layer_instance_norm, Variance};
use super::GeneratorOutput;
use crate::precision::full;
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

/// The official generator's shape: the reference generator's, plus the release's smoothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Width, blocks, size and light/full, as [`super::generator::Config`] (the official MLP is
    /// `ngf·n_res` wide, which fits its bottleneck only at `n_res` 4).
    pub shape: super::generator::Config,
    /// The release's `--smoothing`: AdaLIN mixes with `clip(rho − 0.1, 0, 1)`.
    pub smoothing: bool,
}

impl Default for Config {
    /// The released selfie2anime model: full, ch 64, 4 blocks, 256 px, smoothing.
    fn default() -> Self {
        Self { shape: super::generator::Config::default(), smoothing: true }
    }
}

/// A convolution with bias, variables `conv2d.kernel` (OIHW) and `conv2d.bias`.
#[derive(Debug)]
struct TfConv {
    kernel: Tensor,
    bias: Tensor,
    stride: i64,
}

impl TfConv {
    fn new(vs: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64) -> Self {
        let vs = vs / "conv2d";
        let kernel = vs.var("kernel", &[c_out, c_in, k, k], Init::Const(0.0));
        let bias = vs.var("bias", &[c_out], Init::Const(0.0));
        Self { kernel, bias, stride }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        conv(xs, &self.kernel, Some(&self.bias), self.stride)
    }
}

/// A dense layer with bias, variables `dense.kernel` (`[out, in]`) and `dense.bias`.
#[derive(Debug)]
struct Dense {
    kernel: Tensor,
    bias: Tensor,
}

impl Dense {
    fn new(vs: nn::Path, c_in: i64, c_out: i64) -> Self {
        let vs = vs / "dense";
        Self {
            kernel: vs.var("kernel", &[c_out, c_in], Init::Const(0.0)),
            bias: vs.var("bias", &[c_out], Init::Const(0.0)),
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.linear(&self.kernel, Some(&self.bias))
    }
}

/// `ops.instance_norm`: affine instance normalisation, `gamma` and `beta` of shape `[C]`.
#[derive(Debug)]
struct InstanceNorm {
    gamma: Tensor,
    beta: Tensor,
}

impl InstanceNorm {
    fn new(vs: nn::Path, c: i64) -> Self {
        Self { gamma: vs.var("gamma", &[c], Init::Const(1.0)), beta: vs.var("beta", &[c], Init::Const(0.0)) }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        // Same eps (1e-5) as the PyTorch reference's affine-free instance norm.
        per_channel(&self.beta).addcmul(&instance_norm(xs), &per_channel(&self.gamma))
    }
}

/// `[C]` → `[1, C, 1, 1]`.
fn per_channel(t: &Tensor) -> Tensor {
    t.view([1, -1, 1, 1])
}

/// One half of a residual block: reflect-pad 1, 3×3 convolution (`conv_0`), then a norm.
#[derive(Debug)]
struct ResHalf<N> {
    conv: TfConv,
    norm: N,
}

/// The two halves of a residual block (`res1`, `res2`), each with the norm `norm` makes.
#[derive(Debug)]
struct Halves<N> {
    res1: ResHalf<N>,
    res2: ResHalf<N>,
}

impl<N> Halves<N> {
    fn new(vs: nn::Path, dim: i64, norm: impl Fn(&nn::Path) -> N) -> Self {
        let half = |name: &str| {
            let vs = &vs / name;
            ResHalf { conv: TfConv::new(&vs / "conv_0", dim, dim, 3, 1), norm: norm(&vs) }
        };
        Self { res1: half("res1"), res2: half("res2") }
    }
}

/// `ops.resblock`: `x + IN(conv(relu(IN(conv(x)))))`.
type ResBlock = Halves<InstanceNorm>;

impl ResBlock {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let half = |h: &ResHalf<InstanceNorm>, x: &Tensor| h.norm.forward(&h.conv.forward(&reflect(x, 1)));
        let h = half(&self.res1, xs).relu();
        xs + half(&self.res2, &h)
    }
}

/// `ops.adaptive_ins_layer_resblock`: AdaLIN (its `rho`) in both halves, the residual kept.
type AdaBlock = Halves<Tensor>;

impl AdaBlock {
    fn forward(&self, xs: &Tensor, gamma: &Tensor, beta: &Tensor, smoothing: bool) -> Tensor {
        let half = |h: &ResHalf<Tensor>, x: &Tensor| {
            let rho = per_channel(&h.norm);
            let rho = if smoothing { (rho - 0.1).clamp(0.0, 1.0) } else { rho };
            layer_instance_norm(&h.conv.forward(&reflect(x, 1)), &rho, gamma, beta, Variance::Biased)
        };
        let h = half(&self.res1, xs).relu();
        xs + half(&self.res2, &h)
    }
}

/// `ops.layer_instance_norm` (no smoothing), `rho`, `gamma`, `beta` of shape `[C]`.
#[derive(Debug)]
struct Iln {
    rho: Tensor,
    gamma: Tensor,
    beta: Tensor,
}

impl Iln {
    fn new(vs: nn::Path, c: i64) -> Self {
        Self {
            rho: vs.var("rho", &[c], Init::Const(0.0)),
            gamma: vs.var("gamma", &[c], Init::Const(1.0)),
            beta: vs.var("beta", &[c], Init::Const(0.0)),
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let (rho, gamma, beta) = (per_channel(&self.rho), per_channel(&self.gamma), per_channel(&self.beta));
        layer_instance_norm(xs, &rho, &gamma, &beta, Variance::Biased)
    }
}

/// The official generator.
#[derive(Debug)]
pub struct TfGenerator {
    config: Config,
    conv: TfConv,
    ins_norm: InstanceNorm,
    down: Vec<(TfConv, InstanceNorm)>,
    resblocks: Vec<ResBlock>,
    cam_kernel: Tensor,
    cam_bias: Tensor,
    conv_1x1: TfConv,
    mlp: [Dense; 2],
    gamma: Dense,
    beta: Dense,
    ada_blocks: Vec<AdaBlock>,
    up: Vec<(TfConv, Iln)>,
    g_logit: TfConv,
}

impl TfGenerator {
    /// The generator under `vs` (`vs / "genA2B"` for the official `generator_B`). Variables
    /// start at zero (ones for the norms' `gamma`): they are meant to be loaded.
    pub fn new(vs: &nn::Path, config: Config) -> Self {
        let shape = config.shape;
        let (ch, dim) = (shape.ngf, shape.bottleneck_channels());
        let down = (0..2)
            .map(|i| {
                let c = ch << i;
                (
                    TfConv::new(vs / format!("conv_{i}"), c, 2 * c, 3, 2),
                    InstanceNorm::new(vs / format!("ins_norm_{i}"), 2 * c),
                )
            })
            .collect();
        let mlp_in = shape.mlp_in_features();
        let mlp = vs / "MLP";
        let up = (0..2)
            .map(|i| {
                let c = dim >> i;
                (
                    TfConv::new(vs / format!("up_conv_{i}"), c, c / 2, 3, 1),
                    Iln::new(vs / format!("layer_ins_norm_{i}"), c / 2),
                )
            })
            .collect();
        let cam = vs / "CAM_logit";
        Self {
            config,
            conv: TfConv::new(vs / "conv", 3, ch, 7, 1),
            ins_norm: InstanceNorm::new(vs / "ins_norm", ch),
            down,
            resblocks: (0..shape.n_res)
                .map(|i| {
                    Halves::new(vs / format!("resblock_{i}"), dim, |vs| InstanceNorm::new(vs / "instance_norm", dim))
                })
                .collect(),
            cam_kernel: cam.var("kernel", &[1, dim], Init::Const(0.0)),
            cam_bias: cam.var("bias", &[1], Init::Const(0.0)),
            conv_1x1: TfConv::new(vs / "conv_1x1", 2 * dim, dim, 1, 1),
            mlp: [Dense::new(&mlp / "linear_0", mlp_in, dim), Dense::new(&mlp / "linear_1", dim, dim)],
            gamma: Dense::new(&mlp / "gamma", dim, dim),
            beta: Dense::new(&mlp / "beta", dim, dim),
            ada_blocks: (0..shape.n_res)
                .map(|i| {
                    let rho = |vs: &nn::Path| (vs / "instance_layer_norm").var("rho", &[dim], Init::Const(1.0));
                    Halves::new(vs / format!("adaptive_resblock{i}"), dim, rho)
                })
                .collect(),
            up,
            g_logit: TfConv::new(vs / "G_logit", ch, 3, 7, 1),
        }
    }

    pub fn config(&self) -> Config {
        self.config
    }

    /// Translates `xs` (`[B, 3, S, S]` in [−1, 1]).
    pub fn forward(&self, xs: &Tensor) -> GeneratorOutput {
        let mut x = self.ins_norm.forward(&self.conv.forward(&reflect(xs, 3))).relu();
        for (conv, norm) in &self.down {
            // `ops.conv` pads (k − s) = 1 pixel for a 3×3 stride-2 kernel: all of it top and left.
            x = norm.forward(&conv.forward(&x.reflection_pad2d([1, 0, 1, 0]))).relu();
        }
        for block in &self.resblocks {
            x = block.forward(&x);
        }

        let b = x.size()[0];
        let x = full(&x);
        let gap = x.mean_dim(&[2i64, 3][..], false, Kind::Float);
        let gmp = x.amax(&[2i64, 3][..], false);
        let cam = |pooled: &Tensor| pooled.linear(&self.cam_kernel, Some(&self.cam_bias));
        let cam_logit = Tensor::cat(&[cam(&gap), cam(&gmp)], 1);
        // Both branches are scaled by the same weight, `kernel + bias`.
        let weighted = &x * (&self.cam_kernel + &self.cam_bias).view([1, -1, 1, 1]);
        let x = self.conv_1x1.forward(&Tensor::cat(&[&weighted, &weighted], 1)).relu();
        let heatmap = full(&x).sum_dim_intlist(1, true, None);

        // `reshape`: a channels-last map is not viewable as [B, C·H·W] in NCHW order.
        let h = if self.config.shape.light {
            full(&x).mean_dim(&[2i64, 3][..], false, Kind::Float)
        } else {
            x.reshape([b, -1])
        };
        let h = self.mlp[1].forward(&self.mlp[0].forward(&h).relu()).relu();
        let (gamma, beta) = (self.gamma.forward(&h).view([b, -1, 1, 1]), self.beta.forward(&h).view([b, -1, 1, 1]));

        let mut x = x;
        for block in &self.ada_blocks {
            x = block.forward(&x, &gamma, &beta, self.config.smoothing);
        }
        for (conv, norm) in &self.up {
            x = norm
                .forward(
                    &conv.forward(&reflect(&x.upsample_nearest2d([2 * x.size()[2], 2 * x.size()[3]], None, None), 1)),
                )
                .relu();
        }
        let image = full(&self.g_logit.forward(&reflect(&x, 3)).tanh());
        GeneratorOutput { image, cam_logit: full(&cam_logit), heatmap, mlp: None }
    }
}
