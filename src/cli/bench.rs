//! `ugatit bench`: seconds per training iteration and peak memory on synthetic batches, the
//! figures BENCHMARKS.md compares with UGATIT-pytorch's step (`tools/oracle/bench_train_torch.py`).
//! A benchmark, not a test: run it on a quiet machine and compare ratios within one session.

use super::settings;
use crate::model::ugatit::UGATIT;
use crate::train::config::TrainConfig;
use crate::train::optim::AdamConfig;
use crate::train::step::{LossWeights, PenaltyNoise, Trainer};
use anyhow::Result;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Time training iterations on random images.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub arch: settings::arch::Flags,
    #[command(flatten)]
    pub step: settings::step::Flags,
    #[command(flatten)]
    pub device: settings::device::Flags,
    /// Timed iterations (after the warm-up).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub iters: u64,
    /// Untimed iterations first.
    #[arg(long, default_value_t = 1)]
    pub warmup: u64,
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    let mut config = TrainConfig::default();
    args.arch.apply(&mut config);
    args.step.apply(&mut config);
    args.device.apply(&mut config);
    config.validate()?;
    let device = crate::device::start(&config.device, config.cuda_settings())?;
    if device == tch::Device::Cpu {
        config.architecture().check_host_memory(true)?;
    }
    let nets = UGATIT::new(config.model_config()?, device);
    let mut trainer = Trainer::new(nets, config.gan_type, LossWeights::default(), AdamConfig::default());
    let (batch_size, img_size) = (config.batch_size, config.img_size);
    let batch = || Tensor::rand([batch_size, 3, img_size, img_size], (Kind::Float, device)) * 2.0 - 1.0;
    let mut times = Vec::new();
    for i in 0..args.warmup + args.iters {
        let (a, b) = (batch(), batch());
        let noise = PenaltyNoise::draw(config.gan_type, &a);
        sync(device);
        let t = Instant::now();
        trainer.step(&a, &b, &noise, 1e-4);
        sync(device);
        if i >= args.warmup {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let kind = if config.light { "light" } else { "full" };
    let rss = peak_rss_mib().map(|m| format!("{m:.0}")).unwrap_or_else(|| "?".into());
    println!(
        "ugatit {kind} img {img_size} batch {batch_size} device {} tf32 {}: {median:.4} s/iter (median of {}), peak RSS {rss} MiB",
        config.device, config.tf32, args.iters
    );
    Ok(())
}
