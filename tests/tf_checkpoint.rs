//! The authors' official TensorFlow generator, read from tensor bundles that TensorFlow 2.21
//! wrote (`tools/oracle/make_tf_fixtures.py`: the official graph and variable names, every
//! variable perturbed, discriminators and Adam slots present), must translate as TensorFlow
//! does, in both directions, for the light and the full model; through the checkpoint entry
//! point, the CLI and a converted safetensors file.

mod common;

use common::{assert_close, Fixture};
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::Device;
use ugatit::io::checkpoint::{self, Format};
use ugatit::translate::{Direction, Translator};

/// Outputs are O(1): compared absolutely at this tolerance (TF float32 vs ours).
const TOL: f64 = 1e-4;

fn folder(variant: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf").join(variant)
}

fn check_variant(variant: &str, source: &Path) {
    let expected = Fixture::load(&format!("tf/{variant}/expected.safetensors"));
    let size = expected.meta_i64("img_size");
    let ckpt = checkpoint::read(source).unwrap_or_else(|e| panic!("{e:#}"));
    for (direction, tag, input) in [(Direction::A2b, "A2B", "input_A"), (Direction::B2a, "B2A", "input_B")] {
        let t = Translator::from_checkpoint(&ckpt, source, direction, Some(size), Device::Cpu)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(t.config.img_size, size);
        assert_eq!(t.config.light, expected.meta_bool("light"));
        let out = t.translate(expected.get(input));
        assert_close(&format!("{variant} {tag} image"), &out.image, expected.get(&format!("{tag}.image")), TOL);
        assert_close(
            &format!("{variant} {tag} cam_logit"),
            &out.cam_logit,
            expected.get(&format!("{tag}.cam_logit")),
            TOL,
        );
        assert_close(&format!("{variant} {tag} heatmap"), &out.heatmap, expected.get(&format!("{tag}.heatmap")), TOL);
    }
}

#[test]
fn official_generators_translate_as_tensorflow_does() {
    for variant in ["light", "full"] {
        let dir = folder(variant);
        check_variant(variant, &dir.join("UGATIT.model-1000"));
        check_variant(variant, &dir.join("UGATIT.model-1000.index"));
        check_variant(variant, &dir);
        assert_eq!(checkpoint::read(&dir).unwrap().format, Format::TfBundle);
    }
}

#[test]
fn only_the_generators_are_read() {
    let ckpt = checkpoint::read(&folder("light")).unwrap();
    assert!(ckpt.tensors.keys().all(|k| k.starts_with("genA2B.") || k.starts_with("genB2A.")));
    assert!(!ckpt.tensors.keys().any(|k| k.ends_with(".Adam") || k.ends_with(".Adam_1")));
    assert_eq!(ckpt.tensors.len(), 2 * 92);
}

#[test]
fn a_converted_file_runs_without_the_original() {
    let dir = std::env::temp_dir().join(format!("ugatit-tf-convert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("official.safetensors");
    checkpoint::convert(&folder("full"), &out).unwrap();
    check_variant("full", &out);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn translate_test_and_train_take_the_folder() {
    let dir = std::env::temp_dir().join(format!("ugatit-tf-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sample");
    let out = Command::new(env!("CARGO_BIN_EXE_ugatit"))
        .arg("translate")
        .arg("--checkpoint")
        .arg(folder("light"))
        .args(["--img-size", "64", "--out"])
        .arg(dir.join("out"))
        .arg(sample.join("testA/female_10328.jpg"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let img = image::open(dir.join("out/female_10328.png")).unwrap();
    assert_eq!((img.width(), img.height()), (64, 64));
    // The reference's test phase: a 7-tile column per test image, both directions.
    let out = Command::new(env!("CARGO_BIN_EXE_ugatit"))
        .arg("test")
        .arg("--checkpoint")
        .arg(folder("light"))
        .arg("--dataset")
        .arg(&sample)
        .args(["--img-size", "64", "--out"])
        .arg(dir.join("test"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let grid = image::open(dir.join("test/B2A_1.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (64, 7 * 64));
    let out = Command::new(env!("CARGO_BIN_EXE_ugatit"))
        .arg("train")
        .arg("--dataset")
        .arg(&sample)
        .arg("--result-dir")
        .arg(dir.join("results"))
        .args(["--light", "--ch", "4", "--img-size", "64", "--n-dis", "4", "--iteration", "1", "--resume-from"])
        .arg(folder("light").join("UGATIT.model-1000"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("official TensorFlow model cannot be trained further"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
