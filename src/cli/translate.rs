//! `ugatit translate` and `ugatit test`: images through a trained generator.

use super::settings;
use crate::data::augment::test_transform;
use crate::io::image::load_rgb8;
use crate::io::inputs::{check_outputs, collect_jobs, Job};
use crate::pictures::{image_tile, render_grid, sample_columns, save_png};
use crate::translate::{default_batch_size, result_picture, Direction, Translator};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use tch::Tensor;

/// Translate images or folders with a trained generator.
#[derive(Debug, Clone, clap::Args)]
pub struct TranslateArgs {
    /// Checkpoint: ours (.safetensors), UGATIT-pytorch (.pt) or PaddleGAN (.pdparams).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// a2b: genA2B (e.g. selfie → anime); b2a: genB2A.
    #[arg(long, default_value = "a2b", value_parser = settings::choice::<Direction>())]
    pub direction: Direction,
    /// Image files, folders (searched recursively) or glob patterns.
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Output folder; `photo.jpg` becomes `photo.png`, folder inputs keep their sub-folders.
    #[arg(long)]
    pub out: PathBuf,
    /// Working size of a light model (default: the size its checkpoint records, else 256; a full
    /// model's is read off its weights).
    #[arg(long, allow_negative_numbers = true)]
    pub img_size: Option<i64>,
    /// Resize each result back to its input's size.
    #[arg(long)]
    pub keep_size: bool,
    /// Also write the attention heatmap as `<name>_cam.png`.
    #[arg(long)]
    pub with_cam: bool,
    /// Images per forward pass (default: 1 on CPU, where larger batches ran slower and larger
    /// here, 8 on CUDA).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: Option<u64>,
    #[command(flatten)]
    pub device: settings::device::Flags,
}

fn progress(len: usize) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}, {per_sec}] {msg}")
            .expect("template"),
    );
    bar
}

/// A decoded input: its pixels, ready for the network, and its original size.
struct Loaded {
    job: Job,
    tensor: Tensor,
    size: (u32, u32),
}

/// Decodes `job`'s input into the network's input at `side` px.
fn load(job: Job, side: u32) -> Result<Loaded> {
    let img = load_rgb8(&job.input)?;
    Ok(Loaded { tensor: test_transform(&img, side)?, size: img.dimensions(), job })
}

/// The files `translate` writes for `job`, relative to `--out`.
fn output_files(job: &Job, with_cam: bool) -> Vec<PathBuf> {
    let image = job.output.with_extension("png");
    let cam = with_cam.then(|| image.with_file_name(format!("{}_cam.png", cam_stem(job))));
    std::iter::once(image).chain(cam).collect()
}

fn cam_stem(job: &Job) -> String {
    job.output.file_name().unwrap_or_default().to_string_lossy().into_owned()
}

fn write_result(loaded: &Loaded, image: &Tensor, heatmap: &Tensor, args: &TranslateArgs, side: u32) -> Result<()> {
    let original = args.keep_size.then_some(loaded.size);
    let path = args.out.join(&loaded.job.output).with_extension("png");
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    save_png(&result_picture(image, false, side, original)?, &path)?;
    if args.with_cam {
        let name = format!("{}_cam.png", cam_stem(&loaded.job));
        save_png(&result_picture(heatmap, true, side, original)?, &path.with_file_name(name))?;
    }
    Ok(())
}

