//! Link settings for libtorch, and the project's C++ shim.
//!
//! - An rpath to the libtorch that torch-sys built against, so `ugatit` runs without
//!   `LD_LIBRARY_PATH` (which, when set, still takes precedence: binaries built here run on a GPU
//!   machine with that machine's torch/lib).
//! - `UGATIT_LIBTORCH_LIB`, that folder, where `device::load_cuda` looks for `libtorch_cuda.so` last.
//!   The CUDA library is loaded at run time, only when a GPU is asked for, rather than linked: see
//!   `src/device.rs`.
//! - `csrc/shim.cpp` and `csrc/c10d.cpp` (what tch does not bind; see `src/shim/`), compiled against that libtorch's
//!   own headers with torch-sys's flags (C++17, the wheel's C++11 ABI), so both sides agree on
//!   every type that crosses.
use std::path::Path;

fn main() {
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").unwrap_or_default();
    if !lib.is_empty() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    println!("cargo:rustc-env=UGATIT_LIBTORCH_LIB={lib}");
    build_shim(Path::new(&lib));
    build_cuda_shim(Path::new(&lib));
}

fn build_shim(lib: &Path) {
    for file in ["csrc/shim.cpp", "csrc/c10d.cpp", "csrc/c10d.h", "csrc/gloo"] {
        println!("cargo:rerun-if-changed={file}");
    }
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let include = lib.parent().map(|torch| torch.join("include")).expect("libtorch's lib folder has a parent");
    // Every PyTorch wheel since 2.7 is built with the C++11 ABI; a libtorch without it says so
    // through the variable torch-sys reads.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .file("csrc/shim.cpp")
        .file("csrc/c10d.cpp")
        .include(&include)
        // Declarations of Gloo's types, which the wheel's c10d headers include but it does not
        // ship (csrc/gloo/README.md).
        .include("csrc/gloo")
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .flag_if_supported("-Wno-unused-parameter")
        .warnings(false)
        .compile("ugatit_shim");
}

/// The CUDA toolkit's include folder with everything `ATen/cuda`'s headers need: `CUDA_HOME`'s,
/// the system toolkit's, or the torch wheel's NVIDIA packages, which lack `crt/` and `nv/` unless
/// `nvidia-cuda-crt` and `nvidia-cuda-cccl` are added (`UGATIT_NCCL=1 scripts/setup.sh`).
fn cuda_include(lib: &Path) -> Option<std::path::PathBuf> {
    let site = lib.parent()?.parent()?;
    let candidates = [
        std::env::var_os("CUDA_HOME").map(|home| Path::new(&home).join("include")),
        Some("/usr/local/cuda/include".into()),
        Some(site.join("nvidia/cu13/include")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|dir| dir.join("crt/host_config.h").exists() && dir.join("nv/target").exists())
}

/// `csrc/cuda.cpp` as its own shared object, `$OUT_DIR/libugatit_cuda.so`, linked against
/// libtorch_cuda: src/distributed/nccl.rs opens it at run time, after libtorch_cuda.so, so CPU
/// processes never map it. Without CUDA headers it is skipped with a warning, and NCCL reports
/// itself unavailable.
fn build_cuda_shim(lib: &Path) {
    println!("cargo:rerun-if-changed=csrc/cuda.cpp");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("libugatit_cuda.so");
    let include = lib.parent().map(|torch| torch.join("include")).expect("libtorch's lib folder has a parent");
    let site = lib.parent().and_then(Path::parent);
    let (Some(cuda), true) = (cuda_include(lib), lib.join("libtorch_cuda.so").exists()) else {
        println!("cargo:warning=no CUDA toolkit headers (crt/host_config.h, nv/target) or no libtorch_cuda.so: building without NCCL (UGATIT_NCCL=1 scripts/setup.sh or CUDA_HOME enables it)");
        println!("cargo:rustc-env=UGATIT_CUDA_SHIM=");
        return;
    };
    let nccl = site.map(|s| s.join("nvidia/nccl/include")).filter(|d| d.join("nccl.h").exists());
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    let compiler = cc::Build::new().cpp(true).get_compiler();
    let mut command = compiler.to_command();
    command
        .args(["-shared", "-fPIC", "-O2", "-std=c++17", "-DGLOG_USE_GLOG_EXPORT", "-Icsrc"])
        .arg(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .arg(format!("-I{}", include.display()))
        .arg(format!("-I{}", include.join("torch/csrc/api/include").display()))
        .arg(format!("-I{}", cuda.display()));
    if let Some(nccl) = nccl {
        command.arg(format!("-I{}", nccl.display()));
    }
    command
        .arg("csrc/cuda.cpp")
        .arg("-o")
        .arg(&out)
        .arg(format!("-L{}", lib.display()))
        .args(["-ltorch_cuda", "-ltorch_cpu", "-lc10_cuda", "-lc10"])
        .arg(format!("-Wl,-rpath,{}", lib.display()));
    let status = command.status().expect("the C++ compiler runs");
    if !status.success() {
        panic!("compiling csrc/cuda.cpp failed ({status})");
    }
    println!("cargo:rustc-env=UGATIT_CUDA_SHIM={}", out.display());
}
