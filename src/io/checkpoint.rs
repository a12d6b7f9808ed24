//! Reading U-GAT-IT checkpoints, ours and those the Python implementations write: the one entry
//! point every subcommand that takes a `--checkpoint` goes through.
//!
//! [`read`] detects the container by content, not by file name, once, and hands the bytes to that
//! format's reader:
//!
//! | content | writer | layout |
//! |---|---|---|
//! | zip archive with `<root>/data.pkl` | `torch.save` (torch >= 1.6), UGATIT-pytorch | `{genA2B: state_dict, genB2A, disGA, disGB, disLA, disLB}` |
//! | pickled magic number, then pickles and raw storages | `torch.save` (torch < 1.6) | the same |
//! | pickle of numpy arrays | `paddle.save` / PaddleGAN's trainer (protocol 2) | `{genA2B: {...}, ..., optimG, optimD, epoch}` or a bare generator `state_dict` |
//! | safetensors | [`convert`], this crate | `genA2B.DownBlock.1.weight`, ... |
//! | TensorFlow tensor bundle (`.index` + `.data-*`; read from the files, see [`read`]) | the official code (taki0112/UGATIT) | `generator_B/...` (A→B), `generator_A/...`, see [`official_tf`] |
//!
//! and returns a [`Checkpoint`]: the tensors of the networks it finds, keyed `<net>.<reference
//! key>` in torch layout, ready for [`crate::io::safetensors::copy_into`] with the prefix
//! `"<net>."`, the file's metadata (safetensors only) and its format. Other entries (optimizer
//! state, epoch counters) are skipped.
//!
//! PaddleGAN's networks are ports of UGATIT-pytorch with the same parameter names, so mapping a
//! PaddleGAN file needs only two layout fixes:
//! * every 2-D `weight`/`weight_orig` is a Linear weight, stored `[in, out]` by Paddle and
//!   `[out, in]` by torch, and is transposed (including the square ones, `gamma`, `beta`, `FC.*`,
//!   whose shape cannot tell the layout); convolution weights are OIHW in both;
//! * Paddle's `InstanceNorm2D` carries `scale`/`bias` entries frozen at 1 and 0 that torch's
//!   affine-free InstanceNorm does not have: they are checked and dropped.
//!
//! PaddleGAN's spectral norm already names its state `weight_orig`, `weight_u`, `weight_v` like
//! torch's (and `u`/`v` have the same shapes in both frameworks). Torch files that use the newer
//! `torch.nn.utils.parametrizations.spectral_norm` names (`parametrizations.weight.original`,
//! `._u`, `._v`) are renamed to those too.
//!
//! A file holding one bare generator `state_dict` (PaddleGAN's released `ugatit_light.pdparams`
//! style, or `torch.save(genA2B.state_dict())`) is recognised by its keys and returned under
//! `genA2B.`; a bare discriminator is an error because its role cannot be told.

use crate::io::file_bytes::FileBytes;
use crate::io::pickle::{NdArray, Value};
use crate::io::torch_archive::{self, TorchFile};
use crate::io::{official_tf, pdparams, safetensors, tf_bundle};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tch::{Kind, Tensor};

/// The networks a U-GAT-IT checkpoint holds, in the reference's order.
pub use crate::model::ugatit::NET_NAMES as NETWORKS;

/// A checkpoint container, as told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `torch.save` zip archive (torch >= 1.6), or a TorchScript archive.
    TorchZip,
    /// `torch.save` legacy format (torch < 1.6).
    TorchLegacy,
    /// A pickle (`paddle.save`, PaddleGAN's trainer).
    Pickle,
    /// safetensors.
    Safetensors,
    /// A TensorFlow tensor bundle (`<prefix>.index` + `.data-*`): the official U-GAT-IT code's.
    TfBundle,
}

impl Format {
    /// A short name for messages and metadata.
    pub fn name(self) -> &'static str {
        match self {
            Format::TorchZip => "torch zip archive",
            Format::TorchLegacy => "legacy torch file",
            Format::Pickle => "pickle (pdparams)",
            Format::Safetensors => "safetensors",
            Format::TfBundle => "TensorFlow checkpoint (official U-GAT-IT)",
        }
    }
}

