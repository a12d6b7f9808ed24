//! Checkpoint import from arbitrary bytes: format detection, zip, legacy torch, pdparams,
//! safetensors, and the TorchScript reader.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ugatit::io::checkpoint::read_bytes;
use ugatit::io::torch_archive::read_torchscript_tensors_from_bytes;

fuzz_target!(|data: &[u8]| {
    let _ = read_bytes(data.to_vec());
    let _ = read_torchscript_tensors_from_bytes(data.to_vec());
});
