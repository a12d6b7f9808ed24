//! # ugatit
//!
//! U-GAT-IT (Kim et al., "U-GAT-IT: Unsupervised Generative Attentional Networks with Adaptive
//! Layer-Instance Normalization for Image-to-Image Translation", arXiv 1907.10830, ICLR 2020) on
//! libtorch through `tch`, computing what the PyTorch reference (znxlwm/UGATIT-pytorch) and
//! PaddleGAN compute, with their checkpoint key names.

pub mod bench;
pub mod choice;
pub mod cli;
pub mod data;
pub mod device;
pub mod distributed;
pub mod io;
pub mod metrics;
pub mod model;
pub mod observe;
pub mod pictures;
pub mod precision;
pub mod serve;
pub mod shim;
pub mod summary;
pub mod train;
pub mod translate;
