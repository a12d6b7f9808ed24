//! How one optimiser's gradients get from their backward passes to their update within a step.
//!
//! A step hands each network's gradients over as soon as they are complete ([`Updates::push`]):
//!
//! - a single process applies them at once, so that one network's gradients are alive at a time;
//! - distributed, their average over the ranks is started and applied when the next network's are
//!   handed over (or at [`Updates::finish`]), so the all-reduce runs during that network's
//!   backward;
//! - with a loss scaler (fp16), every network's gradients wait for the end: the update is taken
//!   for all of them or, when any gradient is not finite, for none (`GradScaler`'s skipped step).

use super::optim::Adam;
use super::scaler::LossScaler;
use crate::distributed::reduce::Reduction;
use crate::distributed::Distributed;
use anyhow::Result;
use std::rc::Rc;
use tch::{Kind, Tensor};

/// A group's gradients between their backward pass and their update: averaged over the ranks
/// in flight when distributed, else as computed.
enum Pending {
    Local(Vec<Tensor>),
    Reducing(Reduction),
}

impl Pending {
    fn finish(self, dist: &Option<Rc<Distributed>>) -> Result<Vec<Tensor>> {
        match (self, dist) {
            (Pending::Reducing(reduction), Some(dist)) => dist.finish(reduction),
            (Pending::Local(grads), _) => Ok(grads),
            (Pending::Reducing(_), None) => unreachable!("a reduction is started only when distributed"),
        }
    }
}

/// One optimiser's update of one step, after its [`Adam::begin_update`]: each group's gradients
/// by [`Updates::push`], then [`Updates::finish`].
pub struct Updates<'a> {
    opt: &'a mut Adam,
    dist: &'a Option<Rc<Distributed>>,
    scaler: Option<&'a mut LossScaler>,
    /// What the scaler's messages call this optimiser.
    what: &'static str,
    waiting: Vec<(&'static str, Pending)>,
}

impl<'a> Updates<'a> {
    pub fn begin(
        opt: &'a mut Adam,
        dist: &'a Option<Rc<Distributed>>,
        scaler: Option<&'a mut LossScaler>,
        what: &'static str,
    ) -> Self {
        Self { opt, dist, scaler, what, waiting: Vec::new() }
    }

    /// The parameters of `group`, for its backward pass.
    pub fn parameters(&self, group: &str) -> Vec<&Tensor> {
        self.opt.parameters(group)
    }

    /// `loss` multiplied by the loss scale (itself without a scaler): what to differentiate.
    pub fn scale(&self, loss: Tensor) -> Tensor {
        match &self.scaler {
            Some(s) => loss.to_kind(Kind::Float) * s.scale,
            None => loss,
        }
    }

    /// Hands over the complete gradients of `group` (from a loss passed through [`Updates::scale`]).
    pub fn push(&mut self, group: &'static str, grads: Vec<Tensor>) -> Result<()> {
        if self.dist.is_none() && self.scaler.is_none() {
            // Nothing ever waits in a single process without a scaler.
            self.opt.update(group, grads);
            return Ok(());
        }
        let pending = match self.dist {
            Some(dist) => Pending::Reducing(dist.start_reduction(group, grads)?),
            None => Pending::Local(grads),
        };
        if self.scaler.is_none() {
            // The previous group's reduction has had this group's backward to run in.
            self.apply_waiting()?;
        }
        self.waiting.push((group, pending));
        Ok(())
    }

    fn apply_waiting(&mut self) -> Result<()> {
        for (group, pending) in std::mem::take(&mut self.waiting) {
            let grads = pending.finish(self.dist)?;
            self.opt.update(group, grads);
        }
        Ok(())
    }

    /// Applies what still waits. With a scaler: unscales every group's gradients and applies them
    /// all if all are finite, else none (the optimiser's step count stays), and adjusts the scale.
    pub fn finish(mut self) -> Result<()> {
        let Some(scaler) = self.scaler.take() else { return self.apply_waiting() };
        let mut groups = Vec::with_capacity(self.waiting.len());
        let mut finite = true;
        for (group, pending) in std::mem::take(&mut self.waiting) {
            let mut grads = pending.finish(self.dist)?;
            finite &= scaler.unscale(&mut grads);
            groups.push((group, grads));
        }
        if finite {
            for (group, grads) in groups {
                self.opt.update(group, grads);
            }
        } else {
            self.opt.cancel_update();
        }
        scaler.update(finite);
        if !finite && self.dist.as_ref().is_none_or(|d| d.writes()) {
            eprintln!(
                "fp16: non-finite gradients in the {} update, skipped; loss scale now {}",
                self.what, scaler.scale
            );
        }
        Ok(())
    }
}
