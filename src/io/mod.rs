//! Reading and writing model files.

pub mod atomic;
pub mod checkpoint;
pub mod file_bytes;
pub mod image;
pub mod inputs;
pub mod official_tf;
pub mod pdparams;
pub mod pickle;
pub mod safetensors;
pub mod tf_bundle;
pub mod torch_archive;
pub mod zip;
