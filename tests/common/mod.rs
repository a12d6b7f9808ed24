//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

/// Tensors and metadata of a fixture file.
pub struct Fixture {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, Tensor>,
    pub meta: BTreeMap<String, String>,
}

impl Fixture {
    pub fn load(rel: &str) -> Self {
        let path = fixture(rel);
        let file = ugatit::io::safetensors::read(&path).unwrap_or_else(|e| panic!("{e:#}"));
        Self { path, tensors: file.tensors, meta: file.metadata }
    }

    pub fn get(&self, key: &str) -> &Tensor {
        self.tensors.get(key).unwrap_or_else(|| panic!("{} has no tensor {key}", self.path.display()))
    }

    pub fn meta_i64(&self, key: &str) -> i64 {
        self.meta[key].parse().unwrap_or_else(|_| panic!("metadata {key} = {:?}", self.meta[key]))
    }

    pub fn meta_bool(&self, key: &str) -> bool {
        matches!(self.meta[key].to_lowercase().as_str(), "true" | "1")
    }

    /// Keys starting with `prefix`, with the prefix removed.
    pub fn keys_under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.tensors.keys().filter_map(move |k| k.strip_prefix(prefix))
    }
}

/// Deterministic values in [-1, 1] (no global generator: tests run in parallel).
pub fn wave(shape: &[i64], phase: f64) -> Tensor {
    let n: i64 = shape.iter().product();
    (Tensor::arange(n, (tch::Kind::Float, tch::Device::Cpu)) * 0.37 + phase).sin().reshape(shape)
}

/// The error of `actual` against `expected`, scaled so that tensors of magnitude up to 1 are
/// compared absolutely and larger ones relative to their largest element:
/// `max|a − e| / max(1, max|e|)`.
pub fn scaled_error(actual: &Tensor, expected: &Tensor) -> f64 {
    assert_eq!(actual.size(), expected.size(), "shape mismatch");
    let a = actual.detach().to_device(tch::Device::Cpu).to_kind(tch::Kind::Double);
    let e = expected.to_kind(tch::Kind::Double);
    let diff = (&a - &e).abs().max().double_value(&[]);
    let scale = e.abs().max().double_value(&[]).max(1.0);
    diff / scale
}

/// Asserts [`scaled_error`] is within `tol`, naming the tensor.
pub fn assert_close(name: &str, actual: &Tensor, expected: &Tensor, tol: f64) {
    let err = scaled_error(actual, expected);
    assert!(err <= tol, "{name}: scaled error {err:.3e} exceeds {tol:.0e}");
}

/// The device tests run on: `UGATIT_TEST_DEVICE` (`cuda`, …) or the CPU; on CUDA without TF32.
pub fn device() -> tch::Device {
    ugatit::device::set_cuda_settings(ugatit::device::CudaSettings::default());
    match std::env::var("UGATIT_TEST_DEVICE") {
        Ok(name) => ugatit::device::parse(&name).expect("UGATIT_TEST_DEVICE"),
        Err(_) => tch::Device::Cpu,
    }
}

/// A fresh, empty scratch folder for one test (tests run in parallel in one process, and test
/// binaries in parallel with each other: the tag and the pid keep them apart).
pub fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ugatit-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A file of the bundled sample dataset (`assets/sample/<rel>`; `""` for the dataset itself).
pub fn sample(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sample").join(rel)
}

/// An untrained six-network checkpoint of a light model with `ngf` channels, one residual block,
/// at `dir/model.safetensors`.
pub fn tiny_checkpoint(dir: &Path, ngf: i64) -> PathBuf {
    let g = ugatit::model::generator::Config { ngf, n_res: 1, img_size: 32, light: true };
    let nets = ugatit::model::ugatit::UGATIT::new(ugatit::model::ugatit::Config::new(g), tch::Device::Cpu);
    let path = dir.join("model.safetensors");
    let vars = ugatit::io::safetensors::named_variables("", &nets.vs);
    ugatit::io::safetensors::write(&path, &vars, &BTreeMap::new()).unwrap();
    path
}
