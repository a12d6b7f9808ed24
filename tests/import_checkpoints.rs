//! Checkpoints written by UGATIT-pytorch-style `torch.save` and by PaddleGAN, imported with
//! `io::checkpoint::read`, loaded into our networks, must reproduce the framework's own eval-mode
//! outputs (tests/fixtures/checkpoints, see tools/oracle/make_checkpoint_fixtures.py).

mod common;

use common::{assert_close, Fixture};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Tensor};
use ugatit::io::checkpoint::{convert, NETWORKS};

fn import_checkpoint(path: &std::path::Path) -> anyhow::Result<std::collections::BTreeMap<String, tch::Tensor>> {
    Ok(ugatit::io::checkpoint::read(path)?.tensors)
}
use ugatit::io::safetensors::copy_into;
use ugatit::model::{discriminator, generator, Discriminator, ResnetGenerator};

const TOL: f64 = 1e-4;

fn path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoints").join(name)
}

fn import(name: &str) -> BTreeMap<String, Tensor> {
    import_checkpoint(&path(name)).unwrap_or_else(|e| panic!("{e:#}"))
}

struct Sizes {
    ngf: i64,
    n_res: i64,
    img_size: i64,
    light: bool,
    ndf: i64,
}

fn sizes(fx: &Fixture) -> Sizes {
    Sizes {
        ngf: fx.meta_i64("ngf"),
        n_res: fx.meta_i64("n_blocks"),
        img_size: fx.meta_i64("img_size"),
        light: fx.meta_bool("light"),
        ndf: fx.meta_i64("ndf"),
    }
}

/// Loads network `net` from `tensors` and compares its outputs with the fixture's.
fn check_network(tensors: &BTreeMap<String, Tensor>, fx: &Fixture, net: &str, s: &Sizes) {
    let vs = VarStore::new(Device::Cpu);
    let prefix = format!("{net}.");
    if net.starts_with("gen") {
        let g = ResnetGenerator::new(
            &vs.root(),
            generator::Config { ngf: s.ngf, n_res: s.n_res, img_size: s.img_size, light: s.light },
        );
        copy_into(tensors, &prefix, &vs, &fx.path).unwrap_or_else(|e| panic!("{net}: {e:#}"));
        let out = tch::no_grad(|| g.forward(fx.get("input.gen")));
        assert_close(&format!("{net}.image"), &out.image, fx.get(&format!("{net}.image")), TOL);
        assert_close(&format!("{net}.cam_logit"), &out.cam_logit, fx.get(&format!("{net}.cam_logit")), TOL);
        assert_close(&format!("{net}.heatmap"), &out.heatmap, fx.get(&format!("{net}.heatmap")), TOL);
    } else {
        let config = if net.starts_with("disG") {
            discriminator::Config::global(s.ndf)
        } else {
            discriminator::Config::local(s.ndf)
        };
        let d = Discriminator::new(&vs.root(), config);
        copy_into(tensors, &prefix, &vs, &fx.path).unwrap_or_else(|e| panic!("{net}: {e:#}"));
        let out = tch::no_grad(|| d.forward_t(fx.get("input.dis"), false));
        assert_close(&format!("{net}.logit"), &out.logit, fx.get(&format!("{net}.logit")), TOL);
        assert_close(&format!("{net}.cam_logit"), &out.cam_logit, fx.get(&format!("{net}.cam_logit")), TOL);
        assert_close(&format!("{net}.heatmap"), &out.heatmap, fx.get(&format!("{net}.heatmap")), TOL);
    }
}

#[test]
fn ugatit_pytorch_checkpoint_reproduces_torch_outputs() {
    let tensors = import("torch_ugatit.pt");
    let fx = Fixture::load("checkpoints/torch_ugatit.expected.safetensors");
    let s = sizes(&fx);
    for net in NETWORKS {
        assert!(tensors.keys().any(|k| k.starts_with(&format!("{net}."))), "{net}");
        check_network(&tensors, &fx, net, &s);
    }
    assert!(tensors.contains_key("disGA.model.1.weight_orig"));
    assert!(tensors.contains_key("disGA.gap_fc.weight_u"));
}

#[test]
fn paddlegan_bare_generator_reproduces_paddle_outputs() {
    let tensors = import("paddle_gen_light.pdparams");
    assert!(tensors.keys().all(|k| k.starts_with("genA2B.")));
    // The frozen InstanceNorm entries and the name table are gone.
    assert!(!tensors.keys().any(|k| k.ends_with(".scale") || k.contains("@@")));
    let fx = Fixture::load("checkpoints/paddle_gen_light.expected.safetensors");
    check_network(&tensors, &fx, "genA2B", &sizes(&fx));
}

#[test]
fn paddlegan_trainer_checkpoint_reproduces_paddle_outputs() {
    let tensors = import("paddle_trainer_p2.pdparams");
    // Optimizer state and the epoch counter are skipped.
    assert!(tensors.keys().all(|k| NETWORKS.iter().any(|n| k.starts_with(&format!("{n}.")))));
    let fx = Fixture::load("checkpoints/paddle_trainer_p2.expected.safetensors");
    let s = sizes(&fx);
    for net in NETWORKS {
        check_network(&tensors, &fx, net, &s);
    }
    // A Linear weight is [out, in] after the import: gap_fc of D has one output.
    let w = &tensors["disGA.gap_fc.weight_orig"];
    assert_eq!(w.size()[0], 1);
}

