//! Training iterations replayed from a CUDA graph (`--cuda-graphs`, on by default on CUDA).
//!
//! A light step at 64 px queues thousands of small kernels, and a GPU finishes them faster than
//! the host can launch them. After [`WARMUP`] ordinary iterations (cuDNN picks its algorithms,
//! libtorch sets itself up), one iteration's work on the device, [`Trainer::compute`], is
//! captured into a graph, and every later iteration is one launch of it:
//!
//! - the batches and the gradient penalty's draws are copied into the tensors the capture read
//!   (the draws are made as before, from the step's seed, so a run draws the same numbers with
//!   graphs and without, and resumes alike);
//! - what the host sets per iteration, the optimisers' step counts, learning rates and bias
//!   corrections, reaches the graph through device tensors ([`Trainer::begin`]); the spectral
//!   norms' `u`, `v`, the `rho` clamp and every update are in place, so they replay;
//! - the loss terms are read from the tensor the capture returned.
//!
//! Graphs need the whole step on the device, so they are off where the host takes part in it:
//! a distributed step (its all-reduce waits on the host) and fp16 (the loss scaler decides on
//! the host whether to take each update). A capture that fails says why once, and training goes
//! on without graphs.

use super::step::{LossTerms, PenaltyNoise, StepLosses, Trainer};
use crate::precision::Precision;
use crate::shim::cuda::Graph;
use anyhow::Result;
use tch::Tensor;

/// Ordinary iterations before the capture.
pub const WARMUP: u32 = 3;

/// The captured iteration and the tensors it reads and writes.
struct Captured {
    graph: Graph,
    real_a: Tensor,
    real_b: Tensor,
    noise: PenaltyNoise,
    losses: StepLosses,
}

enum Mode {
    /// Every iteration runs as written.
    Eager,
    /// This many ordinary iterations, then the capture.
    Warming(u32),
    Replaying(Box<Captured>),
}

/// Runs a trainer's iterations, from a CUDA graph where it can.
pub struct Steps {
    mode: Mode,
}

/// Why `trainer`'s iterations cannot be captured, if they cannot.
fn refusal(trainer: &Trainer) -> Option<&'static str> {
    if trainer.dist.is_some() {
        Some("a distributed step's all-reduce waits on the host")
    } else if trainer.compute.precision == Precision::Fp16 {
        Some("with --precision fp16 the loss scaler decides on the host whether to take each update")
    } else {
        None
    }
}

impl Steps {
    /// Graphs where the trainer's [`crate::precision::Compute`] asks for them and its
    /// iterations can be captured (saying why not when they cannot).
    pub fn new(trainer: &Trainer) -> Self {
        if !trainer.compute.cuda_graphs {
            return Self { mode: Mode::Eager };
        }
        if let Some(why) = refusal(trainer) {
            if trainer.dist.as_ref().is_none_or(|d| d.writes()) {
                eprintln!("CUDA graphs are off: {why} (--cuda-graphs false silences this)");
            }
            return Self { mode: Mode::Eager };
        }
        Self { mode: Mode::Warming(WARMUP) }
    }

    /// Whether iterations now replay a graph.
    pub fn replaying(&self) -> bool {
        matches!(self.mode, Mode::Replaying(_))
    }

    /// One iteration at learning rate `lr`, as [`Trainer::step`] computes it; its loss terms.
    pub fn step(
        &mut self,
        trainer: &mut Trainer,
        real_a: &Tensor,
        real_b: &Tensor,
        noise: &PenaltyNoise,
        lr: f64,
    ) -> Result<LossTerms<f64>> {
        match &mut self.mode {
            Mode::Eager => trainer.step(real_a, real_b, noise, lr)?.values(),
            Mode::Warming(0) => {
                trainer.begin(lr);
                self.capture(trainer, [real_a, real_b], noise)
            }
            Mode::Warming(left) => {
                *left -= 1;
                trainer.step(real_a, real_b, noise, lr)?.values()
            }
            Mode::Replaying(captured) => {
                captured.real_a.copy_(real_a);
                captured.real_b.copy_(real_b);
                copy_noise(&captured.noise, noise);
                trainer.begin(lr);
                captured.graph.replay()?;
                captured.losses.values()
            }
        }
    }

    /// Captures this iteration, begun, and replays it (or, if the capture fails, runs it as
    /// written).
    fn capture(
        &mut self,
        trainer: &mut Trainer,
        [real_a, real_b]: [&Tensor; 2],
        noise: &PenaltyNoise,
    ) -> Result<LossTerms<f64>> {
        let (a, b) = (real_a.copy(), real_b.copy());
        let copied = |t: &Option<Tensor>| t.as_ref().map(Tensor::copy);
        let statics = PenaltyNoise {
            alpha_a: copied(&noise.alpha_a),
            alpha_b: copied(&noise.alpha_b),
            noise_a: copied(&noise.noise_a),
            noise_b: copied(&noise.noise_b),
        };
        match Graph::capture(|| trainer.compute(&a, &b, &statics)) {
            Ok((graph, losses)) => {
                graph.replay()?;
                let values = losses.values();
                self.mode = Mode::Replaying(Box::new(Captured { graph, real_a: a, real_b: b, noise: statics, losses }));
                values
            }
            Err(e) => {
                eprintln!(
                    "CUDA graphs are off: capturing the training step failed ({e:#}); training goes on without them"
                );
                self.mode = Mode::Eager;
                // Nothing ran during the capture: this iteration is still to do, as begun.
                trainer.compute(real_a, real_b, noise)?.values()
            }
        }
    }
}

/// Copies this iteration's draws into the captured ones.
fn copy_noise(to: &PenaltyNoise, from: &PenaltyNoise) {
    let pairs = [
        (&to.alpha_a, &from.alpha_a),
        (&to.alpha_b, &from.alpha_b),
        (&to.noise_a, &from.noise_a),
        (&to.noise_b, &from.noise_b),
    ];
    for (to, from) in pairs {
        if let (Some(to), Some(from)) = (to, from) {
            to.shallow_clone().copy_(from);
        }
    }
}
