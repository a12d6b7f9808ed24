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
//! The zip reader is our own and small: it parses only what these files use (stored and
//! deflated entries, zip64 sizes), checks every offset and size against the file and verifies
//! CRCs, and inflates with an output limit equal to the declared size, so a malformed or hostile
//! archive yields an error rather than a panic or an allocation beyond what the file justifies.

use crate::io::pickle::{self, DType, Options, TensorRef, Value};
use anyhow::{anyhow, bail, Context, Result};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::Tensor;

// ------------------------------------------------------------------------------------------
// Zip.

/// One member of a zip archive.
#[derive(Debug, Clone)]
pub struct ZipEntry {
    /// Its path inside the archive.
    pub name: String,
    /// 0 = stored, 8 = deflate.
    pub method: u16,
    /// CRC-32 of the uncompressed data.
    pub crc32: u32,
    /// Compressed size in bytes.
    pub compressed_size: u64,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// Offset of the local header.
    header_offset: u64,
}

/// The central directory of a zip archive held in memory.
#[derive(Debug, Clone)]
pub struct ZipIndex {
    entries: Vec<ZipEntry>,
    by_name: HashMap<String, usize>,
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

fn to_usize(v: u64, what: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| anyhow!("zip: {what} {v} does not fit in memory"))
}

const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD64_LOCATOR_SIG: u32 = 0x0706_4b50;
const EOCD64_SIG: u32 = 0x0606_4b50;
const CDH_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;

impl ZipIndex {
    /// Parses the central directory of the zip archive `data`.
    pub fn parse(data: &[u8]) -> Result<Self> {
        if data.len() < 22 {
            bail!("truncated zip archive: {} bytes is shorter than an end record", data.len());
        }
        // The end-of-central-directory record is within the last 22 + 65535 bytes.
        let lowest = data.len().saturating_sub(22 + 0xffff);
        let eocd = (lowest..=data.len() - 22)
            .rev()
            .find(|&i| {
                le32(data, i) == Some(EOCD_SIG) && le16(data, i + 20).map(|c| i + 22 + c as usize) == Some(data.len())
            })
            .or_else(|| {
                // Tolerate trailing garbage after the comment: take the last signature.
                (lowest..=data.len() - 22).rev().find(|&i| le32(data, i) == Some(EOCD_SIG))
            })
            .ok_or_else(|| anyhow!("truncated zip archive: no end of central directory record"))?;
        let short = |at: usize| le16(data, eocd + at).unwrap_or(0);
        let long = |at: usize| le32(data, eocd + at).unwrap_or(0);
        let mut count = short(10) as u64;
        let mut cd_size = long(12) as u64;
        let mut cd_offset = long(16) as u64;
        if count == 0xffff || cd_size == 0xffff_ffff || cd_offset == 0xffff_ffff {
            // Zip64: the locator sits right before the end record.
            let loc = eocd
                .checked_sub(20)
                .filter(|&l| le32(data, l) == Some(EOCD64_LOCATOR_SIG))
                .ok_or_else(|| anyhow!("zip: zip64 sizes without a zip64 locator"))?;
            let rec = le64(data, loc + 8).ok_or_else(|| anyhow!("zip: truncated zip64 locator"))?;
            let rec = to_usize(rec, "zip64 record offset")?;
            if le32(data, rec) != Some(EOCD64_SIG) {
                bail!("zip: zip64 end record not found at offset {rec}");
            }
            let field = |at: usize| {
                le64(data, rec.saturating_add(at)).ok_or_else(|| anyhow!("zip: truncated zip64 end record"))
            };
            count = field(32)?;
            cd_size = field(40)?;
            cd_offset = field(48)?;
        }
        let cd_start = to_usize(cd_offset, "central directory offset")?;
        let cd_end = cd_start
            .checked_add(to_usize(cd_size, "central directory size")?)
            .filter(|&e| e <= data.len())
            .ok_or_else(|| {
                anyhow!(
                    "truncated zip archive: central directory at {cd_offset} (+{cd_size} bytes) lies beyond the {} bytes of the file",
                    data.len()
                )
            })?;
        let cd = &data[cd_start..cd_end];
        let mut entries = Vec::new();
        let mut by_name = HashMap::new();
        let mut at = 0usize;
        for i in 0..count {
            if le32(cd, at) != Some(CDH_SIG) {
                bail!("zip: central directory entry {i} of {count} is missing or corrupt");
            }
            let f16 = |o: usize| le16(cd, at + o).ok_or_else(|| anyhow!("zip: truncated central directory"));
            let f32_ = |o: usize| le32(cd, at + o).ok_or_else(|| anyhow!("zip: truncated central directory"));
            let flags = f16(8)?;
            let method = f16(10)?;
            let crc32 = f32_(16)?;
            let mut compressed_size = f32_(20)? as u64;
            let mut size = f32_(24)? as u64;
            let name_len = f16(28)? as usize;
            let extra_len = f16(30)? as usize;
            let comment_len = f16(32)? as usize;
            let mut header_offset = f32_(42)? as u64;
            let name_at = at + 46;
            let extra_at = name_at + name_len;
            let next = extra_at + extra_len + comment_len;
            let (Some(name), Some(extra)) = (cd.get(name_at..extra_at), cd.get(extra_at..extra_at + extra_len)) else {
                bail!("zip: truncated central directory");
            };
            // Zip64 extra field: the 64-bit values of the fields set to 0xffffffff, in order.
            let mut e = 0usize;
            while e + 4 <= extra.len() {
                let id = le16(extra, e).unwrap_or(0);
                let len = le16(extra, e + 2).unwrap_or(0) as usize;
                let body = extra.get(e + 4..e + 4 + len).unwrap_or(&[]);
                if id == 0x0001 {
                    let mut p = 0usize;
                    let mut next64 = |v: &mut u64| {
                        if *v == 0xffff_ffff {
                            if let Some(x) = le64(body, p) {
                                *v = x;
                                p += 8;
                            }
                        }
                    };
                    next64(&mut size);
                    next64(&mut compressed_size);
                    next64(&mut header_offset);
                }
                e += 4 + len;
            }
            if flags & 1 != 0 {
                bail!("zip: entry {} is encrypted", String::from_utf8_lossy(name));
            }
            let name = String::from_utf8_lossy(name).into_owned();
            by_name.entry(name.clone()).or_insert(entries.len());
            entries.push(ZipEntry { name, method, crc32, compressed_size, size, header_offset });
            at = next;
        }
        Ok(Self { entries, by_name })
    }