#[test]
fn paddle_nested_tuple_layout_matches_trainer_layout() {
    let a = import("paddle_nested_tuples.pdparams");
    let b = import("paddle_trainer_p2.pdparams");
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, t) in &a {
        assert!(t.equal(&b[k]), "{k}");
    }
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ugatit-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn convert_round_trips_through_safetensors() {
    for name in ["torch_ugatit.pt", "paddle_trainer_p2.pdparams"] {
        let out = tmp(&format!("{name}.safetensors"));
        let n = convert(&path(name), &out).unwrap_or_else(|e| panic!("{e:#}"));
        let original = import(name);
        assert_eq!(n, original.len());
        let back = import_checkpoint(&out).unwrap();
        assert_eq!(back.keys().collect::<Vec<_>>(), original.keys().collect::<Vec<_>>());
        for (k, t) in &original {
            assert!(t.equal(&back[k]), "{name}: {k}");
        }
        let _ = std::fs::remove_file(&out);
    }
}

#[test]
fn bare_state_dicts_are_classified_by_their_keys() {
    let all = import("torch_ugatit.pt");
    let strip = |net: &str| -> Vec<(String, Tensor)> {
        all.iter()
            .filter_map(|(k, t)| k.strip_prefix(&format!("{net}.")).map(|s| (s.to_string(), t.shallow_clone())))
            .collect()
    };
    // A bare generator becomes genA2B.
    let g = tmp("bare_gen.safetensors");
    ugatit::io::safetensors::write(&g, &strip("genB2A"), &BTreeMap::new()).unwrap();
    let back = import_checkpoint(&g).unwrap();
    assert!(back.keys().all(|k| k.starts_with("genA2B.")));
    assert!(back["genA2B.UpBlock2.3.rho"].equal(&all["genB2A.UpBlock2.3.rho"]));
    // A bare discriminator cannot be placed.
    let d = tmp("bare_dis.safetensors");
    ugatit::io::safetensors::write(&d, &strip("disLA"), &BTreeMap::new()).unwrap();
    let err = format!("{:#}", import_checkpoint(&d).unwrap_err());
    assert!(err.contains("bare discriminator"), "{err}");
    assert!(err.contains("bare_dis.safetensors"), "{err}");
    let _ = (std::fs::remove_file(g), std::fs::remove_file(d));
}

#[test]
fn translating_reads_only_the_generators() {
    use ugatit::io::checkpoint::{read, read_networks, Networks};
    let all = import("torch_ugatit.pt");
    // A training checkpoint's layout: the six networks and the optimisers' state.
    let mut entries: Vec<(String, Tensor)> = all.iter().map(|(k, t)| (k.clone(), t.shallow_clone())).collect();
    entries.push(("optimD.exp_avg.0".to_string(), Tensor::ones([4], (tch::Kind::Float, Device::Cpu))));
    let file = tmp("training_layout.safetensors");
    ugatit::io::safetensors::write(&file, &entries, &BTreeMap::new()).unwrap();
    let generators = read_networks(&file, Networks::Generators).unwrap_or_else(|e| panic!("{e:#}"));
    let expected: Vec<&String> = all.keys().filter(|k| k.starts_with("genA2B.") || k.starts_with("genB2A.")).collect();
    assert!(!expected.is_empty() && expected.len() < all.len());
    assert_eq!(generators.tensors.keys().collect::<Vec<_>>(), expected);
    for (k, t) in &generators.tensors {
        assert!(t.equal(&all[k]), "{k}");
    }
    // Everything but the optimisers' state when all networks are asked for, as before.
    let whole = read(&file).unwrap();
    assert_eq!(whole.tensors.keys().collect::<Vec<_>>(), all.keys().collect::<Vec<_>>());
    // The same networks from a torch file (tests/import_zip_variants.rs: the others are never read).
    let torch = read_networks(&path("torch_ugatit.pt"), Networks::Generators).unwrap();
    assert_eq!(torch.tensors.keys().collect::<Vec<_>>(), expected);
    let _ = std::fs::remove_file(file);
}

#[test]
fn a_checkpoint_reads_from_a_pipe() {
    use ugatit::io::checkpoint::{read_networks, Networks};
    // `--checkpoint <(zcat model.pt.gz)`: a pipe cannot be memory-mapped, so it is read instead.
    let fifo = tmp("checkpoint.fifo");
    let _ = std::fs::remove_file(&fifo);
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let bytes = std::fs::read(path("torch_ugatit.pt")).unwrap();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(fifo, bytes).unwrap())
    };
    let from_pipe = read_networks(&fifo, Networks::Generators).unwrap_or_else(|e| panic!("{e:#}"));
    writer.join().unwrap();
    let from_file = read_networks(&path("torch_ugatit.pt"), Networks::Generators).unwrap();
    assert_eq!(from_pipe.tensors.keys().collect::<Vec<_>>(), from_file.tensors.keys().collect::<Vec<_>>());
    for (k, t) in &from_file.tensors {
        assert!(t.equal(&from_pipe.tensors[k]), "{k}");
    }
    let _ = std::fs::remove_file(fifo);
}
