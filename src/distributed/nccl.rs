//! NCCL process groups, from the CUDA half of the shim (`csrc/cuda.cpp`, built by build.rs as
//! `libugatit_cuda.so` where the CUDA toolkit's headers are found). It is opened only after
//! `libtorch_cuda.so` (`crate::device::load_cuda`), so CPU processes map neither.

use super::World;
use crate::shim::c10d::{Group, Store};
use anyhow::{bail, Result};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::time::Duration;

/// Where build.rs put the CUDA half (empty when it could not be built).
const BUILT: &str = env!("UGATIT_CUDA_SHIM");

type NcclNew = unsafe extern "C" fn(*mut c_void, c_int, c_int, c_int, i64, *mut *mut c_void) -> *mut c_char;

/// Opens the CUDA half: `libugatit_cuda.so` next to the executable, else the build's.
fn open() -> Result<*mut c_void> {
    if !crate::device::load_cuda() {
        bail!("--dist-backend nccl: libtorch_cuda.so could not be loaded");
    }
    let beside = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("libugatit_cuda.so")));
    let candidates = beside.into_iter().chain((!BUILT.is_empty()).then(|| BUILT.into()));
    for path in candidates {
        let Ok(name) = CString::new(path.to_string_lossy().as_bytes()) else { continue };
        // SAFETY: dlopen with a valid C string; the handle stays open for the process's life.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if !handle.is_null() {
            return Ok(handle);
        }
    }
    bail!(
        "--dist-backend nccl: this build has no CUDA shim (libugatit_cuda.so): build.rs found no CUDA toolkit headers (crt/host_config.h); set CUDA_HOME to a CUDA 13 toolkit and rebuild, or use --dist-backend gloo"
    )
}

/// An NCCL group of the world's ranks, this rank on `cuda:LOCAL_RANK`.
pub fn group(store: &Store, world: &World, timeout: Duration) -> Result<Group> {
    let library = open()?;
    // SAFETY: looks up a symbol of the library just opened; its type is csrc/cuda.cpp's.
    let symbol = unsafe { libc::dlsym(library, c"ugatit_nccl_new".as_ptr()) };
    if symbol.is_null() {
        bail!("libugatit_cuda.so lacks ugatit_nccl_new: rebuild it with this binary");
    }
    let create: NcclNew = unsafe { std::mem::transmute::<*mut c_void, NcclNew>(symbol) };
    let mut handle = std::ptr::null_mut();
    let millis = timeout.as_millis().min(i64::MAX as u128) as i64;
    // SAFETY: a live store handle, plain values, an out-pointer to a local.
    let message = unsafe {
        create(
            Group::store_handle(store),
            world.rank as c_int,
            world.size as c_int,
            world.local_rank as c_int,
            millis,
            &mut handle,
        )
    };
    if !message.is_null() {
        // SAFETY: a strdup'ed message from the CUDA half, released with free.
        let text = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
        unsafe { libc::free(message.cast()) };
        bail!("starting NCCL on cuda:{}: {text}", world.local_rank);
    }
    // SAFETY: a fresh handle from ugatit_nccl_new, owned by the group from now on.
    Ok(unsafe { Group::nccl_from_handle(handle) })
}