/// Tells the container format from the first bytes, or `None`.
pub fn detect_format(data: &[u8]) -> Option<Format> {
    if tf_bundle::is_index(data) {
        return Some(Format::TfBundle);
    }
    if torch_archive::is_zip(data) {
        return Some(Format::TorchZip);
    }
    if torch_archive::is_legacy_torch(data) {
        return Some(Format::TorchLegacy);
    }
    // safetensors: u64 header length, then a JSON object. Checked before pickle: a header length
    // whose low byte is 0x80 would otherwise read as a pickle PROTO opcode.
    let header_len = data.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    if let Some(n) = header_len {
        if n >= 2 && data.get(8) == Some(&b'{') && n <= (data.len() - 8) as u64 {
            return Some(Format::Safetensors);
        }
    }
    (data.first() == Some(&0x80)).then_some(Format::Pickle)
}

/// A checkpoint's networks, as read by [`read`].
#[derive(Debug)]
pub struct Checkpoint {
    /// `<net>.<reference key>` → tensor, in torch layout, on the CPU.
    pub tensors: BTreeMap<String, Tensor>,
    /// The file's own metadata (ours: format, step, the run's `config` as TOML); empty for the
    /// Python formats.
    pub metadata: BTreeMap<String, String>,
    pub format: Format,
}

impl Checkpoint {
    /// The image size recorded in a ugatit-rs training checkpoint's configuration.
    pub fn trained_img_size(&self) -> Option<i64> {
        let config: crate::train::config::TrainConfig = toml::from_str(self.metadata.get("config")?).ok()?;
        Some(config.img_size)
    }
}

/// Which networks of a checkpoint to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Networks {
    /// All six (training, resuming, converting).
    All,
    /// genA2B and genB2A (translating, serving).
    Generators,
}

impl Networks {
    /// Whether the network `net` (one of [`NETWORKS`]) is read.
    fn keeps_network(self, net: &str) -> bool {
        self == Networks::All || matches!(net, "genA2B" | "genB2A")
    }

    /// Whether the tensor `<net>.<key>` is read.
    fn keeps(self, key: &str) -> bool {
        self == Networks::All || key.split_once('.').is_some_and(|(net, _)| self.keeps_network(net))
    }
}

/// Reads the networks of a checkpoint file (see the module documentation). Errors name the file
/// and the problem. A TensorFlow checkpoint is given by its prefix (`…/UGATIT.model-1000000`),
/// its `.index` file, or the folder holding its `checkpoint` file.
pub fn read(path: &Path) -> Result<Checkpoint> {
    read_networks(path, Networks::All)
}

/// [`read`] for the networks `which` names. The file is memory-mapped: from a safetensors or torch
/// file only those networks' tensors are built and only their bytes read from disk, so
/// translating from a training checkpoint (two thirds of which are Adam's moments, and most of
/// the rest the discriminators) costs the generators' memory only; PaddleGAN and TensorFlow files
/// are parsed whole and the rest dropped.
pub fn read_networks(path: &Path, which: Networks) -> Result<Checkpoint> {
    if is_tf_bundle(path) {
        let bundle = tf_bundle::Bundle::open(path)?;
        let tensors = official_tf::generators(&bundle).with_context(|| format!("{}", path.display()))?;
        let metadata = BTreeMap::from([(VARIANT_KEY.to_string(), OFFICIAL_TF.to_string())]);
        return Ok(Checkpoint { tensors, metadata, format: Format::TfBundle });
    }
    let data = FileBytes::open(path)?;
    let mut checkpoint = read_data(data, which).with_context(|| format!("{}", path.display()))?;
    checkpoint.tensors.retain(|key, _| which.keeps(key));
    Ok(checkpoint)
}

/// Metadata key naming the generator variant of a converted official checkpoint.
pub const VARIANT_KEY: &str = "variant";
/// Its value for the official TensorFlow generator.
pub const OFFICIAL_TF: &str = "official-tf";

