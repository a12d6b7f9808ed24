//! CUDA graphs (`--cuda-graphs`) and the device-side optimiser state they rely on:
//!
//! - on the CPU: Adam's coefficients, set on the host before each update and read on the device,
//!   leave the parameters alone at learning rate 0 (a decayed run's last step) while the moments
//!   move; iterations on the CPU run as written; a training iteration's device work
//!   ([`Trainer::compute`]) and a translation call no operator that waits for the device's values
//!   (what a capture refuses), with and without a gradient penalty, in fp32 and bf16;
//! - with `UGATIT_TEST_DEVICE=cuda` (skipped, visibly, elsewhere): a graph replays what it
//!   captured on new inputs; a capture that fails, by an error or a libtorch panic, is an error
//!   and the GPU computes on; training from a replayed graph computes what eager training does,
//!   in fp32 and bf16, lsgan and wgan-gp, through a learning rate that decays to 0; translating
//!   from a graph gives what translating without one gives.

mod common;

use common::{assert_close, device};
use tch::{Device, Kind, Tensor};
use ugatit::model::UGATIT;
use ugatit::precision::{Compute, MemoryFormat, Precision, Workload};
use ugatit::train::config::TrainConfig;
use ugatit::train::graphed::{Steps, WARMUP};
use ugatit::train::losses::{penalty_point, GanType};
use ugatit::train::optim::{learning_rate, Adam, AdamConfig};
use ugatit::train::step::{LossWeights, PenaltyNoise, Trainer, LOSS_NAMES};
use ugatit::translate::{Direction, Translator};

/// Whether the CUDA tests run here; prints the skip past the harness's capture otherwise.
fn on_cuda(test: &str) -> bool {
    if device().is_cuda() {
        return true;
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test} needs UGATIT_TEST_DEVICE=cuda");
    false
}

#[test]
fn adam_at_learning_rate_zero_moves_the_moments_only() {
    let param = Tensor::from_slice(&[0.5f32, -1.25, 0.0, 3.0]).set_requires_grad(true);
    let mut adam = Adam::new(vec![("w".into(), param.shallow_clone())], AdamConfig::default());
    let before = param.detach().copy();
    adam.begin_update(1e-2);
    adam.minimize("w", &(&param * &param).sum(Kind::Float));
    let moved = param.detach().copy();
    assert!(!moved.equal(&before), "a step at 1e-2 moved nothing");
    let moments = adam.state("").into_iter().map(|(_, t)| t.copy()).collect::<Vec<_>>();
    adam.begin_update(0.0);
    adam.minimize("w", &(&param * &param).sum(Kind::Float));
    assert!(param.detach().equal(&moved), "a step at learning rate 0 moved the parameters");
    for ((name, now), then) in adam.state("").into_iter().zip(moments) {
        assert!(!now.equal(&then), "{name} did not move at learning rate 0");
    }
    assert_eq!(adam.step, 2);
}

fn tiny() -> TrainConfig {
    TrainConfig { light: true, img_size: 32, ch: 4, n_res: 1, n_dis: 4, ..TrainConfig::default() }
}

fn trainer(init: &UGATIT, gan: GanType, precision: Precision, graphs: bool) -> Trainer {
    let mut nets = UGATIT::new(tiny().model_config().unwrap(), init.vs.device());
    nets.vs.copy(&init.vs).unwrap();
    let compute = Compute::new(init.vs.device(), precision, MemoryFormat::Auto, Workload::Training).unwrap();
    let compute = compute.with_cuda_graphs(graphs);
    Trainer::new(nets, gan, LossWeights::default(), AdamConfig::default()).computing(compute)
}

/// A batch `[batch, 3, 32, 32]` in [-1, 1] made from `phase` without libtorch's generator, which
/// the tests running beside this one draw from.
fn image(batch: i64, phase: f64, device: Device) -> Tensor {
    let t = Tensor::arange(batch * 3 * 32 * 32, (Kind::Float, device));
    (t * 0.731 + phase).sin().view([batch, 3, 32, 32])
}

/// The gradient penalty's draws for `gan` (in [0, 1), shaped as [`PenaltyNoise::draw`] shapes
/// them), made like [`image`].
fn draws(gan: GanType, phase: f64, device: Device) -> PenaltyNoise {
    if !gan.has_gradient_penalty() {
        return PenaltyNoise::default();
    }
    let unit = |p: f64| (image(1, p, device) + 1.0) * 0.5;
    let alpha = |p: f64| unit(p).narrow(1, 0, 1).narrow(2, 0, 1).narrow(3, 0, 1).contiguous();
    let noise = |p: f64| (gan == GanType::Dragan).then(|| unit(p));
    PenaltyNoise {
        alpha_a: Some(alpha(phase)),
        alpha_b: Some(alpha(phase + 0.1)),
        noise_a: noise(phase + 0.2),
        noise_b: noise(phase + 0.3),
    }
}

