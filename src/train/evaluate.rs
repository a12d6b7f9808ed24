//! KID during training (`--eval-freq N`): every N steps and at the end, the current generators
//! translate testA→B and testB→A (eval mode, no gradients) and each direction is scored against
//! the real test folder of its target domain with the Inception path of `ugatit eval`
//! (GAN_Metrics-Tensorflow's KID×100 ± std in blocks of 10, and its mean-KID with the source
//! folder). The real folders' features are computed once per run.
//!
//! Rows go to `<run>/metrics.csv` (a resumed run keeps the rows up to its checkpoint and appends),
//! the curve to `metrics.png`, and the checkpoint with the lowest mean of the two plain KIDs to
//! `model/best.safetensors`. Evaluation draws no random numbers, so a run trains bitwise alike
//! with and without it. The translations are float32 whatever `--precision`, laid out and computed
//! as `ugatit translate` computes them (`--memory-format`, `--winograd`), so that the figures match
//! `ugatit eval` on the same generators.

use super::log::kept_prefix;
use crate::data::augment::test_transform;
use crate::io::image::{load_rgb8, RgbImage};
use crate::metrics::features::{Extractor, Preprocess};
use crate::metrics::kid::{kid, mean_kid, Kid, GM_MAX_BLOCK_SIZE};
use crate::model::{Generate, UGATIT};
use crate::pictures::{image_tile, plot_losses};
use crate::precision::Compute;
use crate::translate::default_batch_size;
use anyhow::{Context, Result};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The columns of `metrics.csv` after `step`.
pub const COLUMNS: [&str; 6] =
    ["kid_a2b_x100", "kid_a2b_std_x100", "kid_b2a_x100", "kid_b2a_std_x100", "mean_kid_a2b_x100", "mean_kid_b2a_x100"];

/// One domain's test split: the network inputs and the Inception features of the real images.
struct Split {
    inputs: Vec<Tensor>,
    features: Tensor,
}

/// The evaluation of a run.
pub struct Evaluator {
    extractor: Extractor,
    a: Split,
    b: Split,
    img_size: u32,
    compute: Compute,
    csv: PathBuf,
    plot: PathBuf,
    history: Vec<(i64, Vec<f64>)>,
}

impl Evaluator {
    /// Loads the Inception weights (an error now, not at the first evaluation, when they are
    /// missing) and the first `limit` (0: all) images of each test split.
    pub fn new(test_a: &[PathBuf], test_b: &[PathBuf], limit: usize, img_size: u32, compute: Compute) -> Result<Self> {
        let extractor = Extractor::from_located(None, compute.device, Preprocess::Gm, 10)
            .context("--eval-freq needs the Inception weights of `ugatit eval`")?;
        let split = |files: &[PathBuf]| -> Result<Split> {
            let files = if limit > 0 { &files[..limit.min(files.len())] } else { files };
            let images = files.iter().map(|p| load_rgb8(p)).collect::<Result<Vec<_>>>()?;
            let inputs = images.iter().map(|img| test_transform(img, img_size)).collect::<Result<Vec<_>>>()?;
            Ok(Split { inputs, features: extractor.features_of_images(&images)? })
        };
        let (a, b) = (split(test_a)?, split(test_b)?);
        Ok(Self { extractor, a, b, img_size, compute, csv: PathBuf::new(), plot: PathBuf::new(), history: Vec::new() })
    }

    /// Opens `<run>/metrics.csv` for a run at `last_step`, keeping its rows up to that step.
    /// Returns the lowest mean plain KID so far.
    pub fn open_log(&mut self, run_dir: &Path, last_step: i64) -> Result<Option<f64>> {
        (self.csv, self.plot) = (run_dir.join("metrics.csv"), run_dir.join("metrics.png"));
        if last_step > 0 && self.csv.exists() {
            let text = std::fs::read_to_string(&self.csv).with_context(|| format!("reading {}", self.csv.display()))?;
            let keep = kept_prefix(&text, last_step, 0, &mut self.history);
            let file = OpenOptions::new().write(true).open(&self.csv)?;
            file.set_len(keep as u64).with_context(|| format!("truncating {}", self.csv.display()))?;
        } else {
            crate::io::atomic::write_atomic(&self.csv, format!("step,{}\n", COLUMNS.join(",")).as_bytes())?;
        }
        Ok(self
            .history
            .iter()
            .map(|(_, v)| plain_mean(v))
            .fold(None, |best, m| Some(best.map_or(m, |b: f64| b.min(m)))))
    }

    /// Scores the generators of `nets` at `step`, logs and plots the row; returns it, named by
    /// [`COLUMNS`].
    pub fn evaluate(&mut self, nets: &UGATIT, step: i64) -> Result<Vec<f64>> {
        let a2b = self.score(&self.a, &self.b, &nets.gen_a2b)?;
        let b2a = self.score(&self.b, &self.a, &nets.gen_b2a)?;
        let row = vec![a2b.0.mean, a2b.0.std, b2a.0.mean, b2a.0.std, a2b.1.mean, b2a.1.mean];
        let text: Vec<String> = row.iter().map(|v| format!("{v:.6}")).collect();
        let mut file = OpenOptions::new().append(true).open(&self.csv)?;
        writeln!(file, "{step},{}", text.join(",")).with_context(|| format!("writing {}", self.csv.display()))?;
        self.history.push((step, row.clone()));
        let series: Vec<(&str, Vec<(f64, f64)>)> = [(0, "KID A2B x100"), (2, "KID B2A x100")]
            .into_iter()
            .map(|(i, name)| (name, self.history.iter().map(|(s, v)| (*s as f64, v[i])).collect()))
            .collect();
        plot_losses(&series, &self.plot)?;
        Ok(row)
    }

    /// (KID(target, fake), mean-KID with the source) ×100 of `generator` on `source`'s images.
    fn score(&self, source: &Split, target: &Split, generator: &dyn Generate) -> Result<(Kid, Kid)> {
        let mut fakes: Vec<RgbImage> = Vec::with_capacity(source.inputs.len());
        for chunk in source.inputs.chunks(default_batch_size(self.compute.device)) {
            let batch = Tensor::stack(chunk, 0).to_device(self.compute.device);
            let out = self.compute.infer(&batch, |xs| generator.generate(xs));
            for i in 0..chunk.len() {
                fakes.push(image_tile(&out.image.get(i as i64), self.img_size)?);
            }
        }
        let fake = self.extractor.features_of_images(&fakes)?;
        let plain = kid(&target.features, &fake, GM_MAX_BLOCK_SIZE).context("KID(real target, fake)")?;
        let of_source = kid(&source.features, &fake, GM_MAX_BLOCK_SIZE).context("KID(real source, fake)")?;
        Ok((plain.x100(), mean_kid(plain, of_source).x100()))
    }
}

/// The mean of a row's two plain KIDs: the figure `best.safetensors` minimises.
pub fn plain_mean(row: &[f64]) -> f64 {
    (row[0] + row[2]) / 2.0
}