/// Whether `path` names a TensorFlow checkpoint: a folder (holding a `checkpoint` file), a
/// prefix whose `.index` exists, or a file that is an index or a data shard.
fn is_tf_bundle(path: &Path) -> bool {
    if path.is_dir() {
        return true;
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if !path.exists() {
        return Path::new(&format!("{}.index", path.display())).is_file();
    }
    name.ends_with(".index") || name.contains(".data-")
}

/// [`read`] on the bytes of a file.
pub fn read_bytes(data: Vec<u8>) -> Result<Checkpoint> {
    read_data(data.into(), Networks::All)
}

/// The networks `which` names from a file's bytes: from safetensors and torch files only their
/// tensors are built (and, from a mapped file, only their pages read); a PaddleGAN pickle holds
/// its arrays inline and is parsed whole.
fn read_data(data: FileBytes, which: Networks) -> Result<Checkpoint> {
    let Some(format) = detect_format(&data) else {
        if data.is_empty() {
            bail!("empty file");
        }
        let head: Vec<String> = data.iter().take(8).map(|b| format!("{b:02x}")).collect();
        bail!("wrong magic: not a torch, pdparams or safetensors file (starts with {})", head.join(" "));
    };
    let tensors = match format {
        Format::TorchZip | Format::TorchLegacy => from_torch(&TorchFile::from_bytes(data)?, which)?,
        Format::Pickle => {
            let root = pdparams::load_pdparams_bytes(&data)?;
            drop(data);
            from_paddle(&root)?
        }
        Format::TfBundle => {
            bail!("a TensorFlow checkpoint is read from its files: give its prefix, .index file or folder")
        }
        Format::Safetensors => return read_safetensors(&data, which),
    };
    Ok(Checkpoint { tensors, metadata: BTreeMap::new(), format })
}

/// A safetensors checkpoint's networks (`which` of them) and metadata.
fn read_safetensors(data: &[u8], which: Networks) -> Result<Checkpoint> {
    // Bare keys (a file of one network) are kept: their network is told from them afterwards.
    let wanted = |name: &str| !is_optimizer(name) && (which.keeps(name) || !has_network_prefix(name));
    let file = safetensors::read_bytes_where(data, wanted)?;
    Ok(Checkpoint { tensors: from_safetensors(file.tensors)?, metadata: file.metadata, format: Format::Safetensors })
}

/// Our training checkpoints' optimiser state, which is not a network's.
fn is_optimizer(name: &str) -> bool {
    name.starts_with("optimG.") || name.starts_with("optimD.")
}

/// Whether `name` is `<net>.<key>` for one of the six networks.
fn has_network_prefix(name: &str) -> bool {
    NETWORKS.iter().any(|n| name.strip_prefix(n).is_some_and(|key| key.starts_with('.')))
}

/// Reads `input` (any format [`read`] reads) and writes its networks to the safetensors file
/// `output` with the same `<net>.<key>` names; returns how many tensors were written.
pub fn convert(input: &Path, output: &Path) -> Result<usize> {
    if output.is_dir() || output.as_os_str().to_string_lossy().ends_with('/') {
        bail!(
            "{}: the output must be a file path (e.g. {}), not a folder",
            output.display(),
            output.join("model.safetensors").display()
        );
    }
    let same = |a: &Path, b: &Path| a.canonicalize().ok().zip(b.canonicalize().ok()).is_some_and(|(a, b)| a == b);
    if same(input, output) {
        bail!("{}: the output is the input; give another file name", output.display());
    }
    let checkpoint = read(input)?;
    let list: Vec<(String, Tensor)> = checkpoint.tensors.into_iter().collect();
    let mut meta = BTreeMap::new();
    meta.insert("converted_from".to_string(), checkpoint.format.name().to_string());
    if let Some(variant) = checkpoint.metadata.get(VARIANT_KEY) {
        meta.insert(VARIANT_KEY.to_string(), variant.clone());
    }
    safetensors::write(output, &list, &meta)?;
    Ok(list.len())
}

fn top_level_networks(root: &Value) -> Vec<(&'static str, &Value)> {
    NETWORKS.iter().filter_map(|&n| root.get(n).map(|v| (n, v))).collect()
}

/// The role of a bare state_dict, from its keys.
fn bare_network(keys: &BTreeSet<&str>) -> Result<&'static str> {
    let has = |p: &str| keys.iter().any(|k| k.starts_with(p));
    if has("DownBlock.") && has("UpBlock2.") {
        return Ok("genA2B");
    }
    if has("model.") && (has("conv.weight") || has("conv1x1.")) {
        bail!("a bare discriminator state_dict: cannot tell which of disGA, disGB, disLA, disLB it is (save it as {{name: state_dict}})");
    }
    let sample: Vec<&str> = keys.iter().take(5).copied().collect();
    bail!(
        "unknown layout: no genA2B/genB2A/disGA/disGB/disLA/disLB entries and not a generator state_dict (keys: {})",
        if sample.is_empty() { "none".to_string() } else { sample.join(", ") }
    )
}

