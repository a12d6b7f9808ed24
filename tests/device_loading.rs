//! libtorch's CUDA library is loaded only when a GPU is asked for (`device::load_cuda`): CPU work
//! must not map it (it costs ~240 MiB of resident memory), and asking for CUDA must load it.
//! One test in its own binary, since loading is process-wide and permanent.

use tch::{Device, Kind, Tensor};

fn cuda_library_mapped() -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    maps.lines().any(|l| l.ends_with("/libtorch_cuda.so"))
}

#[test]
fn cuda_library_loads_only_on_request() {
    let x = Tensor::randn([8, 8], (Kind::Float, Device::Cpu));
    let _ = x.matmul(&x).sum(Kind::Float).double_value(&[]);
    assert!(!cuda_library_mapped(), "CPU work loaded libtorch_cuda.so");

    let has_cuda_build = std::path::Path::new(env!("UGATIT_LIBTORCH_LIB")).join("libtorch_cuda.so").exists();
    let _ = ugatit::device::parse("cuda");
    assert_eq!(cuda_library_mapped(), has_cuda_build, "--device cuda should load the CUDA build's library");
}
