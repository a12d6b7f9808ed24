//! Safetensors, the native model format: tensors named by the reference's `state_dict` keys
//! (Linear weights `[out, in]`), with the spectral-norm `weight_u`/`weight_v` state included.
//!
//! A file may hold several networks; each is then stored under a prefix (`genA2B.`, `disGA.`, …)
//! as UGATIT-pytorch's checkpoints nest them. Writes are atomic: a temporary file in the same
//! folder is written, flushed to disk and renamed over the target.

use anyhow::{anyhow, bail, Context, Result};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// The element types a file may hold, with their libtorch kinds: the one table both directions use.
const DTYPES: [(Dtype, Kind); 10] = [
    (Dtype::BOOL, Kind::Bool),
    (Dtype::U8, Kind::Uint8),
    (Dtype::I8, Kind::Int8),
    (Dtype::I16, Kind::Int16),
    (Dtype::I32, Kind::Int),
    (Dtype::I64, Kind::Int64),
    (Dtype::F16, Kind::Half),
    (Dtype::BF16, Kind::BFloat16),
    (Dtype::F32, Kind::Float),
    (Dtype::F64, Kind::Double),
];

fn dtype_of(kind: Kind) -> Result<Dtype> {
    match DTYPES.iter().find(|(_, k)| *k == kind) {
        Some((dtype, _)) => Ok(*dtype),
        None => bail!("cannot store a tensor of kind {kind:?} in safetensors"),
    }
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    DTYPES.iter().find(|(d, _)| *d == dtype).map(|(_, k)| *k)
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

/// Reads every tensor of a safetensors file onto the CPU ([`read_bytes`] on its contents).
pub fn read(path: &Path) -> Result<SafetensorsFile> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    read_bytes(&bytes).with_context(|| format!("{} is not a valid safetensors file", path.display()))
}

/// The metadata of a safetensors file, reading only its header (a training checkpoint's step and
/// configuration, without the gigabytes of tensors after them).
pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    use std::io::Read;
    let context = || format!("{} is not a valid safetensors file", path.display());
    let mut file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let file_len = file.metadata().with_context(|| format!("reading {}", path.display()))?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|_| anyhow!("the file is truncated ({file_len} bytes)")).with_context(context)?;
    let n = u64::from_le_bytes(len);
    // The format caps the header at 100 MB.
    if n > 100_000_000 || n.saturating_add(8) > file_len {
        return Err(anyhow!("its header claims {n} bytes, the file has {file_len}")).with_context(context);
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).with_context(context)?;
    let json: serde_json::Value = serde_json::from_slice(&header).with_context(context)?;
    let meta = json.get("__metadata__").and_then(|m| m.as_object());
    Ok(meta.into_iter().flatten().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
}

/// The tensors and metadata of a safetensors file's bytes. The header is checked against the
/// data before any tensor is built: a dtype libtorch lacks, a dimension over `i64`, or a data
/// length other than the shape's are errors naming the tensor.
pub fn read_bytes(bytes: &[u8]) -> Result<SafetensorsFile> {
    read_bytes_where(bytes, |_| true)
}

/// [`read_bytes`] building only the tensors whose names `keep` accepts: the bytes of the others
/// are never touched (in a memory-mapped file, never read from disk).
pub fn read_bytes_where(bytes: &[u8], keep: impl Fn(&str) -> bool) -> Result<SafetensorsFile> {
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| anyhow!("{}", describe(e, bytes)))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| anyhow!("{}", describe(e, bytes)))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors().into_iter().filter(|(name, _)| keep(name)) {
        let kind =
            kind_of(view.dtype()).ok_or_else(|| anyhow!("tensor {name} has unsupported dtype {:?}", view.dtype()))?;
        let shape = view
            .shape()
            .iter()
            .map(|&d| i64::try_from(d).map_err(|_| anyhow!("tensor {name}: dimension too large")))
            .collect::<Result<Vec<i64>>>()?;
        let numel = view
            .shape()
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .and_then(|n| n.checked_mul(kind.elt_size_in_bytes()));
        // libtorch copies numel * elt_size bytes: never trust the header for that.
        if numel != Some(view.data().len()) {
            bail!("tensor {name}: data length does not match its shape");
        }
        let t = if kind == Kind::Bool {
            // A bool byte other than 0 or 1 is undefined behaviour for libtorch: normalise it.
            let bytes: Vec<u8> = view.data().iter().map(|&b| (b != 0) as u8).collect();
            Tensor::f_from_data_size(&bytes, &shape, kind)?
        } else {
            Tensor::f_from_data_size(view.data(), &shape, kind)?
        };
        tensors.insert(name, t);
    }
    let metadata = header.metadata().clone().unwrap_or_default().into_iter().collect();
    Ok(SafetensorsFile { tensors, metadata })
}

/// The safetensors crate's error in words a user can act on: a cut file says how long it
/// should be.
fn describe(err: safetensors::SafeTensorError, bytes: &[u8]) -> String {
    use safetensors::SafeTensorError as E;
    match err {
        E::MetadataIncompleteBuffer | E::HeaderTooSmall | E::InvalidHeaderLength => match expected_length(bytes) {
            Some(expected) => {
                format!("the file is truncated: its header describes {expected} bytes, the file has {}", bytes.len())
            }
            None => format!("the file is truncated ({} bytes, shorter than its header says)", bytes.len()),
        },
        other => format!("invalid safetensors file: {other}"),
    }
}

/// The file length a safetensors header describes: 8 + header + the end of the last tensor.
fn expected_length(bytes: &[u8]) -> Option<u64> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let header = bytes.get(8..usize::try_from(n.checked_add(8)?).ok()?);
    let Some(header) = header else { return n.checked_add(8) };
    let json: serde_json::Value = serde_json::from_slice(header).ok()?;
    let end = json.as_object()?.values().filter_map(|t| t.get("data_offsets")?.get(1)?.as_u64()).max().unwrap_or(0);
    n.checked_add(8)?.checked_add(end)
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
