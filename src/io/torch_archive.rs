//! Reading `torch.save` files and TorchScript archives without Python.
//!
//! * The zip format of torch >= 1.6: `<root>/data.pkl` (the pickled object, tensors as
//!   `_rebuild_tensor_v2` calls whose storages are persistent ids) plus one entry
//!   `<root>/data/<key>` of raw little-endian elements per storage. The root folder name varies
//!   (`archive`, the file stem, `out_jit_module`, ...).
//! * The legacy format of torch < 1.6 (`_use_new_zipfile_serialization=False`): a magic-number
//!   pickle, a protocol-version pickle, a sys-info pickle, the object pickle, a pickled list of
//!   storage keys, then per key an 8-byte element count and the raw elements.
//! * TorchScript archives (`torch.jit.save`): the same zip layout, with `__torch__.*` module
//!   objects in `data.pkl` whose `BUILD` state holds their attributes.
//!
//! The zip archives are read by [`crate::io::zip`] (re-exported here: [`ZipIndex`], [`ZipEntry`],
//! [`zip_member`], [`read_zip_member`], [`is_zip`]).

use crate::io::file_bytes::FileBytes;
use crate::io::pickle::{self, tensor_from_bytes, DType, Options, TensorRef, Value};
pub use crate::io::zip::{is_zip, read_zip_member, zip_member, ZipEntry, ZipIndex};
use crate::io::zip::{le64, to_usize};
use anyhow::{anyhow, bail, Context, Result};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::Tensor;

// ------------------------------------------------------------------------------------------
// Torch files.

/// The magic number that starts a legacy (non-zip) `torch.save` file.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// Whether `data` starts like a legacy `torch.save` file (a pickle of the magic number).
pub fn is_legacy_torch(data: &[u8]) -> bool {
    // PROTO 2, LONG1 10, magic
    data.len() >= 14 && data[..4] == [0x80, 0x02, 0x8a, 0x0a] && data[4..14] == LEGACY_MAGIC
}

#[derive(Debug)]
enum Storages {
    /// Zip archive: storages are members `<root>/data/<key>`.
    Zip { index: ZipIndex, root: String },
    /// Legacy file: byte ranges of each storage's elements.
    Legacy(HashMap<String, (usize, u64)>),
}

/// An unpickled `torch.save` file or TorchScript archive: the object tree, with tensors as lazy
/// [`TensorRef`]s that [`TorchFile::tensor`] reads from the file's storages.
#[derive(Debug)]
pub struct TorchFile {
    data: FileBytes,
    root: Value,
    storages: Storages,
    big_endian: bool,
}

impl TorchFile {
    /// Reads a `torch.save` file (zip or legacy format).
    pub fn open(path: &Path) -> Result<Self> {
        Self::from_bytes(FileBytes::open(path)?).with_context(|| format!("{}", path.display()))
    }

    /// Parses a `torch.save` file held in memory or mapped (zip or legacy format); tensors are
    /// read from its storages only when asked for.
    pub fn from_bytes(data: impl Into<FileBytes>) -> Result<Self> {
        let data = data.into();
        if is_zip(&data) {
            Self::from_zip(data, &Options::torch())
        } else if is_legacy_torch(&data) {
            Self::from_legacy(data)
        } else if data.is_empty() {
            bail!("empty file")
        } else {
            bail!("wrong magic: not a torch.save file (neither a zip archive nor a legacy torch pickle)")
        }
    }

    /// Parses a TorchScript archive held in memory.
    pub fn torchscript_from_bytes(data: Vec<u8>) -> Result<Self> {
        if !is_zip(&data) {
            bail!("wrong magic: a TorchScript archive is a zip file");
        }
        Self::from_zip(data.into(), &Options::torchscript())
    }

