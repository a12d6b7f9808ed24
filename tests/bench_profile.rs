//! `ugatit bench`'s measurements: the operator profile of a step (through the C++ shim's
//! profiler) and its self-time arithmetic, and the FLOP count from the layer shapes.

mod common;

use common::scratch;
use ugatit::bench::{profile_step, self_times, step_flops};
use ugatit::model::flops::counting;
use ugatit::model::{layers, UGATIT};
use ugatit::train::config::TrainConfig;
use ugatit::train::optim::AdamConfig;
use ugatit::train::step::{LossWeights, Trainer};

fn tiny_trainer() -> (Trainer, TrainConfig) {
    let config = TrainConfig { light: true, img_size: 32, ch: 4, n_res: 1, n_dis: 4, ..TrainConfig::default() };
    let nets = UGATIT::new(config.model_config().unwrap(), tch::Device::Cpu);
    (Trainer::new(nets, config.gan_type, LossWeights::default(), AdamConfig::default()), config)
}

#[test]
fn self_time_subtracts_the_children_on_each_thread() {
    let trace = r#"[
        {"name": "outer", "ph": "X", "ts": 0, "dur": 10, "tid": 1},
        {"name": "inner", "ph": "X", "ts": 2, "dur": 3, "tid": 1, "args": {"Input Dims": "[[2, 3]]"}},
        {"name": "inner", "ph": "X", "ts": 6, "dur": 2, "tid": 1, "args": {"Input Dims": "[[4]]"}},
        {"name": "other", "ph": "X", "ts": 1, "dur": 4, "tid": 2},
        {"name": "marker", "ph": "i", "ts": 3, "tid": 1}
    ]"#;
    let profile = self_times(trace).unwrap();
    let ops = &profile.by_operator;
    let get = |name: &str| ops.iter().find(|op| op.name == name).unwrap();
    assert_eq!((get("outer").calls, get("outer").self_s), (1, 5e-6));
    assert_eq!((get("inner").calls, get("inner").self_s), (2, 5e-6));
    assert_eq!(get("other").self_s, 4e-6, "another thread's event is nobody's child");
    assert!(ops.iter().all(|op| op.name != "marker"), "only complete events count");
    let inner: Vec<(&str, u64, f64)> = profile
        .by_shapes
        .iter()
        .filter(|op| op.name == "inner")
        .map(|op| (op.shapes.as_str(), op.calls, op.self_s))
        .collect();
    assert_eq!(inner, [("[[2, 3]]", 1, 3e-6), ("[[4]]", 1, 2e-6)], "one entry per list of shapes");
    assert!(self_times("{}").is_err());
}

#[test]
fn a_profiled_step_names_its_convolutions() {
    let dir = scratch("bench-profile");
    let (mut trainer, config) = tiny_trainer();
    let trace = dir.join("step.json");
    let profile = profile_step(&mut trainer, 1, config.img_size, &trace).unwrap();
    assert!(trace.metadata().unwrap().len() > 1000, "the trace was written");
    let ops = &profile.by_operator;
    let names: Vec<&str> = ops.iter().map(|op| op.name.as_str()).collect();
    for op in ["aten::convolution_backward", "aten::reflection_pad2d"] {
        assert!(names.contains(&op), "{op} missing from {names:?}");
    }
    assert!(ops.windows(2).all(|w| w[0].self_s >= w[1].self_s), "largest first");
    assert!(profile.by_shapes.windows(2).all(|w| w[0].self_s >= w[1].self_s), "largest first");
    // The generator's first convolution: a padded 32² image (38² after the 7×7's padding of 3)
    // and the 4×3×7×7 weight, as the shim's profiler records its inputs.
    let first = "[[1, 3, 38, 38], [4, 3, 7, 7]";
    assert!(
        profile.by_shapes.iter().any(|op| op.name == "aten::mkldnn_convolution" && op.shapes.starts_with(first)),
        "no convolution with inputs {first}…: {:?}",
        profile.by_shapes.iter().filter(|op| op.name.contains("convolution")).collect::<Vec<_>>()
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn step_flops_count_every_convolution_from_the_shapes() {
    let (trainer, config) = tiny_trainer();
    let flops = step_flops(&trainer, 1, config.img_size);
    // The generator's first layer alone: a 7×7 convolution of 3 → 4 channels over 32² outputs,
    // in each of the six generator forwards with two backward passes' worth of arithmetic.
    let first_layer = 2.0 * (3 * 49) as f64 * (4 * 32 * 32) as f64;
    assert!(flops > 18.0 * first_layer, "{flops} FLOPs is less than one layer's share");

    let x = tch::Tensor::zeros([2, 3, 10, 10], (tch::Kind::Float, tch::Device::Cpu));
    let w = tch::Tensor::zeros([4, 3, 3, 3], (tch::Kind::Float, tch::Device::Cpu));
    let ((_, inner), outer) = counting(|| counting(|| layers::conv(&x, &w, None, 2)));
    let expected = 2.0 * 27.0 * (4 * 4 * 4 * 2) as f64; // 4×4 outputs at stride 2, batch 2
    assert_eq!((inner, outer), (expected, expected), "a nested count also reaches the outer one");
    assert_eq!(counting(|| ()).1, 0.0);
}