    /// All members, in central-directory order.
    pub fn entries(&self) -> &[ZipEntry] {
        &self.entries
    }

    /// The member called `name`.
    pub fn entry(&self, name: &str) -> Option<&ZipEntry> {
        self.by_name.get(name).and_then(|&i| self.entries.get(i))
    }

    /// The uncompressed bytes of member `name` of the archive `data` (borrowed when stored).
    pub fn read<'a>(&self, data: &'a [u8], name: &str) -> Result<Cow<'a, [u8]>> {
        let e = self.entry(name).ok_or_else(|| anyhow!("zip: no member {name}"))?;
        read_entry(data, e)
    }
}

fn read_entry<'a>(data: &'a [u8], e: &ZipEntry) -> Result<Cow<'a, [u8]>> {
    let name = &e.name;
    let h = to_usize(e.header_offset, "local header offset")?;
    if le32(data, h) != Some(LOCAL_SIG) {
        bail!("truncated zip archive: local header of {name} missing at offset {h}");
    }
    let (Some(n), Some(x)) = (le16(data, h + 26), le16(data, h + 28)) else {
        bail!("truncated zip archive: local header of {name}");
    };
    let start = h + 30 + n as usize + x as usize;
    let end = start
        .checked_add(to_usize(e.compressed_size, "compressed size")?)
        .filter(|&end| end <= data.len())
        .ok_or_else(|| {
            anyhow!(
                "truncated zip archive: {name} needs {} bytes at offset {start}, the file has {}",
                e.compressed_size,
                data.len()
            )
        })?;
    let raw = &data[start..end];
    let out: Cow<[u8]> = match e.method {
        0 => {
            if e.size != e.compressed_size {
                bail!("zip: stored member {name} has different sizes");
            }
            Cow::Borrowed(raw)
        }
        8 => {
            // The limit is the declared size, so a deflate bomb stops there.
            let limit = to_usize(e.size, "uncompressed size")?;
            let v = miniz_oxide::inflate::decompress_to_vec_with_limit(raw, limit)
                .map_err(|err| anyhow!("zip: cannot inflate {name}: {:?}", err.status))?;
            if v.len() != limit {
                bail!("zip: {name} inflates to {} bytes, {} declared", v.len(), limit);
            }
            Cow::Owned(v)
        }
        m => bail!("zip: {name} uses compression method {m}; only stored and deflate are supported"),
    };
    let crc = crc32fast::hash(&out);
    if crc != e.crc32 {
        bail!("zip: CRC mismatch in {name} (corrupt file)");
    }
    Ok(out)
}

