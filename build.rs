//! Link settings for libtorch, and the project's C++ shim.
//!
//! - An rpath to the libtorch that torch-sys built against, so `ugatit` runs without
//!   `LD_LIBRARY_PATH` (which, when set, still takes precedence: binaries built here run on a GPU
//!   machine with that machine's torch/lib).
//! - `UGATIT_LIBTORCH_LIB`, that folder, where `device::load_cuda` looks for `libtorch_cuda.so` last.
//!   The CUDA library is loaded at run time, only when a GPU is asked for, rather than linked: see
//!   `src/device.rs`.
//! - `csrc/shim.cpp` (what tch does not bind; see `src/shim.rs`), compiled against that libtorch's
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
}

fn build_shim(lib: &Path) {
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let include = lib.parent().map(|torch| torch.join("include")).expect("libtorch's lib folder has a parent");
    // Every PyTorch wheel since 2.7 is built with the C++11 ABI; a libtorch without it says so
    // through the variable torch-sys reads.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .file("csrc/shim.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .flag_if_supported("-Wno-unused-parameter")
        .warnings(false)
        .compile("ugatit_shim");
}
