//! Reading and writing model files.

pub mod atomic;
pub mod checkpoint;
pub mod image;
pub mod inputs;
pub mod pdparams;
pub mod pickle;
pub mod safetensors;
pub mod torch_archive;
pub mod zip;
