//! Safetensors, the native model format: tensors named by the reference's `state_dict` keys
//! (Linear weights `[out, in]`), with the spectral-norm `weight_u`/`weight_v` state included.
//!
//! A file may hold several networks; each is then stored under a prefix (`genA2B.`, `disGA.`, …)
//! as UGATIT-pytorch's checkpoints nest them. Writes are atomic: a temporary file in the same
//! folder is written, flushed to disk and renamed over the target.

use anyhow::{bail, Context, Result};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

fn dtype_of(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Uint8 => Dtype::U8,
        other => bail!("cannot store a tensor of kind {other:?} in safetensors"),
    })
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::U8 => Kind::Uint8,
        _ => return None,
    })
}

/// The raw bytes of a tensor, in native (little-endian) order.
fn tensor_bytes(t: &Tensor) -> Vec<u8> {
    let t = t.detach().to_device(Device::Cpu).contiguous();
    let numel = t.numel();
    let mut bytes = vec![0u8; numel * t.kind().elt_size_in_bytes()];
    t.copy_data_u8(&mut bytes, numel);
    bytes
}

/// Writes `tensors` (name → tensor) and `metadata` to `path` atomically.
pub fn write(path: &Path, tensors: &[(String, Tensor)], metadata: &BTreeMap<String, String>) -> Result<()> {
    let data: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let shape = t.size().iter().map(|&d| d as usize).collect();
            Ok((name.clone(), dtype_of(t.kind())?, shape, tensor_bytes(t)))
        })
        .collect::<Result<_>>()?;
    let views = data
        .iter()
        .map(|(name, dtype, shape, bytes)| Ok((name.as_str(), TensorView::new(*dtype, shape.clone(), bytes)?)))
        .collect::<Result<Vec<_>>>()?;
    let meta: HashMap<String, String> = metadata.clone().into_iter().collect();
    let bytes = safetensors::serialize(views, &(!meta.is_empty()).then_some(meta))?;
    crate::io::atomic::write_atomic(path, &bytes)
}

/// A safetensors file read into memory.
pub struct SafetensorsFile {
    pub tensors: BTreeMap<String, Tensor>,
    pub metadata: BTreeMap<String, String>,
}

/// Reads every tensor of a safetensors file onto the CPU.
pub fn read(path: &Path) -> Result<SafetensorsFile> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
    let st = SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let kind = kind_of(view.dtype())
            .with_context(|| format!("{}: tensor {name} has unsupported dtype {:?}", path.display(), view.dtype()))?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        tensors.insert(name, Tensor::from_data_size(view.data(), &shape, kind));
    }
    let metadata = header.metadata().clone().unwrap_or_default().into_iter().collect();
    Ok(SafetensorsFile { tensors, metadata })
}

/// The metadata of a safetensors file, reading only its header; `None` when the file is not
/// safetensors (or has no metadata).
pub fn read_metadata(path: &Path) -> Option<BTreeMap<String, String>> {
    use std::io::Read;
    let mut file = File::open(path).ok()?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).ok()?;
    let len = u64::from_le_bytes(len);
    // The format caps the header at 100 MB; anything larger is not a safetensors header.
    if len > 100_000_000 {
        return None;
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&header).ok()?;
    let meta = json.get("__metadata__")?.as_object()?;
    Some(meta.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
}

/// The variables of `vs` named `prefix + key`, sorted by name.
pub fn named_variables(prefix: &str, vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut vars: Vec<_> = vs.variables().into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Copies the tensors named `prefix + key` of `file` into the variables of `vs`, converting
/// dtype and device. Every variable must be present with the same shape, and no tensor under
/// `prefix` may be left over; `source` names the file in errors.
pub fn copy_into(file: &BTreeMap<String, Tensor>, prefix: &str, vs: &VarStore, source: &Path) -> Result<()> {
    let vars = vs.variables();
    let mut missing = Vec::new();
    for (name, var) in &vars {
        let key = format!("{prefix}{name}");
        let Some(t) = file.get(&key) else {
            missing.push(key);
            continue;
        };
        if t.size() != var.size() {
            bail!(
                "{}: tensor {key} has shape {:?}, but the model expects {:?} (was it saved with other --ch/--n-res/--img-size/--light?)",
                source.display(),
                t.size(),
                var.size()
            );
        }
        tch::no_grad(|| var.shallow_clone().copy_(&t.to_kind(var.kind())));
    }
    if !missing.is_empty() {
        missing.sort();
        bail!("{}: missing {} tensor(s) the model needs: {}", source.display(), missing.len(), first_few(&missing));
    }
    let extra: Vec<String> =
        file.keys().filter(|k| k.starts_with(prefix) && !vars.contains_key(&k[prefix.len()..])).cloned().collect();
    if !extra.is_empty() {
        bail!("{}: {} unexpected tensor(s) not in the model: {}", source.display(), extra.len(), first_few(&extra));
    }
    Ok(())
}

/// The first names of a list, for error messages that stay readable.
fn first_few(names: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut text = names.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(", … ({} more)", names.len() - SHOWN));
    }
    text
}

/// Saves one network, keys as the reference's `state_dict`.
pub fn save_var_store(vs: &VarStore, path: &Path) -> Result<()> {
    write(path, &named_variables("", vs), &BTreeMap::new())
}

/// Loads one network saved by [`save_var_store`].
pub fn load_var_store(vs: &VarStore, path: &Path) -> Result<()> {
    let file = read(path)?;
    copy_into(&file.tensors, "", vs, path)
}
