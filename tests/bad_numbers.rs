//! Bad sizes and counts on every subcommand that takes them: each is refused with the message
//! `train` gives for that flag, naming the flag, and never with a panic (exit status 101).

mod common;

use std::process::Command;

/// Runs `ugatit args`; returns (exit code, stderr).
fn ugatit(args: &[String]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ugatit")).args(args).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_sizes_and_counts_are_refused_alike() {
    let dir = common::scratch("bad-numbers");
    let ckpt = common::tiny_checkpoint(&dir, 2).to_string_lossy().into_owned();
    let sample = common::sample("").to_string_lossy().into_owned();
    let input = format!("{sample}/testA");
    let out = dir.join("out").to_string_lossy().into_owned();
    let results = dir.join("results").to_string_lossy().into_owned();
    // The subcommands, with what each needs besides the flag under test.
    let commands: Vec<(&str, Vec<String>)> = vec![
        ("train", vec!["train".into(), "--dataset".into(), sample.clone(), "--result-dir".into(), results.clone()]),
        ("summary", vec!["summary".into()]),
        ("bench", vec!["bench".into(), "--warmup".into(), "0".into()]),
        ("translate", vec!["translate".into(), "--checkpoint".into(), ckpt.clone(), "--out".into(), out, input]),
        ("test", vec!["test".into(), "--checkpoint".into(), ckpt.clone(), "--dataset".into(), sample.clone()]),
        (
            "eval",
            vec![
                "eval".into(),
                "--real-target".into(),
                format!("{sample}/testB"),
                "--fake".into(),
                format!("{sample}/testA"),
            ],
        ),
    ];
    // (flag, value, what the message must say, the subcommands that have the flag)
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "--img-size",
            "0",
            "--img-size 0 must be a multiple of 4 and at least 16",
            &["train", "summary", "bench", "translate", "test"],
        ),
        (
            "--img-size",
            "30",
            "--img-size 30 must be a multiple of 4 and at least 16",
            &["train", "summary", "bench", "translate", "test"],
        ),
        (
            "--img-size",
            "-8",
            "--img-size -8 must be a multiple of 4 and at least 16",
            &["train", "summary", "bench", "translate", "test"],
        ),
        ("--ch", "0", "--ch must be at least 1 (got 0)", &["train", "summary", "bench"]),
        ("--n-res", "-1", "--n-res must be at least 1 (got -1)", &["train", "summary", "bench"]),
        ("--n-dis", "3", "--n-dis 3 is too small", &["train", "summary", "bench"]),
        ("--batch-size", "0", "--batch-size must be at least 1 (got 0)", &["train", "bench"]),
        ("--batch-size", "0", "0 is not in 1..", &["translate", "eval"]),
        ("--iters", "0", "0 is not in 1..", &["bench"]),
        ("--max-block-size", "0", "0 is not in 1..", &["eval"]),
        ("--lr", "nan", "--lr must be a finite number of at least 0 (got NaN)", &["train"]),
        ("--lr", "inf", "--lr must be a finite number of at least 0 (got inf)", &["train"]),
        ("--lr", "-1", "--lr must be a finite number of at least 0 (got -1)", &["train"]),
        ("--weight-decay", "-1", "--weight-decay must be a finite number of at least 0 (got -1)", &["train"]),
        ("--cam-weight", "-5", "--cam-weight must be a finite number of at least 0 (got -5)", &["train"]),
    ];
    for (flag, value, message, names) in cases {
        for name in *names {
            let (_, base) = commands.iter().find(|(n, _)| n == name).unwrap();
            let mut args = base.clone();
            args.extend([flag.to_string(), value.to_string()]);
            let (code, stderr) = ugatit(&args);
            assert!(code.is_some_and(|c| c != 0 && c != 101), "{name} {flag} {value}: exit {code:?}\n{stderr}");
            assert!(stderr.contains(message), "{name} {flag} {value}: expected {message:?} in\n{stderr}");
        }
    }
    assert!(!dir.join("results").exists(), "a refused train created its result folder");
    let _ = std::fs::remove_dir_all(dir);
}
