//! `train --eval-freq`: KID rows at the right steps with a best checkpoint, bitwise the same
//! training as without it, a resumed run continuing the file, and missing Inception weights
//! refused before anything is written. Skipped, with a message, without the weights.

mod common;

use std::path::Path;
use std::process::Command;

fn train(results: &Path, iteration: u32, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ugatit"));
    cmd.arg("train").arg("--dataset").arg(common::sample("")).arg("--result-dir").arg(results);
    cmd.args(["--iteration", &iteration.to_string(), "--img-size", "32", "--ch", "4", "--n-res", "1", "--n-dis", "4"]);
    cmd.args(["--light", "--seed", "3", "--save-latest-freq", "2"]);
    cmd.args(extra);
    cmd
}

fn ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn rows(run: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    text.lines().skip(1).map(|l| l.split(',').map(str::to_string).collect()).collect()
}

#[test]
fn eval_freq_scores_the_test_split_without_changing_training() {
    if ugatit::metrics::weights::locate(None).is_err() {
        eprintln!("SKIPPED: Inception weights not found (see tests/metrics_inception.rs)");
        return;
    }
    let dir = common::scratch("train-eval");
    let (with, without) = (dir.join("with"), dir.join("without"));
    ok(&mut train(&with, 4, &["--eval-freq", "2"]));
    ok(&mut train(&without, 4, &[]));
    let run = with.join("sample");
    let steps: Vec<String> = rows(&run).iter().map(|r| r[0].clone()).collect();
    assert_eq!(steps, ["2", "4"]);
    for row in rows(&run) {
        for (i, v) in row.iter().enumerate().skip(1) {
            let v: f64 = v.parse().unwrap();
            // The sample has 4 test images: one KID block, so no std (NaN); the KIDs are finite.
            assert!(v.is_finite() || [2, 4].contains(&i), "column {i} = {v}");
        }
    }
    assert!(run.join("model/best.safetensors").is_file() && run.join("metrics.png").is_file());
    let (a, b) = (
        ugatit::io::safetensors::read(&run.join("model/latest.safetensors")).unwrap(),
        ugatit::io::safetensors::read(&without.join("sample/model/latest.safetensors")).unwrap(),
    );
    for (name, t) in &a.tensors {
        assert!(t.equal(&b.tensors[name]), "{name} differs with --eval-freq");
    }

    // The last row scores the step-4 checkpoint as `ugatit eval` does (same translation settings).
    let json = dir.join("eval.json");
    let mut eval = Command::new(env!("CARGO_BIN_EXE_ugatit"));
    eval.arg("eval").arg("--checkpoint").arg(run.join("model/latest.safetensors"));
    eval.arg("--dataset").arg(common::sample("")).args(["--img-size", "32", "--no-cache", "--json"]).arg(&json);
    ok(&mut eval);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let in_training: f64 = rows(&run)[1][1].parse().unwrap();
    let by_eval = report["kid_x100"].as_f64().unwrap();
    assert!((in_training - by_eval).abs() <= 1e-5 * by_eval.abs().max(1.0), "{in_training} vs ugatit eval's {by_eval}");

    let before = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    ok(&mut train(&with, 6, &["--eval-freq", "2", "--resume"]));
    let after = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert!(after.starts_with(&before), "the resumed run rewrote earlier rows");
    assert_eq!(rows(&run).len(), 3);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn missing_weights_are_an_error_at_start() {
    let dir = common::scratch("train-eval-missing");
    let empty = dir.join("empty-cache");
    std::fs::create_dir_all(&empty).unwrap();
    let out = train(&dir.join("results"), 4, &["--eval-freq", "2"])
        .env("UGATIT_CACHE_DIR", &empty)
        .env_remove("UGATIT_INCEPTION")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--eval-freq needs the Inception weights"), "{stderr}");
    assert!(!dir.join("results").exists(), "a refused run created its folder");
    let _ = std::fs::remove_dir_all(dir);
}
