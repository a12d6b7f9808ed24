//! Reading `paddle.save` files (`.pdparams`) and PaddleGAN checkpoints.
//!
//! They are plain pickles (protocol 4 by default, 2 in PaddleGAN's trainer) of dicts whose
//! leaves are numpy arrays, rebuilt by `numpy._core.multiarray._reconstruct` (older numpy:
//! `numpy.core.multiarray`) plus a `BUILD` with (shape, dtype, fortran flag, raw bytes);
//! protocol 2 wraps the bytes in `_codecs.encode(str, 'latin1')`. The layouts handled:
//!
//! * a flat `state_dict`: name → array, plus a `StructuredToParameterName@@` dict of internal
//!   names that is dropped;
//! * arrays over 1 GiB saved with protocol 2/3, split into `key@@.0`, `key@@.1`, ... and described
//!   by an `UnpackBigParamInfor@@` dict (`{key: {OriginShape, slices}}`), which are re-joined;
//! * nested dicts, e.g. PaddleGAN's trainer checkpoint `{genA2B: {...}, ..., optimG: {...},
//!   epoch: N}`: names are joined with `.`;
//! * `paddle.save` of nested dicts of tensors, where each tensor is a `(internal_name, array)`
//!   tuple inside an `OrderedDict`: the array is taken and the internal name dropped.
//!
//! Values that are not arrays (epoch, learning-rate scheduler state) are skipped.

use crate::io::pickle::{self, tensor_from_bytes, DType, NdArray, Options, Value};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tch::Tensor;

/// The name-table entry `paddle.save(state_dict)` adds.
pub const NAME_TABLE_KEY: &str = "StructuredToParameterName@@";
/// The entry describing split big parameters.
pub const UNPACK_INFO_KEY: &str = "UnpackBigParamInfor@@";

/// Unpickles a `.pdparams` file held in memory (numpy-only allow-list).
pub fn load_pdparams_bytes(data: &[u8]) -> Result<Value> {
    if data.is_empty() {
        bail!("empty file");
    }
    if data[0] != 0x80 {
        bail!("wrong magic: not a pickle (a .pdparams file starts with the PROTO opcode 0x80)");
    }
    Ok(pickle::unpickle(data, &Options::numpy())?)
}

/// Every array of an unpickled `.pdparams` object, named by its dotted path, with split big
/// parameters re-joined and Paddle's bookkeeping entries dropped.
pub fn arrays(root: &Value) -> Result<BTreeMap<String, NdArray>> {
    let mut out = BTreeMap::new();
    collect(root, String::new(), &mut out)?;
    Ok(out)
}

/// Reads a `.pdparams` file into tensors named by their dotted paths (Paddle layout: Linear
/// weights stay `[in, out]`; see [`crate::io::checkpoint`] for the mapping to torch names).
pub fn read_pdparams(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    read_pdparams_bytes(&data).with_context(|| format!("{}", path.display()))
}

/// [`read_pdparams`] on bytes.
pub fn read_pdparams_bytes(data: &[u8]) -> Result<BTreeMap<String, Tensor>> {
    let root = load_pdparams_bytes(data)?;
    arrays(&root)?
        .into_iter()
        .map(|(k, a)| {
            let t = array_to_tensor(&a).with_context(|| format!("array {k}"))?;
            Ok((k, t))
        })
        .collect()
}

