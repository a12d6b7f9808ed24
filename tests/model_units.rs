//! Unit behaviour of the building blocks that the parity fixtures do not pin down alone.

mod common;

use common::wave;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use ugatit::model::discriminator::Config as DConfig;
use ugatit::model::generator::Config as GConfig;
use ugatit::model::{Discriminator, ResnetGenerator};

fn small_generator(light: bool) -> (VarStore, ResnetGenerator) {
    let vs = VarStore::new(Device::Cpu);
    let g = ResnetGenerator::new(&vs.root(), GConfig { ngf: 4, n_res: 2, img_size: 32, light });
    (vs, g)
}

#[test]
fn generator_output_shapes() {
    for light in [true, false] {
        let (_vs, g) = small_generator(light);
        let out = g.forward(&Tensor::rand([3, 3, 32, 32], (Kind::Float, Device::Cpu)));
        assert_eq!(out.image.size(), [3, 3, 32, 32]);
        assert_eq!(out.cam_logit.size(), [3, 2]);
        assert_eq!(out.heatmap.size(), [3, 1, 8, 8]);
        let max = out.image.abs().max().double_value(&[]);
        assert!(max <= 1.0, "tanh output out of range: {max}");
    }
}

#[test]
fn rho_is_initialised_and_clipped_like_the_reference() {
    let (vs, g) = small_generator(true);
    let vars = vs.variables();
    let rho = |name: &str| vars[name].flatten(0, -1);
    assert!(rho("UpBlock1_1.norm1.rho").eq(0.9).all().int64_value(&[]) == 1);
    assert!(rho("UpBlock2.3.rho").eq(0.0).all().int64_value(&[]) == 1);
    // Push every rho outside [0, 1], clip, and check the bounds.
    tch::no_grad(|| {
        for (name, v) in &vars {
            if name.ends_with("rho") {
                v.shallow_clone().copy_(&(v.randn_like() * 5.0));
            }
        }
    });
    g.clip_rho();
    let rhos: Vec<_> = vars.iter().filter(|(n, _)| n.ends_with("rho")).collect();
    assert_eq!(rhos.len(), 2 * 2 + 2, "2 AdaLIN per block and 2 ILN");
    for (name, v) in rhos {
        let (lo, hi) = (v.min().double_value(&[]), v.max().double_value(&[]));
        assert!((0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi), "{name}: [{lo}, {hi}]");
    }
    // Nothing else is touched.
    assert!(vars["gamma.weight"].abs().max().double_value(&[]) <= 1.0 / 16f64.sqrt());
}

#[test]
fn initialisation_is_pytorch_default() {
    let vs = VarStore::new(Device::Cpu);
    let _g = ResnetGenerator::new(&vs.root(), GConfig { ngf: 16, n_res: 1, img_size: 32, light: true });
    let vars = vs.variables();
    // conv 16→32, k3: fan_in 144, bound 1/12; U(-b, b) has std b/√3.
    let w = &vars["DownBlock.5.weight"];
    let bound = 1.0 / 12.0;
    assert!(w.abs().max().double_value(&[]) <= bound);
    let std = w.std(true).double_value(&[]);
    assert!((std - bound / 3f64.sqrt()).abs() < 0.1 * bound, "std {std}");
    // conv1x1 has a bias, drawn from the same bound (fan_in 128).
    let b = &vars["conv1x1.bias"];
    assert!(b.abs().max().double_value(&[]) <= 1.0 / 128f64.sqrt());
    assert!(b.abs().max().double_value(&[]) > 0.0);
}

#[test]
fn spectral_norm_state_is_unit_and_untrained() {
    let vs = VarStore::new(Device::Cpu);
    let _d = Discriminator::new(&vs.root(), DConfig::local(8));
    let vars = vs.variables();
    let trainable = vs.trainable_variables().len();
    let state: Vec<_> = vars.iter().filter(|(n, _)| n.ends_with("weight_u") || n.ends_with("weight_v")).collect();
    // 4 model convs + gap_fc + gmp_fc + conv, each with u and v.
    assert_eq!(state.len(), 2 * 7);
    assert_eq!(trainable + state.len(), vars.len());
    for (name, t) in state {
        assert!(!t.requires_grad(), "{name} must not be trainable");
        assert!((t.norm().double_value(&[]) - 1.0).abs() < 1e-5, "{name} is not unit norm");
    }
}

