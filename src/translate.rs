//! Translating images with a trained generator, from any checkpoint [`checkpoint::read`] reads
//! (ours, UGATIT-pytorch `.pt`, PaddleGAN `.pdparams`), with the architecture read off the
//! checkpoint's tensor shapes.

use crate::choice::Choice;
use crate::data::augment::test_transform;
use crate::io::checkpoint::{self, Checkpoint, Networks};
use crate::io::image::{resize_bilinear_pil, RgbImage};
use crate::io::official_tf;
use crate::io::safetensors::copy_into;
use crate::model::generator::Config;
use crate::model::{tf_generator, Generate, GeneratorOutput, ResnetGenerator, TfGenerator};
use crate::pictures::{heatmap_tile, image_tile};
use crate::precision::Compute;
use crate::shim::cuda::Graph;
use crate::train::config::{checks, TrainConfig};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// Which generator translates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `genA2B` (e.g. selfie → anime).
    A2b,
    /// `genB2A`.
    B2a,
}

impl Choice for Direction {
    const ALL: &'static [Self] = &[Direction::A2b, Direction::B2a];
}

impl Direction {
    /// The network's name in checkpoints.
    pub fn net(self) -> &'static str {
        match self {
            Direction::A2b => "genA2B",
            Direction::B2a => "genB2A",
        }
    }
}

fn shape(tensors: &BTreeMap<String, Tensor>, key: &str) -> Result<Vec<i64>> {
    tensors.get(key).map(Tensor::size).with_context(|| format!("the checkpoint has no tensor {key}"))
}

/// Images per forward pass unless `--batch-size` says: 8 on CUDA; 1 on the CPU, where batches of
/// 8 ran 1.45× slower and 3× larger (cache misses on 256² maps; BENCHMARKS.md).
pub fn default_batch_size(device: Device) -> usize {
    if device.is_cuda() {
        8
    } else {
        1
    }
}

/// The generator architecture stored under `prefix` (`"genA2B."`): `ngf` from the first
/// convolution, `n_res` from the AdaLIN blocks, light/full and (for full models) the image size
/// from the MLP's input width. A light model's image size cannot be read off; `img_size` gives it.
pub fn infer_config(tensors: &BTreeMap<String, Tensor>, prefix: &str, img_size: i64) -> Result<Config> {
    let first = shape(tensors, &format!("{prefix}DownBlock.1.weight"))?;
    let ngf = first[0];
    let n_res =
        (1..).take_while(|i| tensors.contains_key(&format!("{prefix}UpBlock1_{i}.conv1.weight"))).count() as i64;
    if n_res == 0 {
        bail!("the checkpoint has no {prefix}UpBlock1_1 block: not a U-GAT-IT generator");
    }
    let fc = shape(tensors, &format!("{prefix}FC.0.weight"))?;
    let (dim, mlp_in) = (fc[0], fc[1]);
    if mlp_in == dim {
        return Ok(Config { ngf, n_res, img_size, light: true });
    }
    let side = ((mlp_in / dim) as f64).sqrt().round() as i64;
    if side * side * dim != mlp_in {
        bail!("{prefix}FC.0.weight has shape {fc:?}, which fits neither a light nor a full generator");
    }
    Ok(Config { ngf, n_res, img_size: side * 4, light: false })
}

/// A generator loaded from a checkpoint: the reference's, or the official TF code's.
pub struct Translator {
    vs: VarStore,
    generator: Box<dyn Generate + Send>,
    /// Its shape (for the official generator, without its `smoothing`).
    pub config: Config,
    /// Precision and layout of its arithmetic ([`Compute::reference`] unless set).
    pub compute: Compute,
    /// The batch shape translated from a CUDA graph, with `compute.cuda_graphs`.
    replay: Mutex<Replay>,
}

/// Where translating from a CUDA graph stands: the first batch of a shape runs as written
/// (warm-up), the second of that shape is captured, and later ones of that shape replay it;
/// batches of other shapes (a smaller last one) run as written.
#[derive(Default)]
enum Replay {
    #[default]
    Idle,
    Warmed(Vec<i64>),
    Captured(Box<CapturedBatch>),
    /// A capture or replay failed (said once): batches run as written.
    Off,
}

