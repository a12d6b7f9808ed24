//! Winograd's F(4×4, 3×3) convolutions (`model::winograd`, the `--winograd` setting): libtorch's
//! direct convolution in float64 is the oracle; they run only where [`winograd::applies`] says
//! (float32 translation on the CPU, wide 3×3 stride-1 layers) and keep the input's layout.

mod common;

use common::wave;
use tch::{Device, Kind, Tensor};
use ugatit::model::{layers, winograd, ResnetGenerator};
use ugatit::precision::{Compute, MemoryFormat, Precision, Workload};
use ugatit::shim;
use ugatit::train::config::TrainConfig;

fn relative_error(ours: &Tensor, oracle: &Tensor) -> f64 {
    let diff = (ours.to_kind(Kind::Double) - oracle).abs().max().double_value(&[]);
    diff / oracle.abs().max().double_value(&[])
}

#[test]
fn winograd_convolution_matches_libtorch_in_both_layouts() {
    // 2 images, 256 → 128 channels, an 18×10 padded input: 4×2 tiles of 4×4 each.
    let nchw = wave(&[2, 256, 18, 10], 0.1);
    let weight = wave(&[128, 256, 3, 3], 0.7) * 0.05;
    let bias = wave(&[128], 1.3);
    let oracle = nchw.to_kind(Kind::Double).conv2d(
        &weight.to_kind(Kind::Double),
        Some(&bias.to_kind(Kind::Double)),
        [1],
        [0],
        [1],
        1,
    );
    let direct = layers::conv(&nchw, &weight, Some(&bias), 1);
    assert!(!winograd::applies(&nchw, &weight, 1), "outside a scope every convolution is direct");
    let _scope = winograd::Scope::enter();
    for xs in [nchw.shallow_clone(), shim::channels_last(&nchw).unwrap()] {
        assert!(winograd::applies(&xs, &weight, 1));
        let ours = layers::conv(&xs, &weight, Some(&bias), 1);
        assert_eq!(ours.size(), [2, 128, 16, 8]);
        assert_eq!(shim::is_channels_last(&ours), shim::is_channels_last(&xs), "the output keeps the input's layout");
        let err = relative_error(&ours, &oracle);
        assert!(err < 5e-5, "Winograd differs from the float64 convolution by {err:e} of its range");
        assert!(!ours.equal(&direct), "the direct kernel ran instead");
    }
}

#[test]
fn winograd_runs_only_where_it_serves() {
    let xs = wave(&[1, 256, 18, 18], 0.3);
    let weight = wave(&[256, 256, 3, 3], 0.2);
    let _scope = winograd::Scope::enter();
    assert!(winograd::applies(&xs, &weight, 1));
    let narrow = (wave(&[1, 128, 18, 18], 0.3), wave(&[64, 128, 3, 3], 0.2));
    assert!(!winograd::applies(&narrow.0, &narrow.1, 1), "128 → 64 channels: the transforms cost more than they save");
    assert!(!winograd::applies(&xs, &weight, 2), "stride 2");
    assert!(!winograd::applies(&xs.narrow(2, 0, 17), &weight, 1), "15 output rows: not whole tiles");
    assert!(!winograd::applies(&xs, &wave(&[256, 256, 5, 5], 0.2), 1), "5×5 kernel");
    assert!(!winograd::applies(&xs.to_kind(Kind::BFloat16), &weight, 1), "bf16 input");
    let tracked = wave(&[1, 256, 18, 18], 0.3).set_requires_grad(true);
    assert!(!winograd::applies(&tracked, &weight, 1), "under autograd the convolution stays direct");
    {
        let _nested = winograd::Scope::enter();
    }
    assert!(winograd::applies(&xs, &weight, 1), "closing a nested scope keeps the outer one");
}

#[test]
fn only_float32_translation_on_cpu_uses_winograd() {
    let compute = |precision, workload| Compute::new(Device::Cpu, precision, MemoryFormat::Auto, workload).unwrap();
    assert!(compute(Precision::Fp32, Workload::Inference).winograd);
    assert!(!compute(Precision::Fp32, Workload::Inference).with_winograd(false).winograd, "--winograd false");
    assert!(!compute(Precision::Fp32, Workload::Training).winograd, "training's convolutions stay direct");
    assert!(!compute(Precision::Bf16, Workload::Inference).winograd);
    assert!(!Compute::reference(Device::Cpu).winograd);
    let weight = wave(&[256, 256, 3, 3], 0.2);
    let xs = wave(&[1, 256, 10, 10], 0.4);
    assert!(!winograd::applies(&xs, &weight, 1));
    let region = compute(Precision::Fp32, Workload::Inference).region();
    assert!(winograd::applies(&xs, &weight, 1), "a translation region opens a scope");
    drop(region);
    assert!(!winograd::applies(&xs, &weight, 1));
}

#[test]
fn a_generator_translates_by_winograd_as_it_does_directly() {
    // ch 32: a 128-channel bottleneck, wide enough for Winograd; 16×16 maps at 64 px (more
    // positions than channels: not weight-bound).
    let config = TrainConfig { light: true, img_size: 64, ch: 32, n_res: 2, n_dis: 4, ..TrainConfig::default() };
    tch::manual_seed(5);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let g = ResnetGenerator::new(&vs.root(), config.model_config().unwrap().generator);
    let xs = wave(&[2, 3, 64, 64], 0.9);
    let direct = tch::no_grad(|| g.forward(&xs));
    // NCHW on both sides, so that Winograd is the only difference.
    let compute = Compute::new(Device::Cpu, Precision::Fp32, MemoryFormat::Contiguous, Workload::Inference).unwrap();
    let ours = {
        let _region = compute.region();
        tch::no_grad(|| g.forward(&compute.input(&xs)))
    };
    let err = (&ours.image - &direct.image).abs().max().double_value(&[]);
    assert!(err < 1e-4, "Winograd's image differs from the direct one by {err:e}");
    assert!(err > 0.0, "no convolution took the Winograd path");
    let err = (&ours.cam_logit - &direct.cam_logit).abs().max().double_value(&[]);
    assert!(err < 1e-4, "CAM logits differ by {err:e}");
}
