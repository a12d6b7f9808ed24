//! The other subcommands through the binary when things go wrong: inputs are never overwritten,
//! links are followed once, outputs that cannot be written are named once, bad files say what
//! is wrong with them, and nothing ends in a panic.

mod common;

use common::{sample, scratch};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn ugatit(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ugatit")).args(args).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$(std::ffi::OsStr::new(&$a)),*] };
}

fn refused((code, stderr): (Option<i32>, String), needle: &str) -> String {
    assert!(code.is_some_and(|c| c != 0 && c != 101), "exit {code:?}: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in:\n{stderr}");
    stderr
}

#[test]
fn translate_never_writes_over_its_input() {
    let dir = scratch("cli-guards-same");
    let ckpt = common::tiny_checkpoint(&dir, 2);
    let same = dir.join("same");
    std::fs::create_dir_all(&same).unwrap();
    let photo = same.join("b.png");
    std::fs::copy(sample("testB/0000.jpg"), &photo).unwrap();
    let before = std::fs::read(&photo).unwrap();
    let stderr = refused(ugatit(args!["translate", "--checkpoint", ckpt, "--out", same, photo]), "over the input");
    assert!(stderr.contains("b.png") && stderr.matches("error").count() == 1, "{stderr}");
    // The same folder as input and output is refused too.
    refused(ugatit(args!["translate", "--checkpoint", ckpt, "--out", same, same]), "choose another --out");
    assert_eq!(std::fs::read(&photo).unwrap(), before, "the input changed");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn translate_follows_a_link_loop_once() {
    let dir = scratch("cli-guards-loop");
    let ckpt = common::tiny_checkpoint(&dir, 2);
    let inputs = dir.join("in");
    std::fs::create_dir_all(inputs.join("sub")).unwrap();
    std::fs::copy(sample("testA/female_10328.jpg"), inputs.join("sub/a.jpg")).unwrap();
    std::os::unix::fs::symlink(&inputs, inputs.join("sub/back")).unwrap();
    let out = dir.join("out");
    let (code, stderr) = ugatit(args!["translate", "--checkpoint", ckpt, "--out", out, inputs]);
    assert_eq!(code, Some(0), "{stderr}");
    let written: Vec<_> = walk(&out);
    assert_eq!(written, [out.join("sub/a.png")], "each image once");
    let _ = std::fs::remove_dir_all(dir);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn translate_names_empty_inputs_and_bad_outputs_once() {
    let dir = scratch("cli-guards-outputs");
    let ckpt = common::tiny_checkpoint(&dir, 2);
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = dir.join("out");
    refused(ugatit(args!["translate", "--checkpoint", ckpt, "--out", out, empty]), "no input files");
    let file = dir.join("a_file");
    std::fs::write(&file, b"x").unwrap();
    let stderr = refused(ugatit(args!["translate", "--checkpoint", ckpt, "--out", file, sample("testA")]), "is a file");
    assert_eq!(stderr.matches("error").count(), 1, "{stderr}");
    let stderr = refused(
        ugatit(args!["translate", "--checkpoint", ckpt, "--img-size", "0", "--out", out, sample("testA")]),
        "--img-size 0",
    );
    assert_eq!(stderr.matches("error").count(), 1, "one error, not one per image: {stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_closed_pipe_ends_translate_without_a_panic() {
    let dir = scratch("cli-guards-pipe");
    let ckpt = common::tiny_checkpoint(&dir, 2);
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    // Bad files, so that errors are printed one per file.
    for i in 0..50 {
        std::fs::write(inputs.join(format!("bad{i:02}.png")), b"not an image").unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_ugatit"))
        .args([std::ffi::OsStr::new("translate"), "--checkpoint".as_ref(), ckpt.as_os_str()])
        .args([std::ffi::OsStr::new("--out"), dir.join("out").as_os_str(), inputs.as_os_str()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut first).unwrap();
    let status = child.wait().unwrap();
    assert_ne!(status.code(), Some(101), "panicked after the pipe closed");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn convert_and_truncated_files_say_what_is_wrong() {
    let dir = scratch("cli-guards-convert");
    let ckpt = common::tiny_checkpoint(&dir, 2);
    let folder = dir.join("folder");
    std::fs::create_dir_all(&folder).unwrap();
    refused(ugatit(args!["convert", ckpt, folder]), "the output must be a file path");
    refused(ugatit(args!["convert", ckpt, ckpt]), "the output is the input");
    let bytes = std::fs::read(&ckpt).unwrap();
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let expected = format!("describes {} bytes, the file has {}", bytes.len(), bytes.len() / 2);
    let stderr =
        refused(ugatit(args!["translate", "--checkpoint", cut, "--out", folder, sample("testA")]), "truncated");
    assert!(stderr.contains(&expected), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn eval_refuses_a_fake_folder_with_stale_files() {
    let dir = scratch("cli-guards-eval");
    let ckpt = common::tiny_checkpoint(&dir, 2);
    let fake = dir.join("fake");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::copy(sample("testB/0000.jpg"), fake.join("old.png")).unwrap();
    let dataset = sample("");
    let stderr = refused(
        ugatit(args!["eval", "--checkpoint", ckpt, "--dataset", dataset, "--img-size", "32", "--fake", fake]),
        "already holds 1 file(s)",
    );
    assert!(stderr.contains(&fake.display().to_string()), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn every_flag_has_help_and_booleans_take_values() {
    use clap::CommandFactory;
    let command = ugatit::cli::Cli::command();
    for sub in command.get_subcommands() {
        for arg in sub.get_arguments() {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(!help.is_empty(), "{} --{} has no help", sub.get_name(), arg.get_id());
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_ugatit")).args(["train", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--iteration <N>", "--batch-size <N>", "--lr <X>", "--ch <N>", "--n-res <N>"] {
        let line = help.lines().find(|l| l.contains(flag)).unwrap_or_else(|| panic!("no {flag} in\n{help}"));
        assert!(line.contains("[default: "), "{line}");
    }
    let (code, stderr) = ugatit(args!["summary", "--light", "true", "--ch", "2", "--img-size", "32", "--n-dis", "4"]);
    assert_eq!(code, Some(0), "{stderr}");
}
