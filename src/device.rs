//! Choosing where tensors live: `--device cpu` (default), `cuda` or `cuda:N`.

use anyhow::{bail, Result};
use std::sync::OnceLock;
use tch::Device;

/// Loads libtorch's CUDA half (`libtorch_cuda.so`) once, returning whether it loaded.
///
/// It is not linked into the binary: its start-up registrations alone cost every process about
/// 240 MiB of resident memory, which CPU runs should not pay. libtorch decides once, on the first
/// CUDA query, whether CUDA exists, so this must run before anything asks; [`parse`] and
/// [`cuda_available`] call it first.
pub fn load_cuda() -> bool {
    static LOADED: OnceLock<bool> = OnceLock::new();
    *LOADED.get_or_init(|| {
        // The bare name honours LD_LIBRARY_PATH and the binary's run path; the build's libtorch
        // is the fallback.
        let built = concat!(env!("UGATIT_LIBTORCH_LIB"), "/libtorch_cuda.so");
        ["libtorch_cuda.so", built].iter().any(|name| {
            let Ok(name) = std::ffi::CString::new(*name) else { return false };
            // SAFETY: dlopen with a valid C string; the handle is kept open for the process's life.
            !unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) }.is_null()
        })
    })
}

/// Whether libtorch sees a CUDA GPU (loading its CUDA library first).
pub fn cuda_available() -> bool {
    load_cuda() && tch::Cuda::is_available()
}

/// Parses a `--device` value, failing clearly when CUDA is asked for but libtorch sees no GPU.
pub fn parse(name: &str) -> Result<Device> {
    let device = match name {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        _ => match name.strip_prefix("cuda:").and_then(|i| i.parse::<usize>().ok()) {
            Some(i) => Device::Cuda(i),
            None => bail!("unknown device {name:?}: use cpu, cuda or cuda:N"),
        },
    };
    if let Device::Cuda(i) = device {
        let n = if load_cuda() { tch::Cuda::device_count() as usize } else { 0 };
        if n == 0 {
            bail!("--device {name}: libtorch finds no CUDA GPU (needs a CUDA build of torch/lib on LD_LIBRARY_PATH and a visible GPU)");
        }
        if i >= n {
            bail!("--device {name}: only {n} CUDA device(s) visible");
        }
    }
    Ok(device)
}