pub fn run_translate(args: TranslateArgs) -> Result<()> {
    let compute = super::start_compute(&args.device)?;
    let device = compute.device;
    let translator = Translator::load(&args.checkpoint, args.direction, args.img_size, device)?.computing(compute);
    let side = translator.config.img_size;
    let jobs = collect_jobs(&args.inputs)?;
    check_outputs(&jobs, &args.out, |job| output_files(job, args.with_cam))?;
    let bar = progress(jobs.len());
    let mut failures = 0usize;
    let mut report = |bar: &ProgressBar, err: anyhow::Error| {
        failures += 1;
        bar.suspend(|| eprintln!("error: {err:#}"));
    };
    let batch_size = args.batch_size.map_or(default_batch_size(device), |b| b as usize);
    std::thread::scope(|scope| {
        // Decoding and resizing run on a worker thread, up to two batches ahead of the network.
        let (send, loaded) = std::sync::mpsc::sync_channel(2 * batch_size);
        scope.spawn(move || {
            for job in jobs {
                if send.send(load(job, side as u32)).is_err() {
                    break;
                }
            }
        });
        let mut loaded = loaded.into_iter().peekable();
        while loaded.peek().is_some() {
            let mut batch: Vec<Loaded> = Vec::new();
            for item in loaded.by_ref() {
                match item {
                    Ok(item) => batch.push(item),
                    Err(err) => {
                        report(&bar, err);
                        bar.inc(1);
                    }
                }
                if batch.len() == batch_size {
                    break;
                }
            }
            if batch.is_empty() {
                continue;
            }
            let inputs: Vec<Tensor> = batch.iter().map(|l| l.tensor.shallow_clone()).collect();
            let out = translator.translate(&Tensor::stack(&inputs, 0).to_device(device));
            for (i, loaded) in batch.into_iter().enumerate() {
                if let Err(err) =
                    write_result(&loaded, &out.image.get(i as i64), &out.heatmap.get(i as i64), &args, side as u32)
                {
                    report(&bar, err.context(format!("writing the result of {}", loaded.job.input.display())));
                }
                bar.inc(1);
            }
        }
    });
    bar.finish();
    if failures > 0 {
        bail!("{failures} input(s) failed");
    }
    Ok(())
}

/// The reference's test phase: one 7-tile column per test image and direction, plus plain
/// translations ready for `ugatit eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct TestArgs {
    /// Checkpoint: ours (.safetensors), UGATIT-pytorch (.pt) or PaddleGAN (.pdparams).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Dataset folder with testA/ and testB/.
    #[arg(long)]
    pub dataset: PathBuf,
    /// Output folder (default: results/<dataset name>/test).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Working size of a light model (default: the size its checkpoint records, else 256).
    #[arg(long, allow_negative_numbers = true)]
    pub img_size: Option<i64>,
    #[command(flatten)]
    pub device: settings::device::Flags,
}

pub fn run_test(args: TestArgs) -> Result<()> {
    let compute = super::start_compute(&args.device)?;
    let checkpoint =
        crate::io::checkpoint::read_networks(&args.checkpoint, crate::io::checkpoint::Networks::Generators)?;
    let (a2b, b2a) = Translator::both(&checkpoint, &args.checkpoint, args.img_size, compute)?;
    let side = a2b.config.img_size;
    let out = args.out.clone().unwrap_or_else(|| super::default_run_dir(&args.dataset).join("test"));
    let mut failures = 0usize;
    for (domain, forward, backward, tag) in [("testA", &a2b, &b2a, "A2B"), ("testB", &b2a, &a2b, "B2A")] {
        let files = crate::io::image::list_images(&args.dataset.join(domain))?;
        let plain = out.join(format!("fake_{tag}"));
        std::fs::create_dir_all(&plain).with_context(|| format!("creating {}", plain.display()))?;
        let bar = progress(files.len());
        bar.set_message(tag);
        for (n, file) in files.iter().enumerate() {
            let result = (|| -> Result<()> {
                let real = test_transform(&load_rgb8(file)?, side as u32)?.unsqueeze(0).to_device(compute.device);
                let columns = sample_columns(&real, forward, backward);
                save_png(&render_grid(&columns, side as u32)?, &out.join(format!("{tag}_{}.png", n + 1)))?;
                save_png(
                    &image_tile(&columns[0].translated, side as u32)?,
                    &plain.join(file.file_stem().unwrap_or_default()).with_extension("png"),
                )
            })();
            if let Err(err) = result {
                failures += 1;
                bar.suspend(|| eprintln!("error: {err:#}"));
            }
            bar.inc(1);
        }
        bar.finish();
    }
    eprintln!("wrote {}", out.display());
    if failures > 0 {
        bail!("{failures} test image(s) failed");
    }
    Ok(())
}
