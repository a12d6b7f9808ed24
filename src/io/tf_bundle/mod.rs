//! Reading TensorFlow tensor-bundle checkpoints, as `tf.compat.v1.train.Saver` and
//! `tf.train.Checkpoint` write them: `<prefix>.index` plus `<prefix>.data-00000-of-00001`.
//!
//! * **`<prefix>.index`** is a LevelDB-style SSTable. Its last 48 bytes are the footer: the
//!   metaindex and index BlockHandles (two varint64 each: offset, size), zero padding to 40
//!   bytes, and the magic `0xdb4775248b80fb57` (fixed64, little-endian). Every block is followed
//!   by a 5-byte trailer, a compression-type byte (0 = none; TensorFlow never compresses bundle
//!   indexes, and snappy blocks are refused) and the masked CRC32C of the block and that byte.
//!   A block is a run of prefix-compressed entries (varint32 shared, non_shared, value_length,
//!   the key suffix, the value), then its restart offsets (u32 LE each) and their count. The
//!   index block maps to the data blocks' handles; the metaindex block is empty.
//! * **Keys** are sorted bytewise. The empty key holds the `BundleHeaderProto` (`num_shards`,
//!   `endianness`, `version`); every other key is a variable name (no `:0`) whose value is a
//!   `BundleEntryProto` (`dtype`, `shape`, `shard_id`, `offset`, `size`, `crc32c`, `slices`).
//!   The few protobuf fields needed are decoded here by hand; unknown fields are skipped.
//! * **`<prefix>.data-SSSSS-of-NNNNN`** holds each tensor's raw bytes, row-major and
//!   little-endian, at `[offset, offset + size)` of shard `shard_id`, with the masked CRC32C of
//!   those bytes in the entry.
//!
//! Every offset, size and count is checked against the bytes that exist before it is used,
//! every block CRC and tensor CRC is verified, and nothing is allocated in proportion to a
//! declared count, so a malformed or hostile bundle yields an error rather than a panic. The data
//! shards are memory-mapped and only the tensors asked for are read (and copied into tensors).
//! Not handled, each refused with its own error: snappy-compressed index blocks, big-endian
//! bundles, tensors saved in slices (partitioned variables), and string, variant, complex and
//! quantized dtypes.
//!
//! Tensors come back as stored: TensorFlow's layouts (conv kernels HWIO, dense kernels
//! `[in, out]`), no transposition.

//!
//! [`table`] reads the SSTable (footer, blocks, CRCs), [`proto`] the few protobuf messages; this
//! module turns the entries into tensors.

mod proto;
mod table;

pub use table::{is_index, mask_crc, masked_crc32c, parse_index, MAGIC};

use crate::io::pickle::{tensor_from_bytes, DType};
use anyhow::{anyhow, bail, Context, Result};
use memmap2::Mmap;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// TensorFlow's `DataType` codes that this reader can turn into tensors.
pub mod dtype {
    /// `DT_FLOAT`
    pub const FLOAT: i32 = 1;
    /// `DT_DOUBLE`
    pub const DOUBLE: i32 = 2;
    /// `DT_INT32`
    pub const INT32: i32 = 3;
    /// `DT_UINT8`
    pub const UINT8: i32 = 4;
    /// `DT_INT16`
    pub const INT16: i32 = 5;
    /// `DT_INT8`
    pub const INT8: i32 = 6;
    /// `DT_INT64`
    pub const INT64: i32 = 9;
    /// `DT_BOOL`
    pub const BOOL: i32 = 10;
    /// `DT_BFLOAT16`
    pub const BFLOAT16: i32 = 14;
    /// `DT_HALF`
    pub const HALF: i32 = 19;
}

/// The name of a TensorFlow `DataType` code, for messages.
pub fn dtype_name(code: i32) -> &'static str {
    match code {
        0 => "DT_INVALID",
        1 => "DT_FLOAT",
        2 => "DT_DOUBLE",
        3 => "DT_INT32",
        4 => "DT_UINT8",
        5 => "DT_INT16",
        6 => "DT_INT8",
        7 => "DT_STRING",
        8 => "DT_COMPLEX64",
        9 => "DT_INT64",
        10 => "DT_BOOL",
        11 => "DT_QINT8",
        12 => "DT_QUINT8",
        13 => "DT_QINT32",
        14 => "DT_BFLOAT16",
        15 => "DT_QINT16",
        16 => "DT_QUINT16",
        17 => "DT_UINT16",
        18 => "DT_COMPLEX128",
        19 => "DT_HALF",
        20 => "DT_RESOURCE",
        21 => "DT_VARIANT",
        22 => "DT_UINT32",
        23 => "DT_UINT64",
        _ => "an unknown DataType",
    }
}

