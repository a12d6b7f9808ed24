//! Timing of the Inception feature extractor: one forward pass of a batch of scaled 299×299
//! inputs (`inception_forward_b<B>`), and the whole per-image path from decoded 256×256 RGB8
//! images (PIL-bilinear resize, scaling, forward: `inception_images_b<B>`).
//!
//! `UGATIT_BENCH_BATCH` sets the batch (default 10), `UGATIT_BENCH_THREADS` the libtorch CPU
//! threads (default: libtorch's choice), `UGATIT_BENCH_DEVICE` the device (default cpu). The real
//! weights are used when found (see `ugatit::metrics::weights`); otherwise random ones, which
//! time the same. Compare with `tools/oracle/bench_inception.py` on the same machine in the same
//! session.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use ugatit::io::image::RgbImage;
use ugatit::metrics::features::{Extractor, Preprocess};
use ugatit::metrics::inception::InceptionV3;
use ugatit::metrics::weights::{self, Weights};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// The real weights if they are found, else random ones with the archive's names and shapes.
fn weights_or_random() -> Weights {
    if let Ok(w) = weights::locate(None).and_then(|s| weights::load(&s)) {
        return w;
    }
    eprintln!("inception weights not found: timing random weights");
    tch::manual_seed(0);
    let vs = VarStore::new(Device::Cpu);
    let _net = InceptionV3::new(&vs.root());
    let tensors = vs
        .variables()
        .into_iter()
        .map(|(k, v)| {
            let r = if k.ends_with(".var") { Tensor::rand_like(&v) + 0.5 } else { Tensor::randn_like(&v) * 0.05 };
            (k, r)
        })
        .collect();
    Weights { tensors, source: weights::Source::Converted("random".into()) }
}

fn benches(c: &mut Criterion) {
    let batch: usize = env_or("UGATIT_BENCH_BATCH", 10);
    if let Some(n) = std::env::var("UGATIT_BENCH_THREADS").ok().and_then(|v| v.parse().ok()) {
        tch::set_num_threads(n);
    }
    let device = ugatit::device::parse(&env_or("UGATIT_BENCH_DEVICE", "cpu".to_string())).unwrap();
    let ex = Extractor::new(&weights_or_random(), device, Preprocess::Gm, batch).unwrap();
    let input = Tensor::rand([batch as i64, 3, 299, 299], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let images: Vec<RgbImage> = (0..batch)
        .map(|i| RgbImage::from_fn(256, 256, |x, y| image::Rgb([(x + i as u32) as u8, y as u8, (x ^ y) as u8])))
        .collect();

    let mut group = c.benchmark_group(format!("inception_{}", if device == Device::Cpu { "cpu" } else { "cuda" }));
    group.sample_size(10);
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_function(format!("inception_forward_b{batch}"), |b| {
        b.iter(|| {
            let _ = std::hint::black_box(ex.forward(&input).unwrap());
            sync(device)
        })
    });
    group.bench_function(format!("inception_images_b{batch}"), |b| {
        b.iter(|| {
            let _ = std::hint::black_box(ex.features_of_images(&images).unwrap());
            sync(device)
        })
    });
    group.finish();
}

criterion_group!(inception, benches);
criterion_main!(inception);
