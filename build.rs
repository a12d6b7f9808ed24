//! Link settings for libtorch.
//!
//! - An rpath to the libtorch that torch-sys built against, so `ugatit` runs without
//!   `LD_LIBRARY_PATH` (which, when set, still takes precedence: binaries built here run on a GPU
//!   machine with that machine's torch/lib).
//! - `libtorch_cuda` kept as a needed library: the linker's default `--as-needed` drops it since no
//!   symbol is referenced directly, and then CUDA is never found at run time.
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-ltorch_cuda");
            println!("cargo:rustc-link-arg=-Wl,--as-needed");
        }
    }
}