/// A captured translation: the input it reads and the outputs it writes.
struct CapturedBatch {
    graph: Graph,
    input: Tensor,
    output: GeneratorOutput,
}

fn copied(out: &GeneratorOutput) -> GeneratorOutput {
    GeneratorOutput { image: out.image.copy(), cam_logit: out.cam_logit.copy(), heatmap: out.heatmap.copy(), mlp: None }
}

impl Generate for Translator {
    fn generate(&self, xs: &Tensor) -> GeneratorOutput {
        self.translate(xs)
    }
}

/// The official generator's shape, read off the tensors under `prefix`; `smoothing` from a
/// converted file's metadata, else on (the official default and the released model's).
fn infer_tf_config(checkpoint: &Checkpoint, prefix: &str) -> Result<tf_generator::Config> {
    let tensors = &checkpoint.tensors;
    let ngf = shape(tensors, &format!("{prefix}conv.conv2d.kernel"))?[0];
    let n_res =
        (0..).take_while(|i| tensors.contains_key(&format!("{prefix}resblock_{i}.res1.conv_0.conv2d.kernel"))).count();
    let mlp_in = shape(tensors, &format!("{prefix}MLP.linear_0.dense.kernel"))?[1];
    let dim = 4 * ngf;
    let side = ((mlp_in / dim.max(1)) as f64).sqrt().round() as i64;
    let light = mlp_in == dim;
    if !light && side * side * dim != mlp_in {
        bail!("{prefix}MLP.linear_0.dense.kernel has {mlp_in} inputs, which fits neither a light nor a full generator");
    }
    let smoothing = checkpoint.metadata.get("smoothing").is_none_or(|v| v != "false");
    let shape = Config { ngf, n_res: n_res as i64, img_size: if light { 0 } else { side * 4 }, light };
    Ok(tf_generator::Config { shape, smoothing })
}

impl Translator {
    /// Loads the `direction` generator of the checkpoint at `path`.
    pub fn load(path: &Path, direction: Direction, img_size: Option<i64>, device: Device) -> Result<Self> {
        Self::from_checkpoint(
            &checkpoint::read_networks(path, Networks::Generators)?,
            path,
            direction,
            img_size,
            device,
        )
    }

    /// The `direction` generator of a checkpoint read from `path`. `img_size` is used only for
    /// light models (full models fix their size); it defaults to the size a ugatit-rs training
    /// checkpoint records, else the training default. It is checked as `train --img-size` is.
    pub fn from_checkpoint(
        checkpoint: &Checkpoint,
        path: &Path,
        direction: Direction,
        img_size: Option<i64>,
        device: Device,
    ) -> Result<Self> {
        if let Some(size) = img_size {
            checks::image_size("img_size", &size)?;
        }
        let recorded = img_size.or_else(|| checkpoint.trained_img_size());
        let fallback = recorded.unwrap_or(TrainConfig::default().img_size);
        let tensors = &checkpoint.tensors;
        let prefix = format!("{}.", direction.net());
        let context = || format!("{}: reading the {} architecture", path.display(), direction.net());
        let vs = VarStore::new(device);
        let (generator, config): (Box<dyn Generate + Send>, Config) =
            if tensors.contains_key(&format!("{prefix}{}", official_tf::MARKER)) {
                let mut tf = infer_tf_config(checkpoint, &prefix).with_context(context)?;
                if tf.shape.light {
                    tf.shape.img_size = fallback;
                }
                (Box::new(TfGenerator::new(&vs.root(), tf)), tf.shape)
            } else {
                let config = infer_config(tensors, &prefix, fallback).with_context(context)?;
                (Box::new(ResnetGenerator::new(&vs.root(), config)), config)
            };
        if let (false, Some(size)) = (config.light, img_size) {
            if size != config.img_size {
                bail!(
                    "{}: a full model trained at {} px cannot run at --img-size {size}",
                    path.display(),
                    config.img_size
                );
            }
        }
        copy_into(tensors, &prefix, &vs, path)?;
        Ok(Self { vs, generator, config, compute: Compute::reference(device), replay: Mutex::default() })
    }

