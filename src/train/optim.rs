//! Adam with coupled L2 weight decay, as `torch.optim.Adam(weight_decay=…)` computes it, and the
//! reference's linear learning-rate decay.
//!
//! Written out rather than taken from libtorch's C++ optimiser so that its state (`exp_avg`,
//! `exp_avg_sq`, step) can be checkpointed and a resumed run continues bit for bit.

use anyhow::{bail, Result};
use std::collections::BTreeMap;
use tch::Tensor;

/// Adam hyper-parameters (the paper's: betas 0.5/0.999, weight decay 1e-4).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// L2 penalty added to the gradient (`grad + wd·param`), on every parameter.
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self { beta1: 0.5, beta2: 0.999, eps: 1e-8, weight_decay: 1e-4 }
    }
}

struct Slot {
    name: String,
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// Adam over a fixed list of named parameters.
pub struct Adam {
    config: AdamConfig,
    slots: Vec<Slot>,
    /// Updates taken so far.
    pub step: i64,
    /// The update's two coefficients (see [`Adam::begin_update`]) and the weight decay, as
    /// scalar tensors on the parameters' device: an update reads them there, so that a CUDA graph
    /// that captured one update replays every later one (the host sets them before each replay).
    scale: Tensor,
    offset: Tensor,
    decay: Tensor,
}

impl Adam {
    pub fn new(params: Vec<(String, Tensor)>, config: AdamConfig) -> Self {
        let slots: Vec<Slot> = params
            .into_iter()
            .map(|(name, param)| Slot { exp_avg: param.zeros_like(), exp_avg_sq: param.zeros_like(), name, param })
            .collect();
        let device = slots.first().map_or(tch::Device::Cpu, |s| s.param.device());
        let scalar = |v: f64| Tensor::from(v as f32).to_device(device);
        Self { scale: scalar(0.0), offset: scalar(0.0), decay: scalar(config.weight_decay), config, slots, step: 0 }
    }

    /// Starts the next update at learning rate `lr`: advances the step count that bias
    /// correction uses and sets the update's coefficients. Each parameter then moves once, by
    /// [`Adam::minimize`] or [`Adam::update`] on its group.
    ///
    /// torch computes `p −= (lr/bias1) · m / (√v / bias2_sqrt + eps)`; folding the step size into
    /// the denominator, `p += m / (√v · scale + offset)`, makes the update four in-place passes
    /// over each tensor after the moments (torch's own capturable Adam folds it alike). At
    /// `lr = 0` (a decayed run's last step) `scale = 0, offset = ∞` leaves every parameter where it
    /// is while the moments move, as torch's update does.
    pub fn begin_update(&mut self, lr: f64) {
        self.step += 1;
        let AdamConfig { beta1, beta2, eps, .. } = self.config;
        let bias1 = 1.0 - beta1.powi(self.step as i32);
        let bias2_sqrt = (1.0 - beta2.powi(self.step as i32)).sqrt();
        let (scale, offset) =
            if lr == 0.0 { (0.0, f64::INFINITY) } else { (-bias1 / (lr * bias2_sqrt), -eps * bias1 / lr) };
        let _ = self.scale.fill_(scale);
        let _ = self.offset.fill_(offset);
    }

    /// Takes back [`Adam::begin_update`] when the update is skipped (fp16's non-finite gradients).
    pub fn cancel_update(&mut self) {
        self.step -= 1;
    }

    /// The parameters whose names start with `group`, in the order [`Adam::update`] takes their
    /// gradients.
    pub fn parameters(&self, group: &str) -> Vec<&Tensor> {
        self.slots.iter().filter(|s| s.name.starts_with(group)).map(|s| &s.param).collect()
    }

    /// Moves the parameters of `group` to lower `loss`.
    ///
    /// Gradients are computed for these parameters only, so the backward pass skips every other
    /// weight's gradient, and each is freed as soon as its parameter moves: unlike torch's `.grad`,
    /// no gradient outlives the update.
    pub fn minimize(&mut self, group: &str, loss: &Tensor) {
        let grads = crate::precision::gradients(&[loss], &self.parameters(group), false, false);
        self.update(group, grads);
    }

    /// Moves the parameters of `group` by their gradients `grads` (in [`Adam::parameters`] order;
    /// an undefined one leaves its parameter and moments alone, as torch skips a `None` gradient),
    /// at the learning rate [`Adam::begin_update`] was given.
    pub fn update(&mut self, group: &str, grads: Vec<Tensor>) {
        let AdamConfig { beta1, beta2, weight_decay, .. } = self.config;
        let Self { slots, scale, offset, decay, .. } = self;
        let slots = slots.iter_mut().filter(|s| s.name.starts_with(group));
        tch::no_grad(|| {
            for (slot, mut grad) in slots.zip(grads) {
                if !grad.defined() {
                    continue;
                }
                // oneDNN returns a channels-last step's weight gradients channels-last; against
                // NCHW parameters and moments the element-wise updates below ran ~4× slower.
                if !grad.is_contiguous() {
                    grad = grad.contiguous();
                }
                // In place, without temporaries: these gradients are ours, and once the moments
                // have them the gradient's memory holds the denominator.
                if weight_decay != 0.0 {
                    let _ = grad.addcmul_(&slot.param, decay);
                }
                let _ = slot.exp_avg.lerp_(&grad, 1.0 - beta1);
                let _ = slot.exp_avg_sq.lerp_(&grad.square_(), 1.0 - beta2);
                let denom = slot.exp_avg_sq.sqrt_out(&grad);
                let _ = grad.g_mul_(scale).g_add_(offset);
                let _ = slot.param.addcdiv_(&slot.exp_avg, &denom);
            }
        });
    }

    /// The state as named tensors (`<prefix><param>.exp_avg`, `….exp_avg_sq`) for a checkpoint.
    pub fn state(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.slots
            .iter()
            .flat_map(|s| {
                [
                    (format!("{prefix}{}.exp_avg", s.name), s.exp_avg.shallow_clone()),
                    (format!("{prefix}{}.exp_avg_sq", s.name), s.exp_avg_sq.shallow_clone()),
                ]
            })
            .collect()
    }

    /// Restores the state written by [`Adam::state`].
    pub fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>, prefix: &str, step: i64) -> Result<()> {
        for slot in &mut self.slots {
            for (suffix, dst) in [("exp_avg", &mut slot.exp_avg), ("exp_avg_sq", &mut slot.exp_avg_sq)] {
                let key = format!("{prefix}{}.{suffix}", slot.name);
                let Some(src) = tensors.get(&key) else { bail!("missing optimiser state {key}") };
                if src.size() != dst.size() {
                    bail!("optimiser state {key} has shape {:?}, expected {:?}", src.size(), dst.size());
                }
                tch::no_grad(|| dst.copy_(src));
            }
        }
        self.step = step;
        Ok(())
    }
}

/// The learning rate of step `step` (1-based) of `iterations`: constant, then with `decay` a linear
/// decline over the second half reaching 0 at the last step, as UGATIT-pytorch applies it.
pub fn learning_rate(base: f64, step: i64, iterations: i64, decay: bool) -> f64 {
    let half = iterations / 2;
    if !decay || step <= half || half == 0 {
        return base;
    }
    base - base / half as f64 * (step - half) as f64
}
