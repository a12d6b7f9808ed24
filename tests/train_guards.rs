//! `ugatit train` through the binary when things go wrong: flat images, non-finite values, two
//! runs in one folder, a folder holding another run, resume edge cases, stale temporary files,
//! signals and the lines a non-terminal sees. Good inputs are covered by `train_resume.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A tiny training command on `dataset` into `results`.
fn train(dataset: &Path, results: &Path, iteration: u32, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ugatit"));
    cmd.arg("train").arg("--dataset").arg(dataset).arg("--result-dir").arg(results);
    cmd.args(["--iteration", &iteration.to_string(), "--img-size", "32", "--ch", "4", "--n-res", "1"]);
    cmd.args(["--n-dis", "4", "--light", "--print-freq", "2", "--save-freq", "2", "--save-latest-freq", "1"]);
    cmd.args(extra);
    cmd
}

fn run(cmd: &mut Command) -> (Option<i32>, String) {
    let out: Output = cmd.output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn ok(cmd: &mut Command) -> String {
    let (code, stderr) = run(cmd);
    assert_eq!(code, Some(0), "{stderr}");
    stderr
}

fn refused(cmd: &mut Command, needle: &str) -> String {
    let (code, stderr) = run(cmd);
    assert!(code.is_some_and(|c| c != 0 && c != 101), "exit {code:?}: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in:\n{stderr}");
    stderr
}

/// A copy of the bundled sample.
fn dataset_copy(dir: &Path) -> PathBuf {
    let root = dir.join("data");
    for split in ["trainA", "trainB", "testA", "testB"] {
        std::fs::create_dir_all(root.join(split)).unwrap();
        for entry in std::fs::read_dir(common::sample("").join(split)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, root.join(split).join(path.file_name().unwrap())).unwrap();
        }
    }
    root
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path.to_string_lossy().into_owned());
        }
    }
    out.sort();
    out
}

