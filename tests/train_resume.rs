//! End-to-end training through the binary on the bundled sample at a tiny size: outputs, and exact
//! resume after SIGKILL and after SIGINT (parameters and optimiser state bitwise identical to an
//! uninterrupted run of the same seed).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use ugatit::io::safetensors::read;

const ITERATIONS: i64 = 30;

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sample")
}

fn train_cmd(result_dir: &Path, extra: &[&str]) -> Command {
    train_cmd_n(result_dir, ITERATIONS, 15, extra)
}

fn train_cmd_n(result_dir: &Path, iteration: i64, save_freq: i64, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ugatit"));
    cmd.arg("train").arg("--dataset").arg(sample()).arg("--result-dir").arg(result_dir);
    let (iteration, save_freq) = (iteration.to_string(), save_freq.to_string());
    cmd.args(["--iteration", &iteration, "--img-size", "32", "--ch", "4", "--n-res", "1", "--n-dis", "4"]);
    cmd.args(["--light", "--print-freq", "10", "--save-freq", &save_freq, "--save-latest-freq", "5", "--seed", "7"]);
    cmd.args(extra);
    cmd
}

fn latest(result_dir: &Path) -> PathBuf {
    result_dir.join("sample/model/latest.safetensors")
}

fn run_to_end(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "training failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Waits until the latest checkpoint exists, then returns its step.
fn wait_for_checkpoint(child: &mut Child, path: &Path) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(info) = ugatit::train::checkpoint::info(path) {
            return info.step;
        }
        assert!(child.try_wait().unwrap().is_none(), "training exited before its first checkpoint");
        assert!(Instant::now() < deadline, "no checkpoint after 300 s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn assert_same_checkpoint(a: &Path, b: &Path) {
    let (a, b) = (read(a).unwrap(), read(b).unwrap());
    assert_eq!(a.metadata["step"], b.metadata["step"]);
    assert_eq!(a.tensors.len(), b.tensors.len());
    assert!(a.tensors.keys().any(|k| k.starts_with("optimD.")));
    for (name, t) in &a.tensors {
        assert!(t.equal(&b.tensors[name]), "{name} differs from the uninterrupted run");
    }
}

fn csv_steps(result_dir: &Path) -> Vec<i64> {
    let text = std::fs::read_to_string(result_dir.join("sample/losses.csv")).unwrap();
    text.lines().skip(1).map(|l| l.split(',').next().unwrap().parse().unwrap()).collect()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ugatit-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn interrupted_runs_resume_bit_for_bit() {
    let straight = tmp("straight");
    run_to_end(&mut train_cmd(&straight, &[]));
    let run_dir = straight.join("sample");
    for file in [
        "config.toml",
        "losses.png",
        "img/A2B_0000010.png",
        "img/B2A_0000030.png",
        "model/sample_params_0000015.safetensors",
    ] {
        assert!(run_dir.join(file).exists(), "{file} missing");
    }
    assert_eq!(csv_steps(&straight), (1..=ITERATIONS).collect::<Vec<_>>());

    // SIGKILL right after the first checkpoint, then resume.
    let killed = tmp("killed");
    let mut child = train_cmd(&killed, &[]).spawn().unwrap();
    let step = wait_for_checkpoint(&mut child, &latest(&killed));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(step < ITERATIONS, "the run finished before it could be killed");
    run_to_end(&mut train_cmd(&killed, &["--resume"]));
    assert_same_checkpoint(&latest(&straight), &latest(&killed));
    assert_eq!(csv_steps(&killed), (1..=ITERATIONS).collect::<Vec<_>>(), "loss log after resume");

    // SIGINT: saves where it stopped and exits with 130.
    let interrupted = tmp("sigint");
    let mut child = train_cmd(&interrupted, &[]).spawn().unwrap();
    wait_for_checkpoint(&mut child, &latest(&interrupted));
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "SIGINT exit status");
    let saved = ugatit::train::checkpoint::info(&latest(&interrupted)).unwrap().step;
    assert_eq!(*csv_steps(&interrupted).last().unwrap(), saved, "checkpoint is at the last logged step");
    run_to_end(&mut train_cmd(&interrupted, &["--resume"]));
    assert_same_checkpoint(&latest(&straight), &latest(&interrupted));

    for dir in [straight, killed, interrupted] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn too_small_image_names_the_sizes_that_work() {
    let dir = tmp("small");
    let out = Command::new(env!("CARGO_BIN_EXE_ugatit"))
        .arg("train")
        .arg("--dataset")
        .arg(sample())
        .arg("--result-dir")
        .arg(&dir)
        .args(["--img-size", "64"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--img-size 96 or more") && err.contains("--n-dis 5 or less"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn resume_without_checkpoint_is_an_error() {
    let dir = tmp("nockpt");
    let out = train_cmd(&dir, &["--resume"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no checkpoint at"));
}

#[test]
fn resume_from_imports_networks_and_reads_the_step_from_the_name() {
    assert_eq!(ugatit::train::run::step_in_name(Path::new("m/selfie2anime_params_0100000.pt")), Some(100_000));
    assert_eq!(ugatit::train::run::step_in_name(Path::new("latest.safetensors")), None);
    let first = tmp("import-src");
    run_to_end(&mut train_cmd_n(&first, 2, 2, &[]));
    // A numbered checkpoint of step 2: the imported run continues at step 3.
    let numbered = first.join("sample/model/sample_params_0000002.safetensors");
    let second = tmp("import-dst");
    let out = train_cmd_n(&second, 4, 2, &["--resume-from", numbered.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(csv_steps(&second), vec![3, 4]);
    // Networks of another width are refused with the file and tensor named.
    let third = tmp("import-bad");
    let out = Command::new(env!("CARGO_BIN_EXE_ugatit"))
        .arg("train")
        .arg("--dataset")
        .arg(sample())
        .arg("--result-dir")
        .arg(&third)
        .args(["--img-size", "32", "--ch", "8", "--n-dis", "4", "--light", "--iteration", "3", "--resume-from"])
        .arg(&numbered)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("sample_params_0000002") && err.contains("has shape"), "{err}");
    for dir in [first, second, third] {
        let _ = std::fs::remove_dir_all(dir);
    }
}
