//! The CUDA half of the shim (`csrc/cuda.cpp`), built by build.rs as `libugatit_cuda.so` where
//! the CUDA toolkit's headers are found. It is opened only after `libtorch_cuda.so`
//! ([`crate::device::load_cuda`]), so CPU processes map neither.

use anyhow::{bail, Result};
use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::OnceLock;

/// Where build.rs put the CUDA half (empty when it could not be built).
const BUILT: &str = env!("UGATIT_CUDA_SHIM");

/// The opened library, as an address (a `dlopen` handle is valid on every thread).
static LIBRARY: OnceLock<std::result::Result<usize, String>> = OnceLock::new();

/// Opens the CUDA half once: `libugatit_cuda.so` next to the executable, else the build's.
fn library() -> Result<*mut c_void> {
    let opened = LIBRARY.get_or_init(|| {
        if !crate::device::load_cuda() {
            return Err("libtorch_cuda.so could not be loaded".to_string());
        }
        let beside = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("libugatit_cuda.so")));
        let candidates = beside.into_iter().chain((!BUILT.is_empty()).then(|| BUILT.into()));
        for path in candidates {
            let Ok(name) = CString::new(path.to_string_lossy().as_bytes()) else { continue };
            // SAFETY: dlopen with a valid C string; the handle stays open for the process's life.
            let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            if !handle.is_null() {
                return Ok(handle as usize);
            }
        }
        Err("this build has no CUDA shim (libugatit_cuda.so): build.rs found no CUDA toolkit headers \
             (crt/host_config.h, nv/target); run UGATIT_NCCL=1 scripts/setup.sh or set CUDA_HOME, and rebuild"
            .to_string())
    });
    match opened {
        Ok(handle) => Ok(*handle as *mut c_void),
        Err(why) => bail!("{why}"),
    }
}

/// The function `name` of the CUDA half, as a raw address.
pub fn symbol(name: &CStr) -> Result<*mut c_void> {
    let library = library()?;
    // SAFETY: looks up a symbol of a library that stays open.
    let symbol = unsafe { libc::dlsym(library, name.as_ptr()) };
    if symbol.is_null() {
        bail!("libugatit_cuda.so lacks {}: rebuild it with this binary", name.to_string_lossy());
    }
    Ok(symbol)
}

/// Peak bytes of the CUDA caching allocator on one GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryPeaks {
    /// Held by tensors.
    pub allocated: i64,
    /// Taken from the driver by the allocator (allocated plus its cached blocks).
    pub reserved: i64,
}

type Peaks = unsafe extern "C" fn(i32, bool, *mut i64, *mut i64) -> *mut c_char;

/// The allocator's peaks on `cuda:device` since the last reset; `reset` starts new ones.
pub fn memory_peaks(device: usize, reset: bool) -> Result<MemoryPeaks> {
    let symbol = symbol(c"ugatit_cuda_memory_peaks")?;
    let count = tch::Cuda::device_count();
    if device as i64 >= count {
        bail!("no GPU cuda:{device} for the allocator's statistics (this machine has {count})");
    }
    // SAFETY: the symbol has csrc/cuda.cpp's signature.
    let peaks: Peaks = unsafe { std::mem::transmute::<*mut c_void, Peaks>(symbol) };
    let (mut allocated, mut reserved) = (0, 0);
    // SAFETY: plain values and out-pointers to locals.
    super::check(
        unsafe { peaks(device as i32, reset, &mut allocated, &mut reserved) },
        "the CUDA allocator's statistics",
    )?;
    Ok(MemoryPeaks { allocated, reserved })
}
