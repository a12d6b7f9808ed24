//! Link settings for libtorch.
//!
//! - An rpath to the libtorch that torch-sys built against, so `ugatit` runs without
//!   `LD_LIBRARY_PATH` (which, when set, still takes precedence: binaries built here run on a GPU
//!   machine with that machine's torch/lib).
//! - `UGATIT_LIBTORCH_LIB`, that folder, where `device::load_cuda` looks for `libtorch_cuda.so` last.
//!   The CUDA library is loaded at run time, only when a GPU is asked for, rather than linked: see
//!   `src/device.rs`.
fn main() {
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").unwrap_or_default();
    if !lib.is_empty() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    println!("cargo:rustc-env=UGATIT_LIBTORCH_LIB={lib}");
}
