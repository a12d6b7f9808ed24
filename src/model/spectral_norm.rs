//! Spectral normalisation (Miyato et al., ICLR 2018) with `torch.nn.utils.spectral_norm`'s exact
//! semantics, which the U-GAT-IT discriminators use on every layer but `conv1x1`.
//!
//! The raw parameter is `weight_orig`; `weight_u` and `weight_v` are non-trainable state saved with
//! the model. A train-mode forward runs one power iteration and stores the new `u`, `v`; an
//! eval-mode forward reuses them. The normalised weight is `weight_orig / σ` with
//! `σ = uᵀ W v`, gradients flowing through `W` only.
//!
//! The layers are linear in their weight, so `f(x, W/σ) = f(x, W)/σ`: each divides whichever is
//! smaller, the weight or the output. The discriminators' deep layers hold millions of weights
//! but produce a few pixels, and every forward would otherwise keep its own normalised copy of
//! the weight for the backward pass (eight forwards per discriminator step).
//! Where they produce no more positions than channels, `W v` is one more column of the layer's
//! own matrix product ([`conv_patches`]), so σ and its gradient cost no pass over the weight of
//! their own.

use super::layers::{conv, conv_patches, output_positions, torch_default_init, weight_bound, Conv2d};
use crate::shim::without_autocast;
use tch::nn;
use tch::Tensor;

/// `torch.nn.functional.normalize`'s eps, also spectral_norm's default.
const EPS: f64 = 1e-12;

fn normalize(v: &Tensor) -> Tensor {
    v / v.norm().clamp_min(EPS)
}

/// A weight under spectral normalisation.
#[derive(Debug)]
pub struct SpectralNorm {
    pub weight_orig: Tensor,
    pub weight_u: Tensor,
    pub weight_v: Tensor,
}

impl SpectralNorm {
    /// Wraps `weight_orig` (created under `vs`) and draws `u`, `v` as `normalize(N(0, 1))`
    /// like PyTorch.
    fn new(vs: &nn::Path, weight_orig: Tensor) -> Self {
        let shape = weight_orig.size();
        let (h, w) = (shape[0], shape[1..].iter().product::<i64>());
        let fresh = |name: &str, n: i64| {
            let t = vs.zeros_no_train(name, &[n]);
            tch::no_grad(|| t.shallow_clone().copy_(&normalize(&t.randn_like())));
            t
        };
        Self { weight_u: fresh("weight_u", h), weight_v: fresh("weight_v", w), weight_orig }
    }

    /// The largest singular value estimate `σ`, after one power iteration when `train`; in
    /// float32 whatever the precision of the layer it normalises.
    pub fn sigma(&self, train: bool) -> Tensor {
        let out = self.weight_orig.size()[0];
        let (u, v) = self.singular_vectors(train);
        without_autocast(self.weight_orig.device(), || u.dot(&self.weight_orig.view([out, -1]).mv(&v)))
    }

    /// The constants `u`, `v` of `σ = uᵀ W v`: after one power iteration (stored) when `train`,
    /// the stored ones otherwise.
    fn singular_vectors(&self, train: bool) -> (Tensor, Tensor) {
        if !train {
            return (self.weight_u.detach(), self.weight_v.detach());
        }
        let out = self.weight_orig.size()[0];
        without_autocast(self.weight_orig.device(), || {
            tch::no_grad(|| {
                let w = self.weight_orig.detach().view([out, -1]);
                let v = normalize(&w.tr().mv(&self.weight_u));
                let u = normalize(&w.mv(&v));
                self.weight_u.shallow_clone().copy_(&u);
                self.weight_v.shallow_clone().copy_(&v);
                (u, v)
            })
        })
    }
}

/// A spectrally normalised convolution (square kernel, no padding: the reference pads by reflection).
#[derive(Debug)]
pub struct SnConv2d {
    pub sn: SpectralNorm,
    pub bias: Option<Tensor>,
    pub stride: i64,
}

impl SnConv2d {
    pub fn new(vs: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, bias: bool) -> Self {
        let Conv2d { weight, bias, stride } = Conv2d::named(&vs, "weight_orig", c_in, c_out, k, stride, bias);
        Self { sn: SpectralNorm::new(&vs, weight), bias, stride }
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let w = &self.sn.weight_orig;
        if weight_bound(xs, w, self.stride) {
            // Weight-bound: `v` rides along in the layer's own product, so that `W v` (and with it
            // σ's gradient `u vᵀ`) costs no second pass over the weight.
            let (u, v) = self.sn.singular_vectors(train);
            let (ys, wv) = conv_patches(xs, w, self.stride, Some(&v.unsqueeze(1)));
            let sigma = without_autocast(xs.device(), || u.dot(&wv.view([-1])));
            return self.divided(ys, &sigma);
        }
        let sigma = self.sn.sigma(train);
        if output_positions(xs, w, self.stride) * w.size()[0] >= w.numel() as i64 {
            return conv(xs, &(w / sigma), self.bias.as_ref(), self.stride);
        }
        self.divided(conv(xs, w, None, self.stride), &sigma)
    }

    /// `ys / σ + bias`.
    fn divided(&self, ys: Tensor, sigma: &Tensor) -> Tensor {
        match &self.bias {
            Some(bias) => bias.view([1, -1, 1, 1]).addcdiv(&ys, sigma),
            None => ys / sigma,
        }
    }
}

/// A spectrally normalised linear layer without bias, weight `[out, in]`.
#[derive(Debug)]
pub struct SnLinear {
    pub sn: SpectralNorm,
}

impl SnLinear {
    pub fn new(vs: nn::Path, c_in: i64, c_out: i64) -> Self {
        let weight = vs.var("weight_orig", &[c_out, c_in], torch_default_init(c_in));
        Self { sn: SpectralNorm::new(&vs, weight) }
    }

    /// The output is divided (U-GAT-IT's linear layers have one output and thousands of inputs).
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let sigma = self.sn.sigma(train);
        xs.linear::<Tensor>(&self.sn.weight_orig, None) / sigma
    }
}
