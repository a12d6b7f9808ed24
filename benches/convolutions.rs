//! The generators' 3×3 convolutions as translation runs them (CPU, float32, batch 1,
//! channels-last, no gradients): libtorch's direct oneDNN kernels against Winograd's F(4×4, 3×3)
//! (`model::winograd`, `--winograd`), for the three 3×3 stride-1 layer shapes of a 256 px
//! generator. 128 → 64 channels is under `winograd::applies`' threshold (translation computes it
//! directly); it is timed here to show why.

use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;
use tch::{Device, Kind, Tensor};
use ugatit::model::{layers, winograd};

fn benches(c: &mut Criterion) {
    // As `ugatit` itself runs: freed blocks stay in the heap (the transforms' buffers would
    // otherwise be mapped and faulted in afresh on every call).
    ugatit::device::keep_freed_memory();
    let mut group = c.benchmark_group("conv3x3_channels_last");
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    // (input channels, output channels, output side): residual blocks, first and second up-sampling stages.
    for (c_in, c_out, side) in [(256, 256, 64), (256, 128, 128), (128, 64, 256)] {
        let xs = Tensor::rand([1, c_in, side + 2, side + 2], (Kind::Float, Device::Cpu));
        let xs = ugatit::shim::channels_last(&xs).expect("a channels-last input");
        let weight = Tensor::rand([c_out, c_in, 3, 3], (Kind::Float, Device::Cpu)) * 0.05;
        let name = format!("{c_in}to{c_out}_{side}px");
        group.bench_function(format!("{name}_direct"), |b| {
            b.iter(|| tch::no_grad(|| layers::conv(&xs, &weight, None, 1)))
        });
        group.bench_function(format!("{name}_winograd"), |b| {
            b.iter(|| tch::no_grad(|| winograd::conv3x3(&xs, &weight, None)))
        });
    }
    group.finish();
}

criterion_group!(convolutions, benches);
criterion_main!(convolutions);