/// Maps `torch.nn.utils.parametrizations.spectral_norm` names to the reference's.
fn torch_name(key: &str) -> String {
    for (from, to) in [
        (".parametrizations.weight.original", ".weight_orig"),
        (".parametrizations.weight.0._u", ".weight_u"),
        (".parametrizations.weight.0._v", ".weight_v"),
    ] {
        if let Some(stem) = key.strip_suffix(from) {
            return format!("{stem}{to}");
        }
    }
    key.to_string()
}

fn from_torch(file: &TorchFile, which: Networks) -> Result<BTreeMap<String, Tensor>> {
    let root = file.root();
    if root.as_dict().is_none() {
        bail!("unknown layout: the file holds a {}, expected a dict of state_dicts", root.type_name());
    }
    let nets = top_level_networks(root);
    let mut out = BTreeMap::new();
    if nets.is_empty() {
        let tensors = file.tensors_of(root, "")?;
        let net = bare_network(&tensors.keys().map(String::as_str).collect())?;
        for (k, t) in tensors {
            out.insert(format!("{net}.{}", torch_name(&k)), t);
        }
        return Ok(out);
    }
    for (net, v) in nets.into_iter().filter(|(net, _)| which.keeps_network(net)) {
        for (k, t) in file.tensors_of(v, net)? {
            out.insert(torch_name(&k), t);
        }
    }
    Ok(out)
}

fn from_paddle(root: &Value) -> Result<BTreeMap<String, Tensor>> {
    if root.as_dict().is_none() {
        bail!("unknown layout: the pickle holds a {}, expected a dict", root.type_name());
    }
    let nets = top_level_networks(root);
    let mut out = BTreeMap::new();
    if nets.is_empty() {
        let arrays = pdparams::arrays(root)?;
        let net = bare_network(&arrays.keys().map(String::as_str).collect())?;
        paddle_to_torch(net, arrays, &mut out)?;
        return Ok(out);
    }
    for (net, v) in nets {
        paddle_to_torch(net, pdparams::arrays(v)?, &mut out)?;
    }
    Ok(out)
}

fn all_equal(t: &Tensor, value: f64) -> Result<bool> {
    let v = t.f_to_kind(Kind::Double)?.f_sub_scalar(value)?.f_abs()?;
    Ok(v.numel() == 0 || v.f_max()?.f_double_value(&[])? == 0.0)
}

/// One PaddleGAN network's arrays in torch layout, keys prefixed `<net>.`.
fn paddle_to_torch(net: &str, arrays: BTreeMap<String, NdArray>, out: &mut BTreeMap<String, Tensor>) -> Result<()> {
    // Prefixes of InstanceNorm2D layers (they have a `scale`).
    let norms: BTreeSet<String> = arrays
        .iter()
        .filter_map(|(k, a)| {
            let stem = k.strip_suffix(".scale")?;
            (a.shape.len() == 1).then(|| stem.to_string())
        })
        .collect();
    for (key, a) in arrays {
        let t = pdparams::array_to_tensor(&a).with_context(|| format!("{net}.{key}"))?;
        let (stem, leaf) = key.rsplit_once('.').unwrap_or(("", key.as_str()));
        if norms.contains(stem) && (leaf == "scale" || leaf == "bias") {
            let frozen = if leaf == "scale" { 1.0 } else { 0.0 };
            if !all_equal(&t, frozen)? {
                bail!(
                    "{net}.{key}: PaddleGAN's InstanceNorm {leaf} should be frozen at {frozen}; this is not a PaddleGAN U-GAT-IT checkpoint"
                );
            }
            continue;
        }
        let t =
            if (leaf == "weight" || leaf == "weight_orig") && t.dim() == 2 { t.f_tr()?.f_contiguous()? } else { t };
        out.insert(format!("{net}.{key}"), t);
    }
    Ok(())
}

/// The networks of a safetensors file, given its networks' tensors ([`read_safetensors`] leaves
/// the optimisers' state out); a file of one bare generator is taken as `genA2B`.
fn from_safetensors(tensors: BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Tensor>> {
    if tensors.keys().any(|k| has_network_prefix(k)) {
        return Ok(tensors);
    }
    let net = bare_network(&tensors.keys().map(String::as_str).collect())?;
    Ok(tensors.into_iter().map(|(k, t)| (format!("{net}.{k}"), t)).collect())
}
