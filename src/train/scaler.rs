//! Dynamic loss scaling for `--precision fp16`, as `torch.cuda.amp.GradScaler` does it with its
//! defaults: each loss is multiplied by the scale before its backward so that small gradients
//! survive float16's range; the gradients are divided by it before the update; an update whose
//! gradients hold an infinity or NaN is skipped and halves the scale, and 2,000 finite updates in
//! a row double it.
//!
//! The discriminators and the generators each have their own scaler, as a GAN's two losses
//! overflow at different scales; both scales and their counts go into the checkpoint, so a
//! resumed fp16 run continues as it would have.

use anyhow::{bail, Result};
use std::collections::BTreeMap;
use tch::Tensor;

/// GradScaler's `init_scale`.
pub const INIT_SCALE: f64 = 65536.0;
/// GradScaler's `growth_factor` and `backoff_factor`.
pub const GROWTH: f64 = 2.0;
pub const BACKOFF: f64 = 0.5;
/// GradScaler's `growth_interval`: finite updates before the scale grows.
pub const GROWTH_INTERVAL: i64 = 2000;

/// One optimiser's loss scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossScaler {
    pub scale: f64,
    /// Finite updates since the scale last changed.
    pub good_steps: i64,
}

impl Default for LossScaler {
    fn default() -> Self {
        Self { scale: INIT_SCALE, good_steps: 0 }
    }
}

impl LossScaler {
    /// Divides `grads` by the scale in place; whether every (defined) one is finite.
    pub fn unscale(&self, grads: &mut [Tensor]) -> bool {
        let inverse = 1.0 / self.scale;
        tch::no_grad(|| {
            let mut finite: Option<Tensor> = None;
            for g in grads.iter_mut().filter(|g| g.defined()) {
                let _ = g.g_mul_scalar_(inverse);
                // Flags combined on the device and read once: a single synchronisation.
                let this = g.isfinite().all();
                finite = Some(match finite {
                    Some(all) => all.logical_and(&this),
                    None => this,
                });
            }
            finite.is_none_or(|all| all.int64_value(&[]) != 0)
        })
    }

    /// Records an update (taken when `finite`, skipped otherwise) and adjusts the scale.
    pub fn update(&mut self, finite: bool) {
        if finite {
            self.good_steps += 1;
            if self.good_steps == GROWTH_INTERVAL {
                self.scale *= GROWTH;
                self.good_steps = 0;
            }
        } else {
            self.scale *= BACKOFF;
            self.good_steps = 0;
        }
    }

    /// The checkpoint's metadata entries of the scaler called `name` (`optimD`, `optimG`).
    pub fn metadata(&self, name: &str) -> [(String, String); 2] {
        [
            (format!("{name}_loss_scale"), format!("{:e}", self.scale)),
            (format!("{name}_loss_scale_good_steps"), self.good_steps.to_string()),
        ]
    }

    /// The scaler `name` of a checkpoint's metadata; the initial one when the checkpoint was not
    /// trained in fp16.
    pub fn from_metadata(meta: &BTreeMap<String, String>, name: &str) -> Result<Self> {
        let (scale_key, good_key) = (format!("{name}_loss_scale"), format!("{name}_loss_scale_good_steps"));
        let (Some(scale), Some(good)) = (meta.get(&scale_key), meta.get(&good_key)) else {
            return Ok(Self::default());
        };
        let (Ok(scale), Ok(good_steps)) = (scale.parse::<f64>(), good.parse::<i64>()) else {
            bail!("checkpoint metadata {scale_key:?}/{good_key:?} are not numbers: {scale:?}, {good:?}");
        };
        if !(scale.is_finite() && scale > 0.0) || good_steps < 0 {
            bail!("checkpoint metadata {scale_key:?} = {scale}, {good_key:?} = {good_steps} are out of range");
        }
        Ok(Self { scale, good_steps })
    }
}
