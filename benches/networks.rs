//! Baseline timings of the networks: generator forward (inference, light and full) and one forward+backward
//! of each network on a scalar loss, batch 1. `UGATIT_BENCH_SIZE` sets the image size (default
//! 256), `UGATIT_BENCH_DEVICE` the device (default cpu). Compare with
//! `tools/oracle/bench_torch.py`, run on the same machine in the same session.

use criterion::{criterion_group, criterion_main, Criterion};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use ugatit::model::discriminator::Config as DConfig;
use ugatit::model::generator::Config as GConfig;
use ugatit::model::{Discriminator, ResnetGenerator};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn benches(c: &mut Criterion) {
    let size: i64 = env_or("UGATIT_BENCH_SIZE", 256);
    let device = ugatit::device::parse(&env_or("UGATIT_BENCH_DEVICE", "cpu".to_string())).unwrap();
    let input = Tensor::rand([1, 3, size, size], (Kind::Float, device)) * 2.0 - 1.0;
    let mut group = c.benchmark_group(format!("networks_{size}px"));
    group.sample_size(10);

    for light in [true, false] {
        let vs = VarStore::new(device);
        let g = ResnetGenerator::new(&vs.root(), GConfig { light, img_size: size, ..GConfig::default() });
        let name = if light { "light_g" } else { "full_g" };
        group.bench_function(format!("{name}_forward"), |b| {
            b.iter(|| {
                tch::no_grad(|| g.forward(&input));
                sync(device)
            })
        });
        group.bench_function(format!("{name}_forward_backward"), |b| {
            b.iter(|| {
                let out = g.forward(&input);
                (out.image.sum(Kind::Float) + out.cam_logit.sum(Kind::Float) + out.heatmap.sum(Kind::Float)).backward();
                sync(device)
            })
        });
    }
    for (name, config) in [("global_d", DConfig::global(64)), ("local_d", DConfig::local(64))] {
        if config.logit_size(size).is_none() {
            continue;
        }
        let vs = VarStore::new(device);
        let d = Discriminator::new(&vs.root(), config);
        group.bench_function(format!("{name}_forward_backward"), |b| {
            b.iter(|| {
                let out = d.forward_t(&input, true);
                (out.logit.sum(Kind::Float) + out.cam_logit.sum(Kind::Float) + out.heatmap.sum(Kind::Float)).backward();
                sync(device)
            })
        });
    }
    group.finish();
}

criterion_group!(networks, benches);
criterion_main!(networks);
