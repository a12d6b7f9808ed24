//! Measuring the training step: seconds per iteration on synthetic batches, the step's FLOPs
//! counted from the layer shapes, and this machine's peak for the step's precision measured by a
//! matrix product in the same process — what `ugatit bench` prints and BENCHMARKS.md records.

use crate::model::flops::counting;
use crate::precision::Precision;
use crate::shim::Profile;
use crate::train::graphed::Steps;
use crate::train::step::{PenaltyNoise, Trainer};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Waits for the device's queued work.
pub fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn random_batches(trainer: &Trainer, batch: i64, size: i64) -> (Tensor, Tensor, PenaltyNoise) {
    let device = trainer.compute.device;
    let draw = || Tensor::rand([batch, 3, size, size], (Kind::Float, device)) * 2.0 - 1.0;
    let (a, b) = (draw(), draw());
    let noise = PenaltyNoise::draw(trainer.gan, &a);
    (a, b, noise)
}

/// Median seconds per iteration of `iters` steps after `warmup` untimed ones, on fresh uniform
/// batches of `[batch, 3, size, size]` each step, run by `steps` (from a CUDA graph once it
/// has captured one) and with their loss terms read, as training reads them.
/// Under a distributed trainer each rank times its own steps, which wait for each other's
/// all-reduces.
pub fn time_steps(
    trainer: &mut Trainer,
    steps: &mut Steps,
    batch: i64,
    size: i64,
    warmup: u64,
    iters: u64,
) -> Result<f64> {
    let device = trainer.compute.device;
    let mut times = Vec::new();
    for i in 0..warmup + iters {
        let (a, b, noise) = random_batches(trainer, batch, size);
        sync(device);
        let t = Instant::now();
        steps.step(trainer, &a, &b, &noise, 1e-4)?;
        sync(device);
        if i >= warmup {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Starts new peaks of the CUDA caching allocator on `device` (nothing on the CPU).
pub fn reset_cuda_peaks(device: Device) {
    if let Device::Cuda(i) = device {
        let _ = crate::shim::cuda::memory_peaks(i, true);
    }
}

/// The CUDA caching allocator's peaks on `device` since [`reset_cuda_peaks`], as printed by
/// `ugatit bench` (`None` on the CPU).
pub fn cuda_peaks(device: Device) -> Option<String> {
    let Device::Cuda(i) = device else { return None };
    let gib = |bytes: i64| bytes as f64 / (1u64 << 30) as f64;
    Some(match crate::shim::cuda::memory_peaks(i, false) {
        Ok(p) => format!("peak CUDA allocated {:.2} GiB, reserved {:.2} GiB", gib(p.allocated), gib(p.reserved)),
        Err(e) => format!("no CUDA allocator statistics ({e})"),
    })
}

/// FLOPs of one training step (without a gradient penalty), from one counted forward of each
/// network: every generator runs three forwards (first translation, cycle, identity), each
/// differentiated for its weights and inputs (backward ≈ 2× forward); every discriminator runs
/// two forwards with a full backward in its own step and one with an input-only backward (≈ 1×)
/// in the generator step.
pub fn step_flops(trainer: &Trainer, batch: i64, size: i64) -> f64 {
    let nets = &trainer.nets;
    let xs = Tensor::zeros([batch, 3, size, size], (Kind::Float, trainer.compute.device));
    let (_, g) = counting(|| tch::no_grad(|| nets.gen_a2b.forward(&xs)));
    let g = g + nets.config.generator.mlp_flops(batch);
    let (_, d_global) = counting(|| tch::no_grad(|| nets.dis_ga.forward_t(&xs, false)));
    let (_, d_local) = counting(|| tch::no_grad(|| nets.dis_la.forward_t(&xs, false)));
    2.0 * (3.0 * 3.0 * g) + 2.0 * (2.0 * 3.0 + 2.0) * (d_global + d_local)
}

/// The FLOP/s of a square matrix product in `precision` on `device` (up to 3072² on the CPU,
/// 8192² on CUDA; median of five after a warm-up): the attainable peak the step's throughput
/// is compared with. (On this project's AMD CPUs MKL's float32 GEMM reaches ~170 GFLOP/s where
/// oneDNN's convolutions reach ~200–320: "peak" is what a plain GEMM attains, not the silicon's
/// limit.)
pub fn gemm_flops_per_s(precision: Precision, device: Device) -> f64 {
    let kind = precision.autocast_kind().unwrap_or(Kind::Float);
    let largest = if device.is_cuda() { 8192 } else { 3072 };
    // The second of two products (the first pays for cuBLAS's or oneDNN's set-up).
    let seconds = |a: &Tensor, b: &Tensor| {
        let _ = a.matmul(b);
        sync(device);
        let t = Instant::now();
        let _ = a.matmul(b);
        sync(device);
        t.elapsed().as_secs_f64()
    };
    // Grown from 256 until one product takes 50 ms: a precision the machine only emulates (bf16
    // without AVX-512 BF16 or AMX runs libtorch's scalar loop) is measured in a second, where a
    // 3072³ product would take the better part of an hour.
    let mut n = 256;
    let (a, b) = loop {
        let (a, b) = (Tensor::randn([n, n], (kind, device)), Tensor::randn([n, n], (kind, device)));
        if n >= largest || seconds(&a, &b) >= 0.05 {
            break (a, b);
        }
        n = (n * 2).min(largest);
    };
    let mut times: Vec<f64> = (0..5).map(|_| seconds(&a, &b)).collect();
    times.sort_by(f64::total_cmp);
    2.0 * (n as f64).powi(3) / times[times.len() / 2]
}

/// One operator's share of a profiled step: all its calls, or those with one list of input
/// shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct OpTime {
    pub name: String,
    /// The calls' input shapes as the trace writes them (`[[1, 256, 64, 64], []]`); empty when
    /// this entry sums calls of every shape, or the trace has none.
    pub shapes: String,
    pub calls: u64,
    /// Seconds inside the operator but not inside the operators it called.
    pub self_s: f64,
}

/// A step's operator profile, largest self time first: by operator, and by operator and input
/// shapes (which layer's convolution, which tensor's copy).
#[derive(Debug, Clone, PartialEq)]
pub struct StepProfile {
    pub by_operator: Vec<OpTime>,
    pub by_shapes: Vec<OpTime>,
}

/// Runs one more step under libtorch's operator profiler, writes its Chrome trace to `trace`
/// and returns every operator's self time.
pub fn profile_step(trainer: &mut Trainer, batch: i64, size: i64, trace: &Path) -> Result<StepProfile> {
    let (a, b, noise) = random_batches(trainer, batch, size);
    let profile = Profile::start(trace)?;
    trainer.step(&a, &b, &noise, 1e-4).expect("a single-process step has no collective to fail");
    sync(trainer.compute.device);
    profile.finish()?;
    let text = std::fs::read_to_string(trace).with_context(|| format!("reading {}", trace.display()))?;
    self_times(&text).with_context(|| format!("{}: not a Chrome trace of complete events", trace.display()))
}

/// Per-operator self times of a Chrome trace's complete (`"ph": "X"`) events, which nest by
/// time on each thread; shapes from each event's `args["Input Dims"]` where it has them.
pub fn self_times(trace: &str) -> Result<StepProfile> {
    #[derive(serde::Deserialize)]
    struct Args {
        #[serde(rename = "Input Dims", default)]
        shapes: String,
    }
    #[derive(serde::Deserialize)]
    struct Event {
        name: String,
        ph: String,
        ts: f64,
        #[serde(default)]
        dur: f64,
        #[serde(default)]
        tid: serde_json::Value,
        args: Option<Args>,
    }
    let events: Vec<Event> = serde_json::from_str(trace)?;
    let mut by_thread: BTreeMap<String, Vec<&Event>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.ph == "X") {
        by_thread.entry(e.tid.to_string()).or_default().push(e);
    }
    let key = |e: &Event| (e.name.clone(), e.args.as_ref().map(|a| a.shapes.clone()).unwrap_or_default());
    let mut ops: BTreeMap<(String, String), (u64, f64)> = BTreeMap::new();
    for thread in by_thread.values_mut() {
        // Parents first: earlier start, and the longer of two that start together.
        thread.sort_by(|x, y| x.ts.total_cmp(&y.ts).then(y.dur.total_cmp(&x.dur)));
        let mut open: Vec<(f64, &Event)> = Vec::new(); // (end, event) of the enclosing events
        for e in thread.iter() {
            while open.last().is_some_and(|(end, _)| *end <= e.ts) {
                open.pop();
            }
            if let Some((_, parent)) = open.last() {
                ops.entry(key(parent)).or_default().1 -= e.dur;
            }
            let op = ops.entry(key(e)).or_default();
            op.0 += 1;
            op.1 += e.dur;
            open.push((e.ts + e.dur, e));
        }
    }
    let mut by_operator: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    for ((name, _), (calls, us)) in &ops {
        let op = by_operator.entry(name.clone()).or_default();
        op.0 += calls;
        op.1 += us;
    }
    let largest_first = |mut v: Vec<OpTime>| {
        v.sort_by(|x, y| y.self_s.total_cmp(&x.self_s));
        v
    };
    let by_operator = by_operator.into_iter().map(|(name, (calls, us))| OpTime {
        name,
        shapes: String::new(),
        calls,
        self_s: us / 1e6,
    });
    let by_shapes =
        ops.into_iter().map(|((name, shapes), (calls, us))| OpTime { name, shapes, calls, self_s: us / 1e6 });
    Ok(StepProfile { by_operator: largest_first(by_operator.collect()), by_shapes: largest_first(by_shapes.collect()) })
}