#[test]
fn discriminator_logit_sizes_match_the_paper() {
    assert_eq!(DConfig::global(64).logit_size(256), Some(6));
    assert_eq!(DConfig::local(64).logit_size(256), Some(30));
    assert_eq!(DConfig::global(64).logit_size(64), None);
    assert_eq!(DConfig::global(64).logit_size(96), Some(1));
    let vs = VarStore::new(Device::Cpu);
    let d = Discriminator::new(&vs.root(), DConfig::local(4));
    let out = tch::no_grad(|| d.forward_t(&Tensor::rand([2, 3, 64, 64], (Kind::Float, Device::Cpu)), false));
    let side = DConfig::local(4).logit_size(64).unwrap();
    assert_eq!(out.logit.size(), [2, 1, side, side]);
}

#[test]
fn safetensors_round_trip_keeps_every_variable() {
    let dir = std::env::temp_dir().join(format!("ugatit-rt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("d.safetensors");
    let vs = VarStore::new(Device::Cpu);
    let _d = Discriminator::new(&vs.root(), DConfig::local(4));
    ugatit::io::safetensors::save_var_store(&vs, &path).unwrap();
    let vs2 = VarStore::new(Device::Cpu);
    let _d2 = Discriminator::new(&vs2.root(), DConfig::local(4));
    ugatit::io::safetensors::load_var_store(&vs2, &path).unwrap();
    let (a, b) = (vs.variables(), vs2.variables());
    assert_eq!(a.len(), b.len());
    for (name, t) in &a {
        assert!(t.equal(&b[name]), "{name} differs after round trip");
    }
    let file = ugatit::io::safetensors::read(&path).unwrap();
    assert!(file.tensors.contains_key("model.1.weight_orig"));
    assert!(file.tensors.contains_key("conv.weight_u"));

    // A model of another width names the file and the tensor in its error.
    let vs3 = VarStore::new(Device::Cpu);
    let _d3 = Discriminator::new(&vs3.root(), DConfig::local(8));
    let err = format!("{:#}", ugatit::io::safetensors::load_var_store(&vs3, &path).unwrap_err());
    assert!(err.contains("d.safetensors") && err.contains("has shape"), "{err}");
    // A truncated file is an error, not a panic.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = format!("{:#}", ugatit::io::safetensors::load_var_store(&vs2, &path).unwrap_err());
    assert!(err.contains("not a valid safetensors file"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cuda_request_without_gpu_is_a_clear_error() {
    if ugatit::device::cuda_available() {
        return;
    }
    let err = ugatit::device::parse("cuda").unwrap_err().to_string();
    assert!(err.contains("no CUDA GPU"), "{err}");
    assert!(ugatit::device::parse("tpu").is_err());
}

#[test]
fn weight_bound_convolution_matches_libtorch_over_a_batch() {
    use ugatit::model::layers::{conv, conv_patches, output_positions};
    // 3 images of 6×6, k 4, stride 2: 3·2·2 = 12 output positions for 16 channels, so `conv`
    // takes the matrix-product path; libtorch's own convolution is the oracle.
    let xs = wave(&[3, 5, 6, 6], 0.1).set_requires_grad(true);
    let weight = wave(&[16, 5, 4, 4], 0.7).set_requires_grad(true);
    let bias = wave(&[16], 1.3);
    assert!(output_positions(&xs, &weight, 2) <= 16);
    let ours = conv(&xs, &weight, Some(&bias), 2);
    let oracle = xs.conv2d(&weight, Some(&bias), [2], [0], [1], 1);
    assert_eq!(ours.size(), [3, 16, 2, 2]);
    let max_diff = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
    assert!(max_diff(&ours, &oracle) < 1e-5, "forward differs by {}", max_diff(&ours, &oracle));
    let g = wave(&[3, 16, 2, 2], 2.9);
    let grads = |y: &Tensor| Tensor::run_backward(&[(y * &g).sum(Kind::Float)], &[&xs, &weight], false, false);
    for (a, b) in grads(&ours).iter().zip(grads(&oracle).iter()) {
        assert!(max_diff(a, b) < 1e-5, "gradient differs by {}", max_diff(a, b));
    }
    // Extra columns come back multiplied by the weight matrix.
    let extra = wave(&[80, 2], 0.5);
    let (_, product) = conv_patches(&xs, &weight, 2, Some(&extra));
    let expected = weight.detach().reshape([16, 80]).mm(&extra);
    assert!(max_diff(&product, &expected) < 1e-5);
}