    fn from_zip(data: FileBytes, opts: &Options) -> Result<Self> {
        let index = ZipIndex::parse(&data)?;
        let torchscript =
            index.entries().iter().any(|e| e.name.contains("/code/") || e.name.ends_with("/constants.pkl"));
        if torchscript && !opts.torchscript_classes {
            bail!("this is a TorchScript archive (torch.jit.save), not a checkpoint of state_dicts");
        }
        // torch names the root folder freely; its data.pkl is at depth one.
        let pkl = index
            .entries()
            .iter()
            .map(|e| e.name.as_str())
            .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
            .ok_or_else(|| anyhow!("not a torch archive: no <root>/data.pkl member"))?
            .to_string();
        let root = pkl.trim_end_matches("data.pkl").to_string();
        let big_endian = match index.entry(&format!("{root}byteorder")) {
            Some(_) => {
                let b = index.read(&data, &format!("{root}byteorder"))?;
                match &b[..] {
                    b"little" => false,
                    b"big" => true,
                    other => bail!("unknown byteorder {:?}", String::from_utf8_lossy(other)),
                }
            }
            None => false,
        };
        let pickled = index.read(&data, &pkl)?;
        let root_value = pickle::unpickle(&pickled, opts).with_context(|| format!("unpickling {pkl}"))?;
        Ok(Self { root: root_value, storages: Storages::Zip { index, root }, data, big_endian })
    }

    fn from_legacy(data: FileBytes) -> Result<Self> {
        let mut pos = 0usize;
        let mut next = |opts: &Options, what: &str| -> Result<Value> {
            let rest = data.get(pos..).unwrap_or(&[]);
            let (v, used) = pickle::unpickle_prefix(rest, opts)
                .with_context(|| format!("legacy torch file: reading the {what}"))?;
            pos += used;
            Ok(v)
        };
        let plain = Options::numpy();
        let _magic = next(&plain, "magic number")?;
        let version = next(&plain, "protocol version")?;
        if version.as_i64() != Some(1001) {
            bail!("legacy torch file: unsupported protocol version {version:?}");
        }
        let sys_info = next(&plain, "system info")?;
        if let Some(Value::Bool(false)) = sys_info.get("little_endian") {
            bail!("legacy torch file: big-endian files are not supported");
        }
        let root = next(&Options::torch(), "object")?;
        let keys = next(&plain, "storage keys")?;
        let keys = keys.as_seq().ok_or_else(|| anyhow!("legacy torch file: storage keys are not a list"))?;
        // Element sizes come from the storage references in the object.
        let mut dtypes = HashMap::new();
        collect_storages(&root, &mut dtypes);
        let mut ranges = HashMap::new();
        for key in keys {
            let key = key.as_str().ok_or_else(|| anyhow!("legacy torch file: a storage key is not a str"))?;
            let dtype = *dtypes
                .get(key)
                .ok_or_else(|| anyhow!("legacy torch file: storage {key} is not used by any tensor"))?;
            let numel = le64(&data, pos)
                .ok_or_else(|| anyhow!("truncated legacy torch file: storage {key} header at byte {pos}"))?;
            pos += 8;
            let nbytes = numel
                .checked_mul(dtype.size() as u64)
                .filter(|&n| n <= (data.len() - pos) as u64)
                .ok_or_else(|| {
                    anyhow!(
                        "truncated legacy torch file: storage {key} declares {numel} elements of {} at byte {pos}, but only {} bytes remain",
                        dtype.name(),
                        data.len() - pos
                    )
                })?;
            ranges.insert(key.to_string(), (pos, numel));
            pos += nbytes as usize;
        }
        Ok(Self { data, root, storages: Storages::Legacy(ranges), big_endian: false })
    }

    /// The unpickled object.
    pub fn root(&self) -> &Value {
        &self.root
    }

