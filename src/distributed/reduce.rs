//! Gradient averaging in flat buckets, as DDP does it: a group's gradients are packed into
//! buckets of at most [`BUCKET_BYTES`], each summed over the ranks by one all-reduce, then
//! divided by the world size and unpacked as contiguous views of the bucket.
//!
//! A [`Reduction`] is started as soon as its gradients exist and finished when its update is due,
//! so the collectives run on the backend's threads while this rank computes: the trainer starts
//! each discriminator's reduction and updates it after the next discriminator's backward, and
//! genA2B's during genB2A's last backward pass (`src/train/step.rs`).

use super::Distributed;
use anyhow::Result;
use tch::Tensor;

/// The largest bucket: DDP's default of 25 MiB.
pub const BUCKET_BYTES: i64 = 25 << 20;

/// One group's gradients on their way round the ranks.
#[must_use = "the gradients are usable only once the reduction has finished"]
pub struct Reduction {
    what: String,
    /// The gradients' shapes, in order; `None` for an undefined one.
    shapes: Vec<Option<Vec<i64>>>,
    buckets: Vec<(Tensor, crate::shim::c10d::Work)>,
}

/// Packs `grads` (undefined ones skipped) into buckets of at most [`BUCKET_BYTES`] (a single
/// larger gradient gets a bucket of its own).
fn pack(grads: &[Tensor]) -> Vec<Tensor> {
    let mut buckets = Vec::new();
    let mut current: Vec<Tensor> = Vec::new();
    let mut bytes = 0;
    for g in grads.iter().filter(|g| g.defined()) {
        let size = g.numel() as i64 * g.kind().elt_size_in_bytes() as i64;
        if !current.is_empty() && bytes + size > BUCKET_BYTES {
            buckets.push(Tensor::cat(&current, 0));
            current.clear();
            bytes = 0;
        }
        current.push(g.reshape([-1]));
        bytes += size;
    }
    if !current.is_empty() {
        buckets.push(Tensor::cat(&current, 0));
    }
    buckets
}

impl Distributed {
    /// Starts averaging `grads` over the ranks; `what` names them in errors.
    pub fn start_reduction(&self, what: &str, grads: Vec<Tensor>) -> Result<Reduction> {
        let shapes = grads.iter().map(|g| g.defined().then(|| g.size())).collect();
        let buckets = tch::no_grad(|| pack(&grads));
        drop(grads);
        let mut started = Vec::with_capacity(buckets.len());
        for bucket in buckets {
            let work = self
                .group()
                .all_reduce_sum(&bucket, self.timeout)
                .map_err(|e| self.failure(&format!("the all-reduce of {what}"), e))?;
            started.push((bucket, work));
        }
        Ok(Reduction { what: what.to_string(), shapes, buckets: started })
    }

    /// Waits for `reduction` and returns the averaged gradients, in the order given.
    pub fn finish(&self, reduction: Reduction) -> Result<Vec<Tensor>> {
        let Reduction { what, shapes, buckets } = reduction;
        let mut flat = Vec::with_capacity(buckets.len());
        for (bucket, work) in buckets {
            work.wait(self.timeout).map_err(|e| self.failure(&format!("the all-reduce of {what}"), e))?;
            flat.push(bucket);
        }
        let scale = 1.0 / self.size() as f64;
        Ok(tch::no_grad(|| {
            for b in &mut flat {
                let _ = b.g_mul_scalar_(scale);
            }
            // Gradients were packed in order, a new bucket starting exactly where one was full.
            let (mut bucket, mut offset) = (0, 0);
            let mut out = Vec::with_capacity(shapes.len());
            for shape in shapes {
                let Some(shape) = shape else {
                    out.push(Tensor::new());
                    continue;
                };
                if offset == flat[bucket].numel() as i64 {
                    (bucket, offset) = (bucket + 1, 0);
                }
                let numel: i64 = shape.iter().product();
                out.push(flat[bucket].narrow(0, offset, numel).view(shape.as_slice()));
                offset += numel;
            }
            out
        }))
    }
}
