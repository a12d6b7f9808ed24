//! Choosing where tensors live — `--device cpu` (default), `cuda` or `cuda:N` — and how CUDA
//! computes: [`CudaSettings`], the one process-wide place for the TF32 and cuDNN switches, set
//! once by whoever starts the work (the CLI's subcommands, or a library user) before any CUDA work.

use anyhow::{bail, Result};
use std::sync::atomic::{AtomicBool, Ordering};
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

/// How CUDA convolutions run. Both switches are off by default so that results match the
/// references' float32 numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CudaSettings {
    /// TF32 tensor-core maths (faster, ~1e-3 relative error; PyTorch's own default for cuDNN
    /// convolutions).
    pub tf32: bool,
    /// cuDNN's algorithm search (faster for fixed shapes; not bitwise reproducible).
    pub cudnn_benchmark: bool,
}

static ALLOW_TF32: AtomicBool = AtomicBool::new(false);
static CUDNN_BENCHMARK: AtomicBool = AtomicBool::new(false);

/// Sets the process's [`CudaSettings`]. Call it before any CUDA work: libtorch's convolution
/// *backward* follows only its global TF32 switch, which tch does not expose, so TF32 is also
/// vetoed through NVIDIA's `NVIDIA_TF32_OVERRIDE=0`, read when cuDNN and cuBLAS start (unless the
/// user set that variable).
pub fn set_cuda_settings(settings: CudaSettings) {
    if !settings.tf32 && std::env::var_os("NVIDIA_TF32_OVERRIDE").is_none() {
        std::env::set_var("NVIDIA_TF32_OVERRIDE", "0");
    }
    ALLOW_TF32.store(settings.tf32, Ordering::Relaxed);
    CUDNN_BENCHMARK.store(settings.cudnn_benchmark, Ordering::Relaxed);
}

/// The settings last given to [`set_cuda_settings`].
pub fn cuda_settings() -> CudaSettings {
    CudaSettings { tf32: ALLOW_TF32.load(Ordering::Relaxed), cudnn_benchmark: CUDNN_BENCHMARK.load(Ordering::Relaxed) }
}

/// Sets the CUDA settings, then parses `--device` ([`parse`]): how every subcommand that computes
/// starts.
pub fn start(name: &str, cuda: CudaSettings) -> Result<Device> {
    set_cuda_settings(cuda);
    parse(name)
}

/// Keeps freed memory in the process for reuse instead of handing it back to the kernel.
///
/// glibc serves every block over its mmap threshold (128 KiB, rising to at most 32 MiB as it
/// adapts) with a fresh mapping and unmaps it on free, and trims the heap's top; a training step
/// allocates and frees thousands of activation-sized blocks, so the kernel zeroed and mapped
/// pages for it over and over: 44% of a 128 px step's time was page faults. Keeping blocks up to
/// 32 MiB in the heap and no automatic trimming made the step 1.5× faster, at a peak resident
/// memory ~11% higher; 32 MiB is as high as glibc lets the threshold go, and a 256 px step still
/// mapped its larger blocks afresh each time (the 128-channel 258² decoder input, the global
/// discriminators' deep weights and their gradients): twice the page faults, and the
/// convolutions reading those blocks up to 2× slower (`--profile`). So no block is mapped
/// (`M_MMAP_MAX` 0): all come from the heap, which is never trimmed (BENCHMARKS.md).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation policy; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// The memory the kernel says is available to a new allocation (Linux `MemAvailable`), in bytes.
pub fn available_host_memory() -> Option<f64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}