/// The uncompressed bytes of `member` inside the zip archive `zip` (e.g. a `.pt` file inside a
/// Python wheel).
pub fn zip_member(zip: &[u8], member: &str) -> Result<Vec<u8>> {
    Ok(ZipIndex::parse(zip)?.read(zip, member)?.into_owned())
}

/// The uncompressed bytes of `member` inside the zip file at `zip_path`.
pub fn read_zip_member(zip_path: &Path, member: &str) -> Result<Vec<u8>> {
    let data = std::fs::read(zip_path).with_context(|| format!("reading {}", zip_path.display()))?;
    zip_member(&data, member).with_context(|| format!("{}", zip_path.display()))
}

// ------------------------------------------------------------------------------------------
// Torch files.

/// The magic number that starts a legacy (non-zip) `torch.save` file.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// Whether `data` starts like a legacy `torch.save` file (a pickle of the magic number).
pub fn is_legacy_torch(data: &[u8]) -> bool {
    // PROTO 2, LONG1 10, magic
    data.len() >= 14 && data[..4] == [0x80, 0x02, 0x8a, 0x0a] && data[4..14] == LEGACY_MAGIC
}

/// Whether `data` starts like a zip archive.
pub fn is_zip(data: &[u8]) -> bool {
    data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06")
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
    data: Vec<u8>,
    root: Value,
    storages: Storages,
    big_endian: bool,
}

impl TorchFile {
    /// Reads a `torch.save` file (zip or legacy format).
    pub fn open(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_bytes(data).with_context(|| format!("{}", path.display()))
    }

    /// Parses a `torch.save` file held in memory (zip or legacy format).
    pub fn from_bytes(data: Vec<u8>) -> Result<Self> {
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
        Self::from_zip(data, &Options::torchscript())
    }

    fn from_zip(data: Vec<u8>, opts: &Options) -> Result<Self> {
        let index = ZipIndex::parse(&data)?;
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

    fn from_legacy(data: Vec<u8>) -> Result<Self> {
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

/// Builds a tensor of `kind` and `shape` from exactly `numel * elt_size` bytes.
pub(crate) fn tensor_from_bytes(bytes: &[u8], shape: &[u64], dtype: DType) -> Result<Tensor> {
    let numel = shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .ok_or_else(|| anyhow!("tensor shape {shape:?} overflows"))?;
    let need = numel.checked_mul(dtype.size() as u64).ok_or_else(|| anyhow!("tensor shape {shape:?} overflows"))?;
    // libtorch copies numel * elt_size bytes from the pointer: the length must match exactly.
    if bytes.len() as u64 != need {
        bail!("tensor of shape {shape:?} and {} needs {need} bytes, got {}", dtype.name(), bytes.len());
    }
    let dims = shape
        .iter()
        .map(|&d| i64::try_from(d).map_err(|_| anyhow!("dimension {d} too large")))
        .collect::<Result<Vec<i64>>>()?;
    let normalized;
    let bytes = if dtype == DType::Bool && bytes.iter().any(|&b| b > 1) {
        // A bool byte other than 0/1 is not a valid libtorch bool.
        normalized = bytes.iter().map(|&b| (b != 0) as u8).collect::<Vec<u8>>();
        &normalized[..]
    } else {
        bytes
    };
    Ok(Tensor::f_from_data_size(bytes, &dims, dtype.kind())?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip_of_nothing_is_an_error() {
        assert!(ZipIndex::parse(b"").is_err());
        assert!(ZipIndex::parse(&[0u8; 100]).is_err());
        // An empty but valid archive.
        let mut eocd = vec![0u8; 22];
        eocd[..4].copy_from_slice(&EOCD_SIG.to_le_bytes());
        assert_eq!(ZipIndex::parse(&eocd).unwrap().entries().len(), 0);
    }
}