fn wait_for(path: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !path.exists() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before writing {}", path.display());
        assert!(Instant::now() < deadline, "no {} after 120 s", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn flat_images_are_refused_or_skipped_and_translated_normally() {
    let dir = common::scratch("guards-flat");
    let data = dataset_copy(&dir);
    let flat = data.join("trainA/flat.png");
    image::RgbImage::from_pixel(64, 64, image::Rgb([200, 120, 40])).save(&flat).unwrap();
    let results = dir.join("results");
    let stderr = refused(&mut train(&data, &results, 2, &[]), "flat.png: flat image");
    assert!(stderr.contains("--skip-bad-images"), "{stderr}");
    assert!(!results.exists(), "a refused run created {}", results.display());

    let stderr = ok(&mut train(&data, &results, 2, &["--skip-bad-images"]));
    assert!(stderr.contains("skipping") && stderr.contains("flat.png"), "{stderr}");
    let csv = std::fs::read_to_string(results.join("data/losses.csv")).unwrap();
    assert!(!csv.to_lowercase().contains("nan"), "{csv}");

    // Translation has no instance-norm backward: a flat image translates like any other.
    let ckpt = results.join("data/model/latest.safetensors");
    let out = dir.join("out");
    let mut translate = Command::new(env!("CARGO_BIN_EXE_ugatit"));
    translate.arg("translate").arg("--checkpoint").arg(&ckpt).arg("--out").arg(&out).arg(&flat);
    ok(&mut translate);
    assert!(out.join("flat.png").is_file());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn non_finite_losses_stop_the_run_and_keep_the_good_checkpoint() {
    let dir = common::scratch("guards-nan");
    let results = dir.join("results");
    ok(&mut train(&common::sample(""), &results, 2, &[]));
    let latest = results.join("sample/model/latest.safetensors");
    let good = std::fs::read(&latest).unwrap();
    // An absurd learning rate is finite, so it is accepted, and diverges at once.
    let stderr =
        refused(&mut train(&common::sample(""), &results, 4, &["--resume", "--lr", "1e38"]), "step 3: the loss term");
    assert!(stderr.contains("diverged") && stderr.contains("(step 2)"), "{stderr}");
    assert_eq!(std::fs::read(&latest).unwrap(), good, "the good checkpoint was replaced");
    assert!(!results.join("sample/model/sample_params_0000004.safetensors").exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn two_runs_in_one_folder_are_refused_naming_the_holder() {
    let dir = common::scratch("guards-lock");
    let results = dir.join("results");
    let mut first = train(&common::sample(""), &results, 100_000, &[]).stderr(Stdio::null()).spawn().unwrap();
    wait_for(&results.join("sample/model/latest.safetensors"), &mut first);
    let holder = format!("process {}", first.id());
    refused(&mut train(&common::sample(""), &results, 2, &[]), &holder);
    refused(&mut train(&common::sample(""), &results, 100_000, &["--resume"]), &holder);
    refused(&mut train(&common::sample(""), &results, 2, &["--overwrite"]), &holder);
    first.kill().unwrap();
    first.wait().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_folder_holding_a_run_needs_resume_or_overwrite() {
    let dir = common::scratch("guards-holds");
    let results = dir.join("results");
    let run_dir = results.join("sample");
    ok(&mut train(&common::sample(""), &results, 4, &[]));
    assert!(run_dir.join("model/sample_params_0000004.safetensors").is_file());
    let before = files_under(&run_dir);
    let config = std::fs::read(run_dir.join("config.toml")).unwrap();
    let stderr = refused(&mut train(&common::sample(""), &results, 2, &[]), "holds an earlier run");
    assert!(stderr.contains("--resume") && stderr.contains("--overwrite"), "{stderr}");
    assert_eq!(files_under(&run_dir), before, "a refused run changed the folder");
    assert_eq!(std::fs::read(run_dir.join("config.toml")).unwrap(), config);

    ok(&mut train(&common::sample(""), &results, 1, &["--overwrite"]));
    let after = files_under(&run_dir);
    assert!(!after.iter().any(|f| f.contains("params_0000004") || f.contains("_0000002.png")), "{after:?}");
    let csv = std::fs::read_to_string(run_dir.join("losses.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "only the new run's row: {csv}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn resume_appends_to_the_log_and_refuses_a_smaller_iteration() {
    let dir = common::scratch("guards-resume");
    let results = dir.join("results");
    let run_dir = results.join("sample");
    ok(&mut train(&common::sample(""), &results, 2, &[]));
    let log = std::fs::read_to_string(run_dir.join("losses.csv")).unwrap();
    // A killed save's leftovers are removed at the next start.
    let stale = run_dir.join("model/.latest.safetensors.99999.0.tmp");
    std::fs::write(&stale, vec![0u8; 1024]).unwrap();
    let stderr = ok(&mut train(&common::sample(""), &results, 3, &["--resume"]));
    assert!(stderr.contains("removed 1 temporary file"), "{stderr}");
    assert!(!stale.exists());
    let resumed = std::fs::read_to_string(run_dir.join("losses.csv")).unwrap();
    assert!(resumed.starts_with(&log), "rows before the resume changed:\n{log}\n---\n{resumed}");
    assert_eq!(resumed.lines().count(), 4);
    // The learning rate column has no float noise.
    let lr = resumed.lines().nth(1).unwrap().split(',').nth(1).unwrap();
    assert_eq!(lr, "1.000000e-4");

    let files = files_under(&run_dir);
    let config = std::fs::read(run_dir.join("config.toml")).unwrap();
    let stderr = refused(&mut train(&common::sample(""), &results, 2, &["--resume"]), "past --iteration 2");
    assert!(stderr.contains("--iteration 4"), "{stderr}");
    assert_eq!(std::fs::read(run_dir.join("config.toml")).unwrap(), config, "config.toml was rewritten");
    assert_eq!(files_under(&run_dir), files);

    let flags = ["--resume", "--batch-size", "2", "--seed", "3"];
    let stderr =
        refused(&mut train(&common::sample(""), &results, 5, &flags), "--batch-size 1 (checkpoint) vs 2 (given)");
    assert!(stderr.contains("--seed 0 (checkpoint) vs 3 (given)") && !stderr.contains("--n-res"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_failed_start_creates_nothing() {
    let dir = common::scratch("guards-nothing");
    let data = dataset_copy(&dir);
    std::fs::write(data.join("trainB/broken.png"), b"\x89PNG\r\n\x1a\n cut").unwrap();
    let results = dir.join("results");
    refused(&mut train(&data, &results, 2, &[]), "broken.png");
    refused(&mut train(&common::sample(""), &results, 2, &["--lr", "nan"]), "--lr must be a finite number");
    assert!(!results.exists(), "a failed start created {}", results.display());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sigterm_saves_and_exits_143() {
    let dir = common::scratch("guards-sigterm");
    let results = dir.join("results");
    let mut child = train(&common::sample(""), &results, 100_000, &[]).stderr(Stdio::null()).spawn().unwrap();
    wait_for(&results.join("sample/config.toml"), &mut child);
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    assert!(results.join("sample/model/latest.safetensors").is_file());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_short_run_says_when_outputs_appear_and_how_it_ended() {
    let dir = common::scratch("guards-short");
    // `--dataset .` is named after the folder itself.
    let data = dataset_copy(&dir);
    let results = dir.join("results");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ugatit"));
    cmd.current_dir(&data).args(["train", "--dataset", ".", "--result-dir"]).arg(&results);
    cmd.args(["--iteration", "3", "--img-size", "32", "--ch", "4", "--n-res", "1", "--n-dis", "4", "--light"]);
    let stderr = ok(&mut cmd);
    assert!(stderr.contains("(first at step 3)"), "{stderr}");
    assert!(stderr.contains("finished step 3") && stderr.contains("d_loss"), "{stderr}");
    assert!(stderr.contains("[    3/    3]"), "one line per print_freq and at the end:\n{stderr}");
    let run_dir = results.join("data");
    assert!(run_dir.join("img/A2B_0000003.png").is_file(), "the last step writes a grid");
    assert!(run_dir.join("losses.png").is_file());
    let _ = std::fs::remove_dir_all(dir);
}
