//! Evaluation metrics as GAN_Metrics-Tensorflow computes them: KID, mean KID and FID on the
//! pool3 features of the TF Inception (2015-12-05) network.
//!
//! * [`kid`], [`fid`]: the distances, from feature matrices.
//! * [`inception`]: the network, in tch.
//! * [`weights`]: finding, verifying and converting its weights.
//! * [`features`]: image folders to feature matrices (preprocessing, batching, caching).

pub mod features;
pub mod fid;
pub mod inception;
pub mod kid;
pub mod weights;
