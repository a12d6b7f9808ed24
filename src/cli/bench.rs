//! `ugatit bench`: seconds per training iteration and peak memory on synthetic batches, the
//! figures BENCHMARKS.md compares with UGATIT-pytorch's step (`tools/oracle/bench_train_torch.py`).
//! A benchmark, not a test: run it on a quiet machine and compare ratios within one session.

use super::settings;
use crate::bench;
use crate::choice::Choice;
use crate::distributed::{launch::launch_if_asked, World};
use crate::model::ugatit::UGATIT;
use crate::train::config::TrainConfig;
use crate::train::graphed::Steps;
use crate::train::optim::AdamConfig;
use crate::train::step::{LossWeights, Trainer};
use anyhow::Result;
use std::sync::atomic::{AtomicBool, AtomicI32};

/// Time training iterations on random images.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub arch: settings::arch::Flags,
    #[command(flatten)]
    pub step: settings::step::Flags,
    #[command(flatten)]
    pub device: settings::device::Flags,
    #[command(flatten)]
    pub dist: settings::dist::Flags,
    /// Timed iterations (after the warm-up).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub iters: u64,
    /// Untimed iterations first.
    #[arg(long, default_value_t = 1)]
    pub warmup: u64,
    /// After timing, profile one more step with libtorch's operator profiler: its Chrome trace,
    /// with each operator's input shapes, goes to this file (chrome://tracing, Perfetto) and the
    /// operators' self times are printed, by operator and by operator and input shapes.
    #[arg(long, value_name = "TRACE.json")]
    pub profile: Option<std::path::PathBuf>,
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub fn run(args: BenchArgs) -> Result<()> {
    let mut config = TrainConfig::default();
    args.arch.apply(&mut config);
    args.step.apply(&mut config);
    args.device.apply(&mut config);
    args.dist.apply(&mut config);
    config.validate()?;
    // A benchmark saves nothing on Ctrl-C: the terminal's SIGINT ends the ranks directly.
    let (stop, signal) = (AtomicBool::new(false), AtomicI32::new(0));
    if let Some(code) = launch_if_asked(config.nproc_per_node, config.dist_timeout(), &stop, &signal)? {
        std::process::exit(code);
    }
    let world = World::from_env()?;
    let config = crate::train::run::for_rank(&config, world.as_ref())?;
    let compute = config.start_compute(crate::precision::Workload::Training)?;
    if compute.device == tch::Device::Cpu {
        config.architecture().check_host_memory(true)?;
    }
    let dist = crate::train::run::join(world, &config, compute.device, 0)?;
    let nets = UGATIT::new(config.model_config()?, compute.device);
    if let Some(dist) = &dist {
        dist.broadcast_variables(&nets.vs)?;
    }
    let mut trainer = Trainer::new(nets, config.gan_type, LossWeights::default(), AdamConfig::default())
        .computing(compute)
        .distributed(dist.clone());
    let (batch_size, img_size) = (config.batch_size, config.img_size);
    bench::reset_cuda_peaks(compute.device);
    let mut steps = Steps::new(&trainer);
    let median = bench::time_steps(&mut trainer, &mut steps, batch_size, img_size, args.warmup, args.iters)?;
    let cuda_peaks = bench::cuda_peaks(compute.device);
    if dist.as_ref().is_some_and(|d| !d.writes()) {
        return Ok(());
    }
    let ranks = dist.as_ref().map_or(1, |d| d.size());
    let rss = peak_rss_mib().map(|m| format!("{m:.0}")).unwrap_or_else(|| "?".into());
    let flops = bench::step_flops(&trainer, batch_size, img_size);
    let peak = bench::gemm_flops_per_s(config.precision, compute.device);
    let kind = if config.light { "light" } else { "full" };
    let layout = if compute.channels_last { "channels-last" } else { "nchw" };
    let graphs = if steps.replaying() { " cuda-graphs" } else { "" };
    println!(
        "ugatit {kind} img {img_size} batch {batch_size} ranks {ranks} device {} {} {layout}{graphs} tf32 {}: {median:.4} s/iter (median of {}), \
         {:.1} GFLOP/step, {:.1} GFLOP/s = {:.0}% of this machine's {} GEMM ({:.1} GFLOP/s), peak RSS {rss} MiB{}",
        config.device,
        config.precision.name(),
        config.tf32,
        args.iters,
        flops / 1e9,
        flops / median / 1e9,
        100.0 * flops / median / peak,
        config.precision.name(),
        peak / 1e9,
        cuda_peaks.map(|p| format!(", {p}")).unwrap_or_default(),
    );
    if let Some(trace) = &args.profile {
        print_profile(&bench::profile_step(&mut trainer, batch_size, img_size, trace)?, trace);
    }
    Ok(())
}

fn print_profile(profile: &bench::StepProfile, trace: &std::path::Path) {
    let total: f64 = profile.by_operator.iter().map(|op| op.self_s).sum();
    println!("profile of one step ({total:.3} s in operators; trace {}):", trace.display());
    println!("{:>8} {:>6} {:>7}  operator", "self s", "%", "calls");
    for op in profile.by_operator.iter().take(25) {
        println!("{:>8.3} {:>5.1}% {:>7}  {}", op.self_s, 100.0 * op.self_s / total, op.calls, op.name);
    }
    println!("the same by input shapes:");
    println!("{:>8} {:>6} {:>7}  operator  input shapes", "self s", "%", "calls");
    for op in profile.by_shapes.iter().take(15) {
        let share = 100.0 * op.self_s / total;
        println!("{:>8.3} {share:>5.1}% {:>7}  {}  {}", op.self_s, op.calls, op.name, op.shapes);
    }
}