/// Converts a numpy array to a contiguous CPU tensor (Fortran order is honoured).
pub fn array_to_tensor(a: &NdArray) -> Result<Tensor> {
    let dtype = a.dtype.ok_or_else(|| anyhow!("numpy array was never built"))?;
    if !a.fortran || a.shape.len() < 2 {
        return tensor_from_bytes(&a.data, &a.shape, dtype);
    }
    // Column-major data is the C-order data of the reversed shape, transposed back.
    let reversed: Vec<u64> = a.shape.iter().rev().copied().collect();
    let t = tensor_from_bytes(&a.data, &reversed, dtype)?;
    let dims: Vec<i64> = (0..a.shape.len() as i64).rev().collect();
    Ok(t.f_permute(dims.as_slice())?.f_contiguous()?)
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn key_string(k: &Value) -> Option<String> {
    match k {
        Value::Str(s) => Some(s.to_string()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// The array of a leaf: a bare array or paddle's `(internal_name, array)` tuple.
fn leaf_array(v: &Value) -> Option<&NdArray> {
    match v {
        Value::Array(a) => Some(&**a),
        Value::Tuple(items) => match items.as_slice() {
            [Value::Str(_), Value::Array(a)] => Some(&**a),
            _ => None,
        },
        _ => None,
    }
}

fn insert(out: &mut BTreeMap<String, NdArray>, name: String, a: NdArray) -> Result<()> {
    if a.dtype.is_none() {
        bail!("array {name} was never built (missing BUILD)");
    }
    if out.contains_key(&name) {
        bail!("two arrays are both named {name}");
    }
    out.insert(name, a);
    Ok(())
}

fn collect(v: &Value, path: String, out: &mut BTreeMap<String, NdArray>) -> Result<()> {
    if let Some(a) = leaf_array(v) {
        return insert(out, path, a.clone());
    }
    let Value::Dict(entries) = v else {
        // Scalars, strings, lists of numbers: not parameters.
        return Ok(());
    };
    // Split big parameters: gather the parts first, so they are not emitted on their own.
    let mut parts_of: BTreeMap<String, (Vec<u64>, Vec<String>)> = BTreeMap::new();
    if let Some(info) = v.get(UNPACK_INFO_KEY) {
        let info = info.as_dict().ok_or_else(|| anyhow!("{UNPACK_INFO_KEY} is not a dict"))?;
        for (k, spec) in info {
            let key = key_string(k).ok_or_else(|| anyhow!("{UNPACK_INFO_KEY} key is not a str"))?;
            let shape = spec
                .get("OriginShape")
                .and_then(|s| s.as_seq())
                .ok_or_else(|| anyhow!("{UNPACK_INFO_KEY}[{key}] has no OriginShape"))?
                .iter()
                .map(|d| match d.as_i64() {
                    Some(d) if d >= 0 => Ok(d as u64),
                    _ => Err(anyhow!("{UNPACK_INFO_KEY}[{key}].OriginShape is not a shape")),
                })
                .collect::<Result<Vec<u64>>>()?;
            let slices = spec
                .get("slices")
                .and_then(|s| s.as_seq())
                .ok_or_else(|| anyhow!("{UNPACK_INFO_KEY}[{key}] has no slices"))?
                .iter()
                .map(|s| {
                    s.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| anyhow!("{UNPACK_INFO_KEY}[{key}].slices holds a non-str"))
                })
                .collect::<Result<Vec<String>>>()?;
            parts_of.insert(key, (shape, slices));
        }
    }
    let is_part: std::collections::HashSet<&str> =
        parts_of.values().flat_map(|(_, s)| s.iter().map(String::as_str)).collect();
    for (k, x) in entries {
        let Some(key) = key_string(k) else { continue };
        if key == NAME_TABLE_KEY || key == UNPACK_INFO_KEY || is_part.contains(key.as_str()) {
            continue;
        }
        collect(x, join(&path, &key), out)?;
    }
    for (key, (shape, slices)) in parts_of {
        let mut pieces = Vec::with_capacity(slices.len());
        for s in &slices {
            let part =
                v.get(s).and_then(leaf_array).ok_or_else(|| anyhow!("split parameter {key}: part {s} is missing"))?;
            pieces.push(part);
        }
        let joined = join_parts(&key, &shape, &pieces)?;
        insert(out, join(&path, &key), joined)?;
    }
    Ok(())
}

fn join_parts(key: &str, shape: &[u64], parts: &[&NdArray]) -> Result<NdArray> {
    let dtype: Option<DType> = parts.first().and_then(|p| p.dtype);
    let dtype = dtype.ok_or_else(|| anyhow!("split parameter {key} has no parts"))?;
    let mut data = Vec::new();
    for p in parts {
        if p.dtype != Some(dtype) || p.fortran && p.shape.len() > 1 {
            bail!("split parameter {key}: parts differ in dtype or layout");
        }
        data.extend_from_slice(&p.data);
    }
    let numel = shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .ok_or_else(|| anyhow!("split parameter {key}: shape overflows"))?;
    if numel.checked_mul(dtype.size() as u64) != Some(data.len() as u64) {
        bail!(
            "split parameter {key}: parts hold {} bytes, OriginShape {shape:?} of {} needs {}",
            data.len(),
            dtype.name(),
            numel.saturating_mul(dtype.size() as u64)
        );
    }
    Ok(NdArray { dtype: Some(dtype), shape: shape.to_vec(), fortran: false, data: Arc::from(data) })
}
