//! `ugatit translate` / `ugatit test` through the binary, and the architecture read off checkpoints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::Device;
use ugatit::io::safetensors::{named_variables, write};
use ugatit::model::generator::Config;
use ugatit::model::ugatit::{Config as ModelConfig, UGATIT};
use ugatit::translate::infer_config;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ugatit-translate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A tiny untrained six-network checkpoint.
fn checkpoint(dir: &Path, g: Config) -> PathBuf {
    let nets = UGATIT::new(ModelConfig::new(g), Device::Cpu);
    let path = dir.join("model.safetensors");
    write(&path, &named_variables("", &nets.vs), &BTreeMap::new()).unwrap();
    path
}

fn sample(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sample").join(rel)
}

fn ugatit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ugatit")).args(args).output().unwrap()
}

#[test]
fn architecture_is_read_off_the_shapes() {
    let dir = tmp("infer");
    for g in [
        Config { ngf: 4, n_res: 3, img_size: 64, light: true },
        Config { ngf: 8, n_res: 2, img_size: 32, light: false },
    ] {
        let path = checkpoint(&dir, g);
        let tensors = ugatit::io::checkpoint::read(&path).unwrap().tensors;
        // A light model's size is not in its shapes: the caller's value is kept.
        let inferred = infer_config(&tensors, "genB2A.", 64).unwrap();
        assert_eq!(inferred, g);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn translate_writes_results_and_reports_bad_files() {
    let dir = tmp("run");
    let ckpt = checkpoint(&dir, Config { ngf: 4, n_res: 1, img_size: 32, light: true });
    let inputs = dir.join("in");
    std::fs::create_dir_all(inputs.join("sub")).unwrap();
    std::fs::copy(sample("testA/female_10328.jpg"), inputs.join("a.jpg")).unwrap();
    std::fs::copy(sample("testB/0000.jpg"), inputs.join("sub/b.jpg")).unwrap(); // PNG bytes named .jpg
    std::fs::write(inputs.join("empty.jpg"), b"").unwrap();
    std::fs::write(inputs.join("notes.txt"), b"not an image").unwrap();
    let out = dir.join("out");
    let result = ugatit(&[
        "translate",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--img-size",
        "32",
        "--with-cam",
        "--keep-size",
        inputs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(result.status.code(), Some(1), "bad inputs make the exit status non-zero");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("empty.jpg") && stderr.contains("empty"), "{stderr}");
    assert!(stderr.contains("notes.txt") && stderr.contains("not an image"), "{stderr}");
    assert!(stderr.contains("2 input(s) failed"), "{stderr}");
    for file in ["a.png", "a_cam.png", "sub/b.png", "sub/b_cam.png"] {
        let img = image::open(out.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!((img.width(), img.height()), (256, 256), "{file} keeps its input's size");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn full_model_refuses_another_size_and_test_writes_grids() {
    let dir = tmp("test");
    let ckpt = checkpoint(&dir, Config { ngf: 4, n_res: 1, img_size: 32, light: false });
    let ckpt = ckpt.to_str().unwrap();
    let img = sample("testA/female_10328.jpg");
    let r = ugatit(&[
        "translate",
        "--checkpoint",
        ckpt,
        "--img-size",
        "64",
        img.to_str().unwrap(),
        "--out",
        "/nonexistent",
    ]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("trained at 32 px"));

    let out = dir.join("test");
    let r = ugatit(&[
        "test",
        "--checkpoint",
        ckpt,
        "--dataset",
        sample("").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let grid = image::open(out.join("A2B_1.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (32, 7 * 32), "one column of 7 tiles");
    assert!(out.join("B2A_4.png").exists());
    assert!(out.join("fake_A2B/female_10328.png").exists());
    assert!(out.join("fake_B2A/0000.png").exists());
    let _ = std::fs::remove_dir_all(dir);
}