/// `iterations` iterations by `steps`, each on its own batches and draws, the learning rate
/// decaying to 0 at the last: every step's loss terms.
fn train(trainer: &mut Trainer, steps: &mut Steps, iterations: i64) -> Vec<Vec<f64>> {
    let device = trainer.compute.device;
    (1..=iterations)
        .map(|step| {
            let phase = step as f64;
            let (a, b) = (image(1, phase, device), image(1, phase + 0.5, device));
            let noise = draws(trainer.gan, phase, device);
            let lr = learning_rate(1e-4, step, iterations, true);
            steps.step(trainer, &a, &b, &noise, lr).unwrap().into_values()
        })
        .collect()
}

#[test]
fn dragans_sigma_is_the_whole_batchs_biased_std() {
    let real = image(2, 0.3, Device::Cpu) * 0.7 + 0.1;
    let (fake, alpha) = (real.zeros_like(), Tensor::ones([2, 1, 1, 1], (Kind::Float, Device::Cpu)));
    let noise = real.ones_like();
    // With α = 1 the point is the perturbed real itself: real + 0.5·σ·1.
    let point = penalty_point(GanType::Dragan, &real, &fake, &alpha, Some(&noise));
    let sigma = ((&point - &real).mean(Kind::Double) * 2.0).double_value(&[]);
    let want = real.std(false).double_value(&[]);
    assert!((sigma - want).abs() <= 1e-6 * want, "σ {sigma} vs torch's std {want}");
}

#[test]
fn iterations_on_the_cpu_run_as_written() {
    tch::manual_seed(5);
    let init = UGATIT::new(tiny().model_config().unwrap(), Device::Cpu);
    let mut plain = trainer(&init, GanType::Lsgan, Precision::Fp32, false);
    let mut run = trainer(&init, GanType::Lsgan, Precision::Fp32, true);
    assert!(!run.compute.cuda_graphs, "graphs asked for on the CPU");
    let (mut eager_steps, mut steps) = (Steps::new(&plain), Steps::new(&run));
    let eager = train(&mut plain, &mut eager_steps, WARMUP as i64 + 2);
    assert_eq!(train(&mut run, &mut steps, WARMUP as i64 + 2), eager);
    assert!(!steps.replaying(), "a CPU trainer replayed a graph");
}

/// Operators that read a value back to the host, or whose output's shape depends on values:
/// on CUDA each waits for the device, which a graph capture forbids.
const SYNCHRONISING: &[&str] = &[
    "aten::_local_scalar_dense",
    "aten::item",
    "aten::is_nonzero",
    "aten::nonzero",
    "aten::equal",
    "aten::allclose",
    "aten::masked_select",
    "aten::unique",
    "aten::_unique2",
];

/// The operators of [`SYNCHRONISING`] that `work` calls (profiled into `trace`), after checking
/// that the profile saw its convolutions.
fn waits<T>(trace: &std::path::Path, work: impl FnOnce() -> T) -> (Vec<String>, T) {
    let profile = ugatit::shim::Profile::start(trace).unwrap();
    let out = work();
    profile.finish().unwrap();
    let ops = ugatit::bench::self_times(&std::fs::read_to_string(trace).unwrap()).unwrap().by_operator;
    assert!(ops.iter().any(|op| op.name.contains("convolution")), "{}: no convolution", trace.display());
    (ops.into_iter().map(|op| op.name).filter(|n| SYNCHRONISING.contains(&n.as_str())).collect(), out)
}

