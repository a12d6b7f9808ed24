//! The unpaired dataset layout of the reference, `root/{trainA,trainB,testA,testB}`, checked
//! up front.
//!
//! Every regular, non-hidden file directly inside each folder is a candidate, whatever its
//! extension (selfie2anime's anime "JPEGs" are PNG files; decoding is by content), and every
//! candidate is fully decoded once, in parallel, before training starts. A truncated or foreign
//! file therefore stops the run at start-up with the complete list of offenders, instead of
//! killing it hours later when the loader first reaches it.

use crate::io::image::{decode_rgb8, list_images, RgbImage};
use anyhow::{bail, Result};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The four sub-folders, in the order of [`Dataset`]'s fields.
pub const SPLITS: [&str; 4] = ["trainA", "trainB", "testA", "testB"];

/// The image files of each split, sorted by file name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dataset {
    pub train_a: Vec<PathBuf>,
    pub train_b: Vec<PathBuf>,
    pub test_a: Vec<PathBuf>,
    pub test_b: Vec<PathBuf>,
}

/// A file that could not be read or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFile {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for BadFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// What [`Dataset::scan`] found: the usable dataset and the files it dropped (only with
/// `skip_bad`; otherwise a bad file is an error).
#[derive(Debug, Clone)]
pub struct ScanReport {
    pub dataset: Dataset,
    /// Dropped files with the reason, in split order then name order.
    pub skipped: Vec<BadFile>,
}

impl Dataset {
    /// The split by its folder name (`"trainA"`, …).
    pub fn split(&self, name: &str) -> Option<&[PathBuf]> {
        match name {
            "trainA" => Some(&self.train_a),
            "trainB" => Some(&self.train_b),
            "testA" => Some(&self.test_a),
            "testB" => Some(&self.test_b),
            _ => None,
        }
    }

    /// Finds and validates the dataset under `root`, decoding on all available cores.
    ///
    /// Errors: a missing `root` or sub-folder (all missing ones are named); any undecodable file
    /// when `skip_bad` is false (every one is listed as `path: reason`); a split left without
    /// images (all four are required: the trainer draws its sample grids from the test splits).
    pub fn scan(root: &Path, skip_bad: bool) -> Result<ScanReport> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::scan_with_threads(root, skip_bad, threads)
    }

    /// [`Dataset::scan`] with an explicit number of decoding threads (at least one is used).
    pub fn scan_with_threads(root: &Path, skip_bad: bool, threads: usize) -> Result<ScanReport> {
        if !root.is_dir() {
            if root.exists() {
                bail!("the dataset root {} is not a folder", root.display());
            }
            bail!("the dataset folder {} does not exist", root.display());
        }
        let missing: Vec<String> =
            SPLITS.iter().map(|s| root.join(s)).filter(|d| !d.is_dir()).map(|d| d.display().to_string()).collect();
        if !missing.is_empty() {
            bail!(
                "the dataset {} lacks {} (expected sub-folders {}): {}",
                root.display(),
                if missing.len() == 1 { "a folder" } else { "folders" },
                SPLITS.join(", "),
                missing.join(", ")
            );
        }

        let mut candidates = Vec::with_capacity(SPLITS.len());
        for split in SPLITS {
            candidates.push(list_images(&root.join(split))?);
        }
        let all: Vec<&Path> = candidates.iter().flatten().map(PathBuf::as_path).collect();
        let verdicts = check_files(&all, threads);

        let mut bad = Vec::new();
        let mut kept: Vec<Vec<PathBuf>> = Vec::with_capacity(SPLITS.len());
        let mut verdict = verdicts.into_iter();
        for files in candidates {
            let mut good = Vec::with_capacity(files.len());
            for path in files {
                match verdict.next().flatten() {
                    None => good.push(path),
                    Some(reason) => bad.push(BadFile { path, reason }),
                }
            }
            kept.push(good);
        }

        if !bad.is_empty() && !skip_bad {
            let list: Vec<String> = bad.iter().map(|b| format!("  {b}")).collect();
            bail!(
                "{} file(s) in the dataset {} cannot be used for training (fix or remove them, or train \
                 on the rest with --skip-bad-images):\n{}",
                bad.len(),
                root.display(),
                list.join("\n")
            );
        }

        let empty: Vec<String> = SPLITS
            .iter()
            .zip(&kept)
            .filter(|(_, files)| files.is_empty())
            .map(|(split, _)| {
                let dropped = bad.iter().filter(|b| b.path.parent() == Some(&root.join(split))).count();
                let dir = root.join(split).display().to_string();
                if dropped > 0 {
                    format!("{dir} (all {dropped} files are bad)")
                } else {
                    dir
                }
            })
            .collect();
        if !empty.is_empty() {
            bail!("no usable images in {}", empty.join(", "));
        }

        let mut kept = kept.into_iter();
        let mut next = || kept.next().unwrap_or_default();
        let dataset = Dataset { train_a: next(), train_b: next(), test_a: next(), test_b: next() };
        Ok(ScanReport { dataset, skipped: bad })
    }
}

