//! Reading and writing model files.

pub mod atomic;
pub mod image;
pub mod import;
pub mod pdparams;
pub mod pickle;
pub mod safetensors;
pub mod torch_archive;