#[test]
fn an_iteration_never_waits_for_the_device() {
    let dir = common::scratch("graph-sync");
    let cases =
        [(GanType::Lsgan, Precision::Fp32), (GanType::WganGp, Precision::Bf16), (GanType::Dragan, Precision::Fp32)];
    for (gan, precision) in cases {
        tch::manual_seed(9);
        let init = UGATIT::new(tiny().model_config().unwrap(), Device::Cpu);
        let mut t = trainer(&init, gan, precision, false);
        let (a, b, noise) = (image(1, 0.0, Device::Cpu), image(1, 0.5, Device::Cpu), draws(gan, 0.0, Device::Cpu));
        t.begin(1e-4);
        let (waiting, losses) = waits(&dir.join(format!("{gan:?}.json")), || t.compute(&a, &b, &noise).unwrap());
        assert!(waiting.is_empty(), "{gan:?} {precision:?}: the iteration calls {waiting:?}");
        assert!(losses.values().unwrap().into_values().iter().all(|v| v.is_finite()));
    }
    let path = common::tiny_checkpoint(&dir, 4);
    for precision in [Precision::Fp32, Precision::Bf16] {
        let compute = Compute::new(Device::Cpu, precision, MemoryFormat::Auto, Workload::Inference).unwrap();
        let translator = Translator::load(&path, Direction::A2b, Some(32), Device::Cpu).unwrap().computing(compute);
        let (waiting, _) = waits(&dir.join("translate.json"), || translator.translate(&image(2, 0.0, Device::Cpu)));
        assert!(waiting.is_empty(), "translating in {precision:?} calls {waiting:?}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_graph_replays_on_new_inputs() {
    if !on_cuda("a_graph_replays_on_new_inputs") {
        return;
    }
    use ugatit::shim::cuda::Graph;
    let x = Tensor::zeros([1000], (Kind::Float, device()));
    let (graph, y) = Graph::capture(|| Ok((&x * 2.0 + 1.0).relu())).unwrap();
    for shift in [-3.0, 0.5, 7.0] {
        let input = Tensor::arange(1000, (Kind::Float, device())) * 0.01 + shift;
        x.shallow_clone().copy_(&input);
        graph.replay().unwrap();
        assert!(y.equal(&(&input * 2.0 + 1.0).relu()), "replay with shift {shift}");
    }
}

#[test]
fn a_failed_capture_is_an_error_and_the_gpu_computes_on() {
    if !on_cuda("a_failed_capture_is_an_error_and_the_gpu_computes_on") {
        return;
    }
    use ugatit::shim::cuda::Graph;
    let x = Tensor::ones([16], (Kind::Float, device()));
    let err = Graph::capture(|| -> anyhow::Result<()> { anyhow::bail!("refused") }).err().unwrap();
    assert!(format!("{err:#}").contains("refused"), "{err:#}");
    // Reading a value waits for the GPU, which a capture forbids: libtorch's error, as tch's panic.
    let err = Graph::capture(|| Ok((&x * 3.0).sum(Kind::Float).double_value(&[]))).err();
    assert!(err.is_some(), "a synchronising capture succeeded");
    assert_eq!((&x * 3.0).sum(Kind::Float).double_value(&[]), 48.0, "the GPU after a failed capture");
}

#[test]
fn graphed_training_computes_what_eager_training_does() {
    if !on_cuda("graphed_training_computes_what_eager_training_does") {
        return;
    }
    let iterations = WARMUP as i64 + 6;
    for (gan, precision) in
        [(GanType::Lsgan, Precision::Fp32), (GanType::WganGp, Precision::Fp32), (GanType::Lsgan, Precision::Bf16)]
    {
        tch::manual_seed(11);
        let init = UGATIT::new(tiny().model_config().unwrap(), device());
        let mut plain = trainer(&init, gan, precision, false);
        let mut eager_steps = Steps::new(&plain);
        let eager = train(&mut plain, &mut eager_steps, iterations);
        let mut graphed = trainer(&init, gan, precision, true);
        let mut steps = Steps::new(&graphed);
        let replayed = train(&mut graphed, &mut steps, iterations);
        assert!(steps.replaying(), "{gan:?} {precision:?}: the step was not captured");
        let case = format!("{gan:?} {precision:?}");
        for (step, (e, r)) in eager.iter().zip(&replayed).enumerate() {
            for ((name, e), r) in LOSS_NAMES.iter().zip(e).zip(r) {
                assert!((e - r).abs() <= 1e-4 * e.abs().max(1.0), "{case} step {}: {name} {r} vs eager {e}", step + 1);
            }
        }
        for (name, t) in plain.nets.vs.variables() {
            assert_close(&format!("{case} {name}"), &graphed.nets.vs.variables()[&name], &t, 1e-4);
        }
        assert_eq!((graphed.opt_g.step, graphed.opt_d.step), (iterations, iterations), "{case}");
    }
}

#[test]
fn translation_replays_batches_of_the_captured_shape() {
    if !on_cuda("translation_replays_batches_of_the_captured_shape") {
        return;
    }
    let dir = common::scratch("graph-translate");
    let path = common::tiny_checkpoint(&dir, 4);
    let compute = Compute::new(device(), Precision::Fp32, MemoryFormat::Auto, Workload::Inference).unwrap();
    let load = |graphs: bool| {
        let t = Translator::load(&path, Direction::A2b, Some(32), device()).unwrap();
        t.computing(compute.with_cuda_graphs(graphs))
    };
    let (plain, graphed) = (load(false), load(true));
    // Batches of 3 (warm-up, capture, replays) with a smaller last one, which runs as written.
    for (i, batch) in [3, 3, 3, 3, 2].into_iter().enumerate() {
        let xs = image(batch, i as f64, device());
        let (want, got) = (plain.translate(&xs), graphed.translate(&xs));
        assert_close(&format!("batch {i} image"), &got.image, &want.image, 1e-5);
        assert_close(&format!("batch {i} cam_logit"), &got.cam_logit, &want.cam_logit, 1e-5);
        assert_close(&format!("batch {i} heatmap"), &got.heatmap, &want.heatmap, 1e-5);
        assert_eq!(graphed.replays_a_graph(), i >= 1, "after batch {i}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