    /// Both generators of a checkpoint read from `path`, computing as `compute` says (see
    /// [`Translator::from_checkpoint`] for `img_size`): `(genA2B, genB2A)`.
    pub fn both(checkpoint: &Checkpoint, path: &Path, img_size: Option<i64>, compute: Compute) -> Result<(Self, Self)> {
        let load =
            |d| Self::from_checkpoint(checkpoint, path, d, img_size, compute.device).map(|t| t.computing(compute));
        Ok((load(Direction::A2b)?, load(Direction::B2a)?))
    }

    /// The same translator computing as `compute` says.
    pub fn computing(self, compute: Compute) -> Self {
        Self { compute, ..self }
    }

    /// Where the generator's weights live.
    pub fn generator_device(&self) -> Device {
        self.vs.device()
    }

    /// The network input for one image: the reference's test transform at the working size.
    pub fn prepare(&self, img: &RgbImage) -> Result<Tensor> {
        test_transform(img, self.config.img_size as u32)
    }

    /// Translates a batch `[B, 3, S, S]` in [-1, 1] (outputs in float32 whatever the precision),
    /// from a CUDA graph when `compute.cuda_graphs` and a batch of this shape was seen before.
    pub fn translate(&self, xs: &Tensor) -> GeneratorOutput {
        if self.compute.cuda_graphs {
            if let Some(out) = self.replayed(xs) {
                return out;
            }
        }
        self.run(xs)
    }

    /// Whether batches are translated from a captured graph.
    pub fn replays_a_graph(&self) -> bool {
        matches!(*self.replay.lock().unwrap_or_else(PoisonError::into_inner), Replay::Captured(_))
    }

    fn run(&self, xs: &Tensor) -> GeneratorOutput {
        self.compute.infer(xs, |xs| self.generator.generate(xs))
    }

    /// The batch translated from the graph, where [`Replay`] says it is.
    fn replayed(&self, xs: &Tensor) -> Option<GeneratorOutput> {
        let mut replay = self.replay.lock().unwrap_or_else(PoisonError::into_inner);
        let shape = xs.size();
        let failed = |what: &str, e: anyhow::Error| {
            eprintln!("CUDA graphs are off: {what} a translation batch failed ({e:#}); translating without them");
        };
        match &mut *replay {
            Replay::Off => None,
            Replay::Captured(captured) if captured.input.size() == shape => {
                captured.input.copy_(xs);
                match captured.graph.replay() {
                    Ok(()) => Some(copied(&captured.output)),
                    Err(e) => {
                        failed("replaying", e);
                        *replay = Replay::Off;
                        None
                    }
                }
            }
            Replay::Captured(_) => None,
            Replay::Warmed(seen) if *seen == shape => {
                let input = xs.copy();
                let captured = Graph::capture(|| Ok(self.run(&input))).and_then(|(graph, output)| {
                    graph.replay()?;
                    Ok(CapturedBatch { graph, input, output })
                });
                match captured {
                    Ok(captured) => {
                        let out = copied(&captured.output);
                        *replay = Replay::Captured(Box::new(captured));
                        Some(out)
                    }
                    Err(e) => {
                        failed("capturing", e);
                        *replay = Replay::Off;
                        None
                    }
                }
            }
            Replay::Idle | Replay::Warmed(_) => {
                *replay = Replay::Warmed(shape);
                None
            }
        }
    }
}

/// The picture `ugatit translate` writes for one result: the translated image (`[3, S, S]`) or
/// its CAM heatmap (`[1, h, w]`) as a tile of the working size, resized back to the input's
/// `original` size with PIL's bilinear filter when one is given (`--keep-size`).
pub fn result_picture(t: &Tensor, cam: bool, side: u32, original: Option<(u32, u32)>) -> Result<RgbImage> {
    let tile = if cam { heatmap_tile(t, side)? } else { image_tile(t, side)? };
    Ok(match original {
        Some((w, h)) => resize_bilinear_pil(&tile, w, h),
        None => tile,
    })
}