/// The element type a TensorFlow `DataType` code is read as, if it is supported.
pub fn element_dtype(code: i32) -> Option<DType> {
    Some(match code {
        dtype::FLOAT => DType::F32,
        dtype::DOUBLE => DType::F64,
        dtype::INT32 => DType::I32,
        dtype::UINT8 => DType::U8,
        dtype::INT16 => DType::I16,
        dtype::INT8 => DType::I8,
        dtype::INT64 => DType::I64,
        dtype::BOOL => DType::Bool,
        dtype::BFLOAT16 => DType::BF16,
        dtype::HALF => DType::F16,
        _ => return None,
    })
}

/// One tensor's `BundleEntryProto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// TensorFlow `DataType` code (see [`dtype`], [`dtype_name`]).
    pub dtype: i32,
    /// Dimensions, outermost first; empty for a scalar. Each is non-negative.
    pub shape: Vec<i64>,
    /// The data shard that holds the bytes (`shard_id`).
    pub shard: u32,
    /// Byte offset in that shard.
    pub offset: u64,
    /// Byte length in that shard.
    pub size: u64,
    /// The masked CRC32C of the bytes; `None` when the field is absent (proto3's default 0,
    /// which is still what the bytes are checked against, as TensorFlow does).
    pub crc32c: Option<u32>,
}

impl Entry {
    /// The number of elements, if it fits in a `u64`.
    pub fn numel(&self) -> Option<u64> {
        self.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(u64::try_from(d).ok()?))
    }
}

/// A parsed `.index` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// Variable name → entry, sorted by name (bytewise, as stored).
    pub entries: BTreeMap<String, Entry>,
    /// The number of data shards the header declares.
    pub num_shards: u32,
}

