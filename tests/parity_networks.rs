//! Parity of the networks with the references: forward outputs, the gradient of a fixed scalar loss
//! with respect to every parameter and the input, and the spectral-norm state after a train-mode
//! forward, compared with what UGATIT-pytorch-equivalent torch modules and PaddleGAN's own modules
//! computed on the same weights (fixtures from `tools/oracle/make_network_fixtures.py`).
//!
//! Tolerance: `max|ours − ref| ≤ 1e-4 · max(1, max|ref|)`, i.e. absolute for tensors of unit
//! scale and relative to the tensor's largest element for larger ones.

mod common;

use common::{assert_close, device, Fixture};
use tch::nn::VarStore;
use tch::Tensor;
use ugatit::model::{discriminator, generator, Discriminator, ResnetGenerator};

const TOL: f64 = 1e-4;
const REFERENCES: [&str; 2] = ["torch", "paddle"];

/// Loads the fixture's initial weights into `vs`.
fn load_params(fx: &Fixture, vs: &VarStore) {
    ugatit::io::safetensors::copy_into(&fx.tensors, "param.", vs, &fx.path).unwrap_or_else(|e| panic!("{e:#}"));
}

/// Σ_o sum(out_o · lossw_o) over the named outputs.
fn weighted_loss(fx: &Fixture, outputs: &[(&str, &Tensor)]) -> Tensor {
    let terms: Vec<Tensor> = outputs
        .iter()
        .map(|(name, t)| (*t * fx.get(&format!("lossw.{name}")).to_device(t.device())).sum(tch::Kind::Float))
        .collect();
    terms.into_iter().reduce(|a, b| a + b).unwrap()
}

fn check_outputs(fx: &Fixture, prefix: &str, outputs: &[(&str, &Tensor)]) {
    for reference in REFERENCES {
        for (name, t) in outputs {
            let key = format!("{reference}.{prefix}{name}");
            assert_close(&key, t, fx.get(&key), TOL);
        }
    }
}

fn check_grads(fx: &Fixture, vs: &VarStore, input: &Tensor) {
    let vars = vs.variables();
    let trainable: Vec<&str> = fx.keys_under("torch.grad.").filter(|k| *k != "input").collect();
    assert!(!trainable.is_empty());
    for reference in REFERENCES {
        for name in &trainable {
            let var = vars.get(*name).unwrap_or_else(|| panic!("model has no variable {name}"));
            let key = format!("{reference}.grad.{name}");
            assert_close(&key, &var.grad(), fx.get(&key), TOL);
        }
        assert_close(
            &format!("{reference}.grad.input"),
            &input.grad(),
            fx.get(&format!("{reference}.grad.input")),
            TOL,
        );
    }
    // Every trainable variable of ours has a reference gradient.
    let ours = vs.trainable_variables().len();
    assert_eq!(ours, trainable.len(), "trainable variables: ours {ours}, fixture {}", trainable.len());
}

fn generator_case(rel: &str) {
    let fx = Fixture::load(rel);
    let config = generator::Config {
        ngf: fx.meta_i64("ngf"),
        n_res: fx.meta_i64("n_blocks"),
        img_size: fx.meta_i64("img_size"),
        light: fx.meta_bool("light"),
    };
    let vs = VarStore::new(device());
    let net = ResnetGenerator::new(&vs.root(), config);
    load_params(&fx, &vs);
    let input = fx.get("input").to_device(vs.device()).set_requires_grad(true);
    let out = net.forward(&input);
    let outputs = [("image", &out.image), ("cam_logit", &out.cam_logit), ("heatmap", &out.heatmap)];
    check_outputs(&fx, "out.", &outputs);
    weighted_loss(&fx, &outputs).backward();
    check_grads(&fx, &vs, &input);
}

fn discriminator_case(rel: &str) {
    let fx = Fixture::load(rel);
    let config = discriminator::Config { ndf: fx.meta_i64("ndf"), n_layers: fx.meta_i64("n_layers") };
    let vs = VarStore::new(device());
    let net = Discriminator::new(&vs.root(), config);
    load_params(&fx, &vs);
    let input = fx.get("input").to_device(vs.device()).set_requires_grad(true);

    // Eval mode first: no power iteration, the stored u, v are used as they are.
    let eval = tch::no_grad(|| net.forward_t(&input, false));
    check_outputs(
        &fx,
        "eval.out.",
        &[("logit", &eval.logit), ("cam_logit", &eval.cam_logit), ("heatmap", &eval.heatmap)],
    );
    let vars = vs.variables();
    for name in fx.keys_under("param.").filter(|k| k.ends_with("weight_u") || k.ends_with("weight_v")) {
        assert_close(&format!("{name} unchanged by eval"), &vars[name], fx.get(&format!("param.{name}")), 0.0);
    }

    let out = net.forward_t(&input, true);
    let outputs = [("logit", &out.logit), ("cam_logit", &out.cam_logit), ("heatmap", &out.heatmap)];
    check_outputs(&fx, "out.", &outputs);
    for reference in REFERENCES {
        let prefix = format!("{reference}.after.");
        let names: Vec<&str> = fx.keys_under(&prefix).collect();
        assert!(!names.is_empty(), "fixture lacks {prefix}*");
        for name in names {
            let key = format!("{prefix}{name}");
            assert_close(&key, &vars[name], fx.get(&key), TOL);
        }
    }
    weighted_loss(&fx, &outputs).backward();
    check_grads(&fx, &vs, &input);
}

#[test]
fn generator_light_matches_references() {
    generator_case("networks/gen_light.safetensors");
}

#[test]
fn generator_full_matches_references() {
    generator_case("networks/gen_full.safetensors");
}

#[test]
fn global_discriminator_matches_references() {
    discriminator_case("networks/dis_global.safetensors");
}

#[test]
fn local_discriminator_matches_references() {
    discriminator_case("networks/dis_local.safetensors");
}
