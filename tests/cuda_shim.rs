//! The CUDA half of the shim (`libugatit_cuda.so`): on a GPU (`UGATIT_TEST_DEVICE=cuda`) the
//! caching allocator's peaks follow an allocation; elsewhere every call answers with an error
//! that says what is missing — no shim built, or no GPU — instead of crashing. Its own test
//! binary: loading libtorch_cuda here must not reach the CPU-only processes of the others.

mod common;

use common::device;
use tch::{Device, Kind, Tensor};
use ugatit::shim::cuda::memory_peaks;

#[test]
fn allocator_peaks_follow_an_allocation_or_say_why_not() {
    let Device::Cuda(i) = device() else {
        let err = memory_peaks(0, false).unwrap_err().to_string();
        eprintln!("without a GPU: {err}");
        let known = ["no CUDA shim", "no GPU cuda:0", "libtorch_cuda.so could not be loaded"];
        assert!(known.iter().any(|k| err.contains(k)), "{err}");
        return;
    };
    memory_peaks(i, true).unwrap();
    let before = memory_peaks(i, false).unwrap();
    let big = Tensor::zeros([256, 1 << 20], (Kind::Float, Device::Cuda(i)));
    let during = memory_peaks(i, true).unwrap();
    assert!(during.allocated >= before.allocated + (1 << 30), "{before:?} → {during:?}");
    assert!(during.reserved >= during.allocated, "{during:?}");
    drop(big);
    let after = memory_peaks(i, false).unwrap();
    assert!(after.allocated < during.allocated, "the reset did not start a new peak: {after:?}");
}
