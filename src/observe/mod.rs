//! Watching a run: TensorBoard event files ([`tensorboard`]) with every loss term, the learning
//! rate and the sample grids.

pub mod tensorboard;