pub(super) fn lossy(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// `<prefix>.index`.
pub fn index_path(prefix: &Path) -> PathBuf {
    with_suffix(prefix, ".index")
}

/// `<prefix>.data-<shard:05>-of-<num_shards:05>`.
pub fn shard_path(prefix: &Path, shard: u32, num_shards: u32) -> PathBuf {
    with_suffix(prefix, &format!(".data-{shard:05}-of-{num_shards:05}"))
}

/// The prefix of a `.data-NNNNN-of-NNNNN` file name, if it is one.
fn strip_data_suffix(name: &str) -> Option<&str> {
    let at = name.rfind(".data-")?;
    let rest = name.get(at + ".data-".len()..)?;
    let (a, b) = rest.split_once("-of-")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    (digits(a) && digits(b)).then(|| name.get(..at)).flatten()
}

/// Unquotes a text-format string (`"…"` or `'…'` with C escapes).
fn unquote(s: &str) -> Option<String> {
    let s = s.trim();
    let quote = s.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let inner = s.get(1..)?.strip_suffix(quote)?;
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let mut it = inner.bytes().peekable();
    while let Some(c) = it.next() {
        if c != b'\\' {
            out.push(c);
            continue;
        }
        match it.next()? {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'x' => {
                let mut v = 0u8;
                let mut n = 0;
                while let Some(d) = it.peek().and_then(|d| (*d as char).to_digit(16)).filter(|_| n < 2) {
                    v = v.wrapping_mul(16).wrapping_add(d as u8);
                    it.next();
                    n += 1;
                }
                if n == 0 {
                    return None;
                }
                out.push(v);
            }
            d @ b'0'..=b'7' => {
                let mut v = u32::from(d - b'0');
                for _ in 0..2 {
                    match it.peek() {
                        Some(&o @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(o - b'0');
                            it.next();
                        }
                        _ => break,
                    }
                }
                out.push(u8::try_from(v).ok()?);
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).ok()
}

/// The prefix named by `model_checkpoint_path` in a folder's `checkpoint` file.
fn prefix_from_checkpoint_file(dir: &Path) -> Result<PathBuf> {
    let state = dir.join("checkpoint");
    let text = std::fs::read_to_string(&state).with_context(|| {
        format!("{} is a folder without a readable `checkpoint` file (looked for {})", dir.display(), state.display())
    })?;
    let mut named = None;
    // Text-format `CheckpointState`; a repeated singular field keeps its last value.
    for line in text.lines() {
        let Some((field, value)) = line.split_once(':') else { continue };
        if field.trim() == "model_checkpoint_path" {
            named = Some(
                unquote(value).ok_or_else(|| anyhow!("{}: cannot read the line {:?}", state.display(), line.trim()))?,
            );
        }
    }
    let named = named.ok_or_else(|| anyhow!("{}: no `model_checkpoint_path` line", state.display()))?;
    let named_path = Path::new(&named);
    let first = if named_path.is_absolute() { named_path.to_path_buf() } else { dir.join(named_path) };
    let mut tried = vec![index_path(&first)];
    if index_path(&first).is_file() {
        return Ok(first);
    }
    // The default Saver records the path as given at training time; the bundle may have moved.
    if let Some(base) = named_path.file_name() {
        let moved = dir.join(base);
        if index_path(&moved).is_file() {
            return Ok(moved);
        }
        tried.push(index_path(&moved));
    }
    let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    bail!("{} names {named:?}, but no index file exists: looked for {}", state.display(), tried.join(" and "))
}

/// The bundle prefix that `path` names: the prefix itself (`…/UGATIT.model-1000`), its `.index`
/// file, one of its `.data-NNNNN-of-NNNNN` files, or a folder holding a `checkpoint` file (whose
/// `model_checkpoint_path`, the latest checkpoint, is taken relative to the folder unless
/// absolute, then as a basename in the folder). The prefix's `.index` file must exist.
pub fn resolve_prefix(path: &Path) -> Result<PathBuf> {
    if path.is_dir() {
        return prefix_from_checkpoint_file(path);
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let prefix = if let Some(p) = name.strip_suffix(".index") {
        path.with_file_name(p)
    } else if let Some(p) = strip_data_suffix(name) {
        path.with_file_name(p)
    } else {
        path.to_path_buf()
    };
    let index = index_path(&prefix);
    if !index.is_file() {
        bail!(
            "no TensorFlow checkpoint at {}: looked for {} (give a checkpoint prefix, its .index or .data file, \
             or a folder with a `checkpoint` file)",
            path.display(),
            index.display()
        );
    }
    Ok(prefix)
}

/// An open tensor bundle: its parsed index and its memory-mapped data shards.
#[derive(Debug)]
pub struct Bundle {
    prefix: PathBuf,
    index: Index,
    /// Shard id → its file and mapping (`None` for an empty file), for the shards that entries use.
    shards: BTreeMap<u32, (PathBuf, Option<Mmap>)>,
}

impl Bundle {
    /// Opens the bundle that `path` names (see [`resolve_prefix`]): reads and checks its index
    /// and memory-maps every data shard an entry refers to. No tensor is read yet.
    ///
    /// The mapping assumes the data files are not modified while the bundle is open.
    pub fn open(path: &Path) -> Result<Bundle> {
        let prefix = resolve_prefix(path)?;
        let index_file = index_path(&prefix);
        let bytes = std::fs::read(&index_file).with_context(|| format!("reading {}", index_file.display()))?;
        let index = parse_index(&bytes).with_context(|| format!("{}", index_file.display()))?;
        let mut shards = BTreeMap::new();
        for e in index.entries.values() {
            if shards.contains_key(&e.shard) {
                continue;
            }
            let file = shard_path(&prefix, e.shard, index.num_shards);
            let f = File::open(&file).with_context(|| format!("opening data shard {}", file.display()))?;
            let len = f.metadata().with_context(|| format!("reading {}", file.display()))?.len();
            let map = if len == 0 {
                None
            } else {
                // SAFETY: the mapping is read-only; like every reader of memory-mapped files, this
                // relies on the file not being truncated or rewritten while the bundle is open.
                Some(unsafe { Mmap::map(&f) }.with_context(|| format!("memory-mapping {}", file.display()))?)
            };
            shards.insert(e.shard, (file, map));
        }
        Ok(Bundle { prefix, index, shards })
    }

    /// The checkpoint prefix (`…/UGATIT.model-1000`).
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The number of data shards the header declares.
    pub fn num_shards(&self) -> u32 {
        self.index.num_shards
    }

    /// Every entry, by variable name.
    pub fn entries(&self) -> &BTreeMap<String, Entry> {
        &self.index.entries
    }

    /// The entry of variable `name`.
    pub fn entry(&self, name: &str) -> Result<&Entry> {
        self.index.entries.get(name).ok_or_else(|| {
            anyhow!(
                "{}: no variable named {name:?} ({} entries)",
                index_path(&self.prefix).display(),
                self.index.entries.len()
            )
        })
    }

    /// The raw bytes of `name`, checked against the shard's length, the entry's size and its CRC.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let e = self.entry(name)?;
        let (file, map) =
            self.shards.get(&e.shard).ok_or_else(|| anyhow!("{name}: shard {} was not opened", e.shard))?;
        let data: &[u8] = map.as_deref().unwrap_or(&[]);
        let end = e.offset.checked_add(e.size);
        let bytes = end
            .and_then(|end| {
                let (start, end) = (usize::try_from(e.offset).ok()?, usize::try_from(end).ok()?);
                data.get(start..end)
            })
            .ok_or_else(|| {
                anyhow!(
                    "{}: variable {name:?} at offset {} of size {} passes the end of the file ({} bytes): \
                     the data file is truncated or does not belong to this index",
                    file.display(),
                    e.offset,
                    e.size,
                    data.len()
                )
            })?;
        let actual = masked_crc32c(bytes);
        let stored = e.crc32c.unwrap_or(0);
        if actual != stored {
            bail!(
                "{}: variable {name:?} at offset {}: CRC mismatch (stored masked crc32c {stored:#010x}, computed \
                 {actual:#010x}): the data file is corrupt",
                file.display(),
                e.offset
            );
        }
        Ok(bytes)
    }

    /// Reads variable `name` into a CPU tensor of its stored dtype and shape, in TensorFlow's
    /// row-major layout as stored (no transposition).
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let e = self.entry(name)?;
        let at = || format!("{}: variable {name:?}", index_path(&self.prefix).display());
        let dtype = element_dtype(e.dtype)
            .ok_or_else(|| anyhow!("{}: dtype {} ({}) not supported", at(), dtype_name(e.dtype), e.dtype))?;
        let need = e
            .numel()
            .and_then(|n| n.checked_mul(dtype.size() as u64))
            .ok_or_else(|| anyhow!("{}: shape {:?} overflows", at(), e.shape))?;
        if need != e.size {
            bail!("{}: shape {:?} of {} needs {need} bytes but the entry says {}", at(), e.shape, dtype.name(), e.size);
        }
        let bytes = self.tensor_bytes(name)?;
        let shape: Vec<u64> = e.shape.iter().map(|&d| d as u64).collect();
        tensor_from_bytes(bytes, &shape, dtype).with_context(at)
    }
}

#[cfg(test)]
mod tests {
    use super::proto::{parse_entry, Reader, MAX_GROUP_DEPTH};
    use super::*;

    #[test]
    fn varints() {
        let v = |b: &[u8], bits| Reader::new(b).varint(bits, "t");
        assert_eq!(v(&[0x00], 32).unwrap(), 0);
        assert_eq!(v(&[0x96, 0x01], 32).unwrap(), 150);
        assert_eq!(v(&[0xff, 0xff, 0xff, 0xff, 0x0f], 32).unwrap(), u64::from(u32::MAX));
        assert!(v(&[0xff, 0xff, 0xff, 0xff, 0x1f], 32).is_err());
        assert!(v(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 32).is_err());
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(v(&max, 64).unwrap(), u64::MAX);
        let mut over = max;
        over[9] = 0x02;
        assert!(v(&over, 64).is_err());
        assert!(v(&[0x80, 0x80], 64).is_err());
    }

    #[test]
    fn data_suffix() {
        assert_eq!(strip_data_suffix("m-1.data-00000-of-00001"), Some("m-1"));
        assert_eq!(strip_data_suffix("m-1.data-0-of-"), None);
        assert_eq!(strip_data_suffix("m-1.index"), None);
    }

    #[test]
    fn unquoting() {
        assert_eq!(unquote(r#" "UGATIT.model-1000""#).as_deref(), Some("UGATIT.model-1000"));
        assert_eq!(unquote(r#""a\"b\\c\101\x41""#).as_deref(), Some("a\"b\\cAA"));
        assert_eq!(unquote("'x'").as_deref(), Some("x"));
        assert_eq!(unquote("x"), None);
        assert_eq!(unquote(r#""a\"#), None);
    }

    #[test]
    fn unknown_fields_and_groups() {
        // dtype 1, an unknown fixed64 (field 9), an unknown group (field 10) holding a nested
        // group and a varint, an unknown length-delimited field, then size 5 = 4.
        let mut b = vec![0x08, 0x01, 0x49, 0, 0, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(&[0x53, 0x5b, 0x08, 0x05, 0x5c, 0x54]);
        b.extend_from_slice(&[0x62, 0x02, 0xaa, 0xbb, 0x28, 0x04]);
        let e = parse_entry(&b).unwrap();
        assert_eq!((e.dtype, e.size), (1, 4));
        // A group closed by the wrong field, and one nested past the limit.
        assert!(parse_entry(&[0x53, 0x64]).is_err());
        let deep: Vec<u8> = std::iter::repeat_n(0x53, MAX_GROUP_DEPTH + 1).collect();
        assert!(parse_entry(&deep).unwrap_err().to_string().contains("nested"));
    }
}