    /// The elements of the storage a tensor views, checked against the declared size.
    fn storage_bytes(&self, t: &TensorRef) -> Result<Cow<'_, [u8]>> {
        let s = &t.storage;
        let need =
            s.numel.checked_mul(s.dtype.size() as u64).ok_or_else(|| anyhow!("storage {} size overflows", s.key))?;
        let bytes: Cow<[u8]> = match &self.storages {
            Storages::Zip { index, root } => {
                let name = format!("{root}data/{}", s.key);
                let b = index.read(&self.data, &name).with_context(|| format!("storage {} of a tensor", s.key))?;
                if (b.len() as u64) < need {
                    bail!(
                        "storage {name} holds {} bytes, but the pickle declares {} elements of {} ({need} bytes)",
                        b.len(),
                        s.numel,
                        s.dtype.name()
                    );
                }
                b
            }
            Storages::Legacy(ranges) => {
                let &(at, numel) =
                    ranges.get(&s.key).ok_or_else(|| anyhow!("storage {} is missing from the file", s.key))?;
                if numel < s.numel {
                    bail!("storage {} holds {numel} elements, but the pickle declares {}", s.key, s.numel);
                }
                let end = at.checked_add(to_usize(need, "storage size")?);
                match end.and_then(|end| self.data.get(at..end)) {
                    Some(b) => Cow::Borrowed(b),
                    None => bail!("storage {} lies beyond the end of the file", s.key),
                }
            }
        };
        match bytes {
            Cow::Borrowed(b) => Ok(Cow::Borrowed(&b[..need as usize])),
            Cow::Owned(mut v) => {
                v.truncate(need as usize);
                Ok(Cow::Owned(v))
            }
        }
    }

    /// Reads one tensor (a fresh, contiguous CPU tensor that owns its memory).
    pub fn tensor(&self, t: &TensorRef) -> Result<Tensor> {
        let storage = self.storage_bytes(t)?;
        tensor_from_storage(&storage, t, self.big_endian)
    }

    /// Every tensor in the object, named by its path: dict keys, list indices and object
    /// attributes joined with `.` (for `{genA2B: state_dict}`: `genA2B.DownBlock.1.weight`; for
    /// a TorchScript module: its `state_dict()` names).
    pub fn tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        self.tensors_of(&self.root, "")
    }

    /// Like [`TorchFile::tensors`] for a part of the object, names prefixed by `prefix`.
    pub fn tensors_of(&self, value: &Value, prefix: &str) -> Result<BTreeMap<String, Tensor>> {
        let mut refs = Vec::new();
        tensor_paths(value, prefix.to_string(), &mut refs);
        let mut out = BTreeMap::new();
        for (name, t) in refs {
            let tensor = self.tensor(t).with_context(|| format!("tensor {name}"))?;
            if out.insert(name.clone(), tensor).is_some() {
                bail!("two tensors are both named {name}");
            }
        }
        Ok(out)
    }
}

