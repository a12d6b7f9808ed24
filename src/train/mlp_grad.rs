//! The full generator's `FC.0` weight gradient, kept as its factors until the update.
//!
//! `FC.0` maps the flattened feature map (at 256 px, 64 channels: 1,048,576 values) to 256
//! without a bias, so its weight is 1 GiB and so is its gradient, which autograd materialises
//! inside the backward pass, while the encoder's activations are still alive (and, for genB2A,
//! through genA2B's whole pass in between). Over the forwards that used it the gradient is
//! `Σᵢ dyᵢᵀ xᵢ`, with `xᵢ` the layer's input and `dyᵢ` the gradient of its output: differentiating
//! for the outputs instead of the weight keeps `xᵢ` and `dyᵢ` (4 MiB per image) and forms the
//! product once the passes are done, which lowers the step's peak by about 1 GiB per generator.
//! The sum's order differs from autograd's, within float rounding (`tests/parity_train.rs`).

use crate::model::GeneratorOutput;
use tch::{Kind, Tensor};

/// One generator's `FC.0` weight gradient as the factors of each use so far.
pub struct MlpGrad {
    /// Where `FC.0`'s weight is among the generator's parameters.
    index: usize,
    kind: Kind,
    /// Each use's input `x` (detached) and output gradient `dy`.
    factors: Vec<(Tensor, Tensor)>,
}

impl MlpGrad {
    /// For `weight` among `params`; `None` when it is not there or the generator is light (whose
    /// outputs carry no `mlp`): its gradient is then computed as any other.
    pub fn new(params: &[&Tensor], weight: &Tensor, full: bool) -> Option<Self> {
        let index = params.iter().position(|p| p.data_ptr() == weight.data_ptr())?;
        full.then(|| Self { index, kind: weight.kind(), factors: Vec::new() })
    }

    /// Puts the weight's gradient, `Σ dyᵀ x` over the uses, into `grads` (in the parameters'
    /// order).
    pub fn complete(self, grads: &mut [Tensor]) {
        if self.factors.is_empty() {
            return;
        }
        let (xs, dys): (Vec<Tensor>, Vec<Tensor>) = self.factors.into_iter().unzip();
        let (x, dy) = (Tensor::cat(&xs, 0), Tensor::cat(&dys, 0));
        grads[self.index] = dy.tr().matmul(&x.to_kind(dy.kind())).to_kind(self.kind);
    }
}

/// `loss`'s gradients for `params` and for `extra`. Where `mlp` keeps `FC.0`'s weight gradient
/// as factors, that weight's slot holds an undefined tensor and the factors of its uses in
/// `uses` (the outputs whose graphs `loss` reaches) are recorded instead.
pub fn backward(
    loss: Tensor,
    params: &[&Tensor],
    extra: &[&Tensor],
    mlp: &mut Option<MlpGrad>,
    uses: &[&GeneratorOutput],
) -> (Vec<Tensor>, Vec<Tensor>) {
    let mut inputs: Vec<&Tensor> = params.to_vec();
    if let Some(mlp) = mlp {
        inputs.remove(mlp.index);
    }
    let own = inputs.len();
    inputs.extend(extra);
    let factored: Vec<&(Tensor, Tensor)> = match mlp {
        Some(_) => uses.iter().map(|u| u.mlp.as_ref().expect("a full generator's output")).collect(),
        None => Vec::new(),
    };
    inputs.extend(factored.iter().map(|(_, y)| y));
    let mut grads = crate::precision::gradients(&[loss], &inputs, false, false);
    let output_grads = grads.split_off(own + extra.len());
    let extra_grads = grads.split_off(own);
    if let Some(mlp) = mlp {
        for ((x, _), dy) in factored.into_iter().zip(output_grads) {
            if dy.defined() {
                mlp.factors.push((x.detach(), dy));
            }
        }
        grads.insert(mlp.index, Tensor::new());
    }
    (grads, extra_grads)
}
