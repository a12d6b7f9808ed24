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

type GraphCall = unsafe extern "C" fn(*mut c_void) -> *mut c_char;

/// A CUDA graph (`at::cuda::CUDAGraph`): the kernels some work queued on the GPU, captured once
/// and launched again by [`Graph::replay`] without the host's per-kernel cost. A replay reads and
/// writes the very tensors the capture saw, so the work's inputs are copied into those tensors
/// first, and its outputs are read from the tensors the capture returned.
pub struct Graph {
    handle: *mut c_void,
    replay: GraphCall,
}

// SAFETY: a CUDAGraph is not tied to the thread that captured it; its replays are ordered by
// the stream they are launched on, and the owner (`&mut`, or a lock) serialises them.
unsafe impl Send for Graph {}

impl Graph {
    /// Captures the work `work` queues on the current GPU. Nothing runs while it captures: the
    /// work runs at the first [`Graph::replay`]. Any failure, a panic of `work` (tch's way of
    /// reporting a libtorch error) included, is the error, and the GPU is usable afterwards.
    pub fn capture<T>(work: impl FnOnce() -> Result<T>) -> Result<(Graph, T)> {
        let call = |name: &CStr| -> Result<GraphCall> {
            // SAFETY: csrc/cuda.cpp's graph functions take a graph handle and return an error.
            Ok(unsafe { std::mem::transmute::<*mut c_void, GraphCall>(symbol(name)?) })
        };
        let (begin, end, replay) =
            (call(c"ugatit_graph_capture_begin")?, call(c"ugatit_graph_capture_end")?, call(c"ugatit_graph_replay")?);
        let new = symbol(c"ugatit_graph_new")?;
        // SAFETY: the symbol has csrc/cuda.cpp's signature.
        let new: unsafe extern "C" fn(*mut *mut c_void) -> *mut c_char = unsafe { std::mem::transmute(new) };
        let mut handle = std::ptr::null_mut();
        // SAFETY: an out-pointer to a local.
        super::check(unsafe { new(&mut handle) }, "creating a CUDA graph")?;
        let graph = Graph { handle, replay };
        // SAFETY: a live graph handle.
        super::check(unsafe { begin(graph.handle) }, "starting a CUDA graph capture")?;
        let out = quietly(work);
        // SAFETY: ends the capture begun above, whatever `work` did.
        let ended = super::check(unsafe { end(graph.handle) }, "ending the CUDA graph capture");
        let out = out?;
        ended?;
        Ok((graph, out))
    }

    /// Runs the captured work again, on the current stream.
    pub fn replay(&self) -> Result<()> {
        // SAFETY: a live graph handle whose capture ended well.
        super::check(unsafe { (self.replay)(self.handle) }, "replaying a CUDA graph")
    }
}

impl Drop for Graph {
    fn drop(&mut self) {
        if let Ok(free) = symbol(c"ugatit_graph_free") {
            // SAFETY: the handle came from ugatit_graph_new and is freed exactly once.
            let free: unsafe extern "C" fn(*mut c_void) = unsafe { std::mem::transmute(free) };
            unsafe { free(self.handle) };
        }
    }
}

/// `work`'s result, with a panic turned into an error carrying its message (and not printed).
fn quietly<T>(work: impl FnOnce() -> Result<T>) -> Result<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
    std::panic::set_hook(hook);
    out.unwrap_or_else(|payload| {
        let text = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        bail!("{}", text.lines().next().unwrap_or(text))
    })
}
