//! The training data pipeline: finding and validating the dataset, the reference's
//! augmentations, a version-stable PRNG, and the deterministic unpaired batch loader.
//!
//! * [`dataset`]: `root/{trainA,trainB,testA,testB}`, every file fully decoded once before
//!   training so that a bad file fails the run at start-up instead of hours in.
//! * [`augment`]: UGATIT-pytorch's train transform (flip → resize to `S+30` → random crop `S`)
//!   and test transform (resize to `S`), both mapped to [−1, 1].
//! * [`rng`]: SplitMix64 + xoshiro256**, keyed by `(seed, stream path)`.
//! * [`loader`]: the batch of training step `s` is a pure function of the seed, `s` and the
//!   file lists, so a resumed run sees exactly the batches an uninterrupted one would.

pub mod augment;
pub mod dataset;
pub mod loader;
pub mod rng;

pub use dataset::{BadFile, Dataset, ScanReport};
pub use loader::{Domain, UnpairedLoader};
pub use rng::Rng;
