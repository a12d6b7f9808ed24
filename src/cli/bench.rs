//! `ugatit bench`: seconds per training iteration and peak memory on synthetic batches, the
//! figures BENCHMARKS.md compares with UGATIT-pytorch's step (`tools/oracle/bench_train_torch.py`).
//! A benchmark, not a test: run it on a quiet machine and compare ratios within one session.

use crate::cli::ArchArgs;
use crate::model::ugatit::UGATIT;
use crate::train::config::TrainConfig;
use crate::train::losses::GanType;
use crate::train::optim::AdamConfig;
use crate::train::step::{LossWeights, PenaltyNoise, Trainer};
use anyhow::Result;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Time training iterations on random images.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub arch: ArchArgs,
    /// Discriminator depth as in `train` (6: the reference's 7/5 layers; 5 runs at 64 px).
    #[arg(long, default_value_t = 6)]
    pub n_dis: i64,
    #[arg(long, default_value_t = 1)]
    pub batch_size: i64,
    /// Timed iterations (after the warm-up).
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    #[arg(long, value_enum, default_value_t = GanType::Lsgan)]
    pub gan_type: GanType,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// CUDA: TF32 convolutions.
    #[arg(long)]
    pub tf32: bool,
    /// CUDA: cuDNN algorithm search.
    #[arg(long)]
    pub cudnn_benchmark: bool,
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
    let device = crate::device::parse(&args.device)?;
    crate::model::layers::set_cuda_convolutions(args.tf32, args.cudnn_benchmark);
    let g = args.arch.generator();
    let config = TrainConfig {
        ch: g.ngf,
        n_res: g.n_res,
        n_dis: args.n_dis,
        img_size: g.img_size,
        light: g.light,
        ..TrainConfig::default()
    };
    let nets = UGATIT::new(config.model_config()?, device);
    let mut trainer = Trainer::new(nets, args.gan_type, LossWeights::default(), AdamConfig::default());
    let shape = [args.batch_size, 3, g.img_size, g.img_size];
    let batch = || Tensor::rand(shape, (Kind::Float, device)) * 2.0 - 1.0;
    let mut times = Vec::new();
    for i in 0..args.warmup + args.iters {
        let (a, b) = (batch(), batch());
        let noise = PenaltyNoise::draw(args.gan_type, &a);
        sync(device);
        let t = Instant::now();
        trainer.step(&a, &b, &noise, 1e-4);
        sync(device);
        if i >= args.warmup {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    let kind = if g.light { "light" } else { "full" };
    let rss = peak_rss_mib().map(|m| format!("{m:.0}")).unwrap_or_else(|| "?".into());
    println!(
        "ugatit {kind} img {} batch {} device {} tf32 {}: {median:.4} s/iter (median of {}), peak RSS {rss} MiB",
        g.img_size, args.batch_size, args.device, args.tf32, args.iters
    );
    Ok(())
}