fn collect_storages(v: &Value, out: &mut HashMap<String, DType>) {
    match v {
        Value::Tensor(t) => {
            out.insert(t.storage.key.clone(), t.storage.dtype);
        }
        Value::Storage(s) => {
            out.insert(s.key.clone(), s.dtype);
        }
        Value::List(xs) | Value::Tuple(xs) | Value::Set(xs) => xs.iter().for_each(|x| collect_storages(x, out)),
        Value::Dict(kvs) => kvs.iter().for_each(|(_, x)| collect_storages(x, out)),
        Value::Object(o) => {
            o.args.iter().for_each(|x| collect_storages(x, out));
            if let Some(s) = &o.state {
                collect_storages(s, out);
            }
        }
        _ => {}
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Walks the dict/list/tuple/object tree under `v`, naming each node by its dotted path (dict
/// keys and list indices; an object stands for its state). `take` sees each node first and says
/// whether it kept it; the walk descends into the containers it did not keep. Recursion depth is
/// bounded by the unpickler's depth limit.
fn walk<'v>(v: &'v Value, path: String, take: &mut impl FnMut(&str, &'v Value) -> bool) {
    if take(&path, v) {
        return;
    }
    match v {
        Value::Dict(kvs) => {
            for (k, x) in kvs {
                let key = match k {
                    Value::Str(s) => s.to_string(),
                    Value::Int(i) => i.to_string(),
                    _ => continue,
                };
                walk(x, join(&path, &key), take);
            }
        }
        Value::List(xs) | Value::Tuple(xs) => {
            for (i, x) in xs.iter().enumerate() {
                walk(x, join(&path, &i.to_string()), take);
            }
        }
        Value::Object(o) => {
            if let Some(state) = &o.state {
                walk(state, path, take)
            }
        }
        _ => {}
    }
}

/// Collects `(path, tensor)` for every tensor under `v`.
fn tensor_paths<'v>(v: &'v Value, path: String, out: &mut Vec<(String, &'v TensorRef)>) {
    walk(v, path, &mut |path, x| match x {
        Value::Tensor(t) => {
            out.push((path.to_string(), &**t));
            true
        }
        _ => false,
    });
}

fn swapped(bytes: &[u8], size: usize) -> Vec<u8> {
    let mut v = bytes.to_vec();
    for c in v.chunks_exact_mut(size) {
        c.reverse();
    }
    v
}

/// Materialises a view of `storage` (the storage's elements) as a contiguous tensor.
fn tensor_from_storage(storage: &[u8], t: &TensorRef, big_endian: bool) -> Result<Tensor> {
    let es = t.storage.dtype.size();
    let storage_numel = (storage.len() / es) as u64;
    // Re-check the view: a TensorRef may also be built by hand.
    if t.size.len() != t.stride.len() {
        bail!("tensor size and stride differ in length");
    }
    let numel = t.numel().ok_or_else(|| anyhow!("tensor out of bounds: size {:?} overflows", t.size))?;
    let extent =
        t.extent().ok_or_else(|| anyhow!("tensor out of bounds: size {:?} stride {:?} overflows", t.size, t.stride))?;
    if extent > storage_numel || numel > storage_numel {
        bail!(
            "tensor out of bounds: size {:?} stride {:?} offset {} needs {extent} elements, storage {} has {storage_numel}",
            t.size,
            t.stride,
            t.offset,
            t.storage.key
        );
    }
    if numel == 0 {
        return tensor_from_bytes(&[], &t.size, t.storage.dtype);
    }
    let owned;
    let storage = if big_endian && es > 1 {
        owned = swapped(&storage[..extent as usize * es], es);
        &owned[..]
    } else {
        storage
    };
    // Contiguous views (the usual case) are one slice of the storage.
    let mut expected = 1u64;
    let mut contiguous = true;
    for (&d, &s) in t.size.iter().zip(&t.stride).rev() {
        if d != 1 && s != expected {
            contiguous = false;
        }
        expected = expected.saturating_mul(d);
    }
    let off = t.offset as usize;
    if contiguous {
        let bytes = &storage[off * es..(off + numel as usize) * es];
        return tensor_from_bytes(bytes, &t.size, t.storage.dtype);
    }
    let span = &storage[off * es..extent as usize * es];
    let flat = tensor_from_bytes(span, &[extent - t.offset], t.storage.dtype)?;
    let size: Vec<i64> = t.size.iter().map(|&d| d as i64).collect();
    // A stride of a size-1 dimension never moves; normalise it so that it fits in i64.
    let stride: Vec<i64> = t.size.iter().zip(&t.stride).map(|(&d, &s)| if d == 1 { 1 } else { s as i64 }).collect();
    let view = flat.f_as_strided(size.as_slice(), stride.as_slice(), 0)?;
    Ok(view.f_contiguous()?)
}

// ------------------------------------------------------------------------------------------
// TorchScript.

/// Every tensor attribute of the module tree of a TorchScript archive (`torch.jit.save`), named
/// by its attribute path from the root module, which is what `torch.jit.load(f).state_dict()`
/// calls them (e.g. `net.layers.conv.weight`). Tensors in lists are named by index.
pub fn read_torchscript_tensors(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    read_torchscript_tensors_from_bytes(data).with_context(|| format!("{}", path.display()))
}

/// [`read_torchscript_tensors`] on an archive held in memory (e.g. from [`zip_member`]).
pub fn read_torchscript_tensors_from_bytes(data: Vec<u8>) -> Result<BTreeMap<String, Tensor>> {
    let file = TorchFile::torchscript_from_bytes(data)?;
    if !matches!(file.root(), Value::Object(_)) {
        bail!("not a TorchScript module: the archive holds a {}", file.root().type_name());
    }
    file.tensors()
}

/// The non-tensor attributes of a TorchScript module tree (or any unpickled object), named
/// like [`TorchFile::tensors`]: scalars (`None`, bool, int, float, str) and tuples/lists of
/// scalars, e.g. `net.layers.conv.stride` → `Int(2)`. Module bookkeeping such as `training`
/// is included; callers pick what they need.
pub fn attributes(value: &Value) -> BTreeMap<String, Value> {
    fn scalar(v: &Value) -> bool {
        matches!(v, Value::None | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Str(_))
    }
    let mut out = BTreeMap::new();
    walk(value, String::new(), &mut |path, v| {
        let kept = match v {
            Value::Tuple(xs) | Value::List(xs) => xs.iter().all(scalar),
            v => scalar(v),
        };
        if kept {
            out.insert(path.to_string(), v.clone());
        }
        kept
    });
    out
}