/// Below this spread an image is flat: the largest per-channel standard deviation of its pixels,
/// in 8-bit levels. On a flat image every instance norm of the generator runs at variance ≈ 0
/// and multiplies the backward gradient by up to 1/√eps ≈ 316 per layer: training turns NaN
/// within a step (the reference's too). Ordinary photos are far above it: over the 2,200 images
/// of selfie2anime-1k, the least spread of any crop the train transform can take (resize to
/// S+30, crop S, for S = 32, 64 and 256; corners and centre) is 12.9 levels (median 48.6).
pub const FLAT_SPREAD: f64 = 4.0;

/// The spread [`FLAT_SPREAD`] is compared with: the largest per-channel standard deviation.
pub fn pixel_spread(img: &RgbImage) -> f64 {
    let n = f64::from(img.width()) * f64::from(img.height());
    (0..3)
        .map(|c| {
            let (sum, sum_sq) = img.pixels().fold((0.0, 0.0), |(s, q), p| {
                let v = f64::from(p[c]);
                (s + v, q + v * v)
            });
            let mean = sum / n;
            (sum_sq / n - mean * mean).max(0.0).sqrt()
        })
        .fold(0.0, f64::max)
}

/// Reads and fully decodes one file: `None` if it is an image training can use, else the reason.
pub fn check_file(path: &Path) -> Option<String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return Some(format!("cannot read the file: {e}")),
    };
    match decode_rgb8(&bytes) {
        Ok(img) if img.width() == 0 || img.height() == 0 => {
            Some(format!("the image is empty ({}x{})", img.width(), img.height()))
        }
        Ok(img) => {
            let spread = pixel_spread(&img);
            (spread < FLAT_SPREAD).then(|| {
                format!(
                    "flat image: its pixels vary by {spread:.2} levels (standard deviation), under {FLAT_SPREAD}; instance normalisation of a flat image makes training diverge"
                )
            })
        }
        Err(e) => Some(format!("{e:#}")),
    }
}

/// [`check_file`] for every path, on up to `threads` threads; the verdicts are in input order.
pub fn check_files(paths: &[&Path], threads: usize) -> Vec<Option<String>> {
    let threads = threads.clamp(1, paths.len().max(1));
    let next = AtomicUsize::new(0);
    let mut verdicts: Vec<Option<String>> = vec![None; paths.len()];
    // Workers pull indices from a shared counter (file sizes vary, so static splitting would
    // leave a core idle) and return (index, verdict) pairs for the bad ones only.
    let found: Vec<(usize, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut bad = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(path) = paths.get(i) else { break };
                        // A panicking decoder marks its file bad instead of losing the verdict.
                        let verdict = std::panic::catch_unwind(|| check_file(path))
                            .unwrap_or_else(|_| Some("the decoder crashed on this file".to_string()));
                        if let Some(reason) = verdict {
                            bad.push((i, reason));
                        }
                    }
                    bad
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    });
    for (i, reason) in found {
        verdicts[i] = Some(reason);
    }
    verdicts
}
