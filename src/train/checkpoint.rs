//! Training checkpoints: one safetensors file holding the six networks (spectral-norm `u`/`v`
//! included) under their reference names, both optimisers' state, the step, the seed and the
//! run's configuration, how many ranks trained it and, in fp16, the loss scales. The data order and every random draw are functions of (seed, step), so
//! these determine the rest of the run: a resumed run continues bit for bit.
//!
//! Files are written atomically (temporary file, fsync, rename), so a run killed at any moment
//! leaves the previous checkpoint intact.

use super::config::TrainConfig;
use super::scaler::LossScaler;
use super::step::Trainer;
use crate::io::safetensors::{self as st, named_variables};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Identifies our checkpoint layout in the file's metadata.
pub const FORMAT: &str = "ugatit-rs-train-1";

/// Writes the trainer's state after `step` completed steps.
pub fn save(path: &Path, trainer: &Trainer, step: i64, config: &TrainConfig) -> Result<()> {
    let mut tensors = named_variables("", &trainer.nets.vs);
    tensors.extend(trainer.opt_g.state("optimG."));
    tensors.extend(trainer.opt_d.state("optimD."));
    let mut metadata = BTreeMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("step".to_string(), step.to_string()),
        ("optimG_step".to_string(), trainer.opt_g.step.to_string()),
        ("optimD_step".to_string(), trainer.opt_d.step.to_string()),
        ("config".to_string(), config.to_toml()),
        ("world_size".to_string(), trainer.dist.as_ref().map_or(1, |d| d.size()).to_string()),
    ]);
    if let Some([d, g]) = &trainer.scalers {
        metadata.extend(d.metadata("optimD").into_iter().chain(g.metadata("optimG")));
    }
    st::write(path, &tensors, &metadata)
}

/// What a checkpoint says about its run.
pub struct CheckpointInfo {
    pub step: i64,
    pub config: TrainConfig,
    /// The ranks that trained it (1 for a single process, and for checkpoints from before
    /// distributed training existed).
    pub world_size: i64,
}

fn meta_i64(meta: &BTreeMap<String, String>, key: &str, path: &Path) -> Result<i64> {
    meta.get(key)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{}: checkpoint metadata lacks a valid {key:?}", path.display()))
}

/// Reads the step and configuration of a checkpoint from its header alone.
pub fn info(path: &Path) -> Result<CheckpointInfo> {
    parse_info(&st::read_metadata(path)?, path)
}

fn parse_info(meta: &BTreeMap<String, String>, path: &Path) -> Result<CheckpointInfo> {
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        bail!("{}: not a ugatit-rs training checkpoint (metadata format is not {FORMAT:?})", path.display());
    }
    let config = toml::from_str(meta.get("config").map(String::as_str).unwrap_or_default())
        .with_context(|| format!("{}: checkpoint holds an invalid configuration", path.display()))?;
    let world_size = if meta.contains_key("world_size") { meta_i64(meta, "world_size", path)? } else { 1 };
    Ok(CheckpointInfo { step: meta_i64(meta, "step", path)?, config, world_size })
}

/// Restores networks and optimisers from `path` into `trainer`; returns the completed step.
pub fn load(path: &Path, trainer: &mut Trainer) -> Result<i64> {
    let file = st::read(path)?;
    let info = parse_info(&file.metadata, path)?;
    let nets: BTreeMap<String, tch::Tensor> = file
        .tensors
        .iter()
        .filter(|(k, _)| !k.starts_with("optim"))
        .map(|(k, v)| (k.clone(), v.shallow_clone()))
        .collect();
    st::copy_into(&nets, "", &trainer.nets.vs, path)?;
    let (g_step, d_step) =
        (meta_i64(&file.metadata, "optimG_step", path)?, meta_i64(&file.metadata, "optimD_step", path)?);
    trainer.opt_g.load_state(&file.tensors, "optimG.", g_step).with_context(|| format!("{}", path.display()))?;
    trainer.opt_d.load_state(&file.tensors, "optimD.", d_step).with_context(|| format!("{}", path.display()))?;
    if let Some(scalers) = &mut trainer.scalers {
        let scaler =
            |name| LossScaler::from_metadata(&file.metadata, name).with_context(|| format!("{}", path.display()));
        *scalers = [scaler("optimD")?, scaler("optimG")?];
    }
    Ok(info.step)
}
