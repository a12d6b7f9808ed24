//! A restricted, non-executing unpickler for the checkpoint formats of the Python world:
//! `torch.save` (`data.pkl`), TorchScript archives and `paddle.save` / plain `pickle` files of
//! numpy arrays.
//!
//! Python's `pickle.load` runs arbitrary code: `GLOBAL` imports any callable and `REDUCE` calls it.
//! This reader never does. Every `GLOBAL` must name one of a small set of constructors whose
//! effect is re-implemented here as pure data building (an `OrderedDict`, a numpy array, a lazy
//! torch tensor descriptor, ...), and the caller narrows that set further per format through
//! [`Options`]. Anything else fails with [`PickleError::DisallowedGlobal`], e.g.
//! `disallowed global os.system`.
//!
//! Untrusted input is handled with bounded work and memory:
//! * every declared length is checked against the bytes that remain before anything is read,
//!   so a length larger than the input is an error, never an allocation;
//! * the machine keeps one node per created object in an arena and shares memoised objects by
//!   index, so `BINGET` never copies; turning the arena into a [`Value`] tree is charged against a
//!   budget proportional to the input length (this stops "billion laughs" style expansion) and
//!   limited in depth (this stops deep nesting and cycles);
//! * no arithmetic on input values can overflow (checked everywhere) and no input can panic.
//!
//! The supported opcodes are those of protocols 2 to 5 plus the text opcodes `GLOBAL`, `INT`,
//! `LONG`, `FLOAT`, `GET`, `PUT` and `PERSID`; the protocol-0 string forms, `INST`/`OBJ`, the
//! extension registry and out-of-band buffers are rejected.
//!
//! Layout: the public data types, [`Options`] and the entry points are here; `machine` runs
//! the opcodes on an arena of nodes, `op` names the opcode bytes and decodes their inline
//! payloads, `limits` holds the bounds (declared lengths against the input, the value budget,
//! the depth limit, tensor views against their storage) and `globals` the allow-list with the
//! data-only constructors behind it.

mod globals;
mod limits;
mod machine;
mod op;

pub use globals::{Global, KNOWN_GLOBALS};
pub use limits::{DEFAULT_MAX_DEPTH, MAX_DIMS};

use machine::Machine;
use std::collections::BTreeSet;
use std::sync::Arc;
use tch::Kind;

/// Element types of tensors and arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// float64
    F64,
    /// float32
    F32,
    /// float16
    F16,
    /// bfloat16 (torch only)
    BF16,
    /// int64
    I64,
    /// int32
    I32,
    /// int16
    I16,
    /// int8
    I8,
    /// uint8
    U8,
    /// bool, one byte per element
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// The libtorch element kind.
    pub fn kind(self) -> Kind {
        match self {
            DType::F64 => Kind::Double,
            DType::F32 => Kind::Float,
            DType::F16 => Kind::Half,
            DType::BF16 => Kind::BFloat16,
            DType::I64 => Kind::Int64,
            DType::I32 => Kind::Int,
            DType::I16 => Kind::Int16,
            DType::I8 => Kind::Int8,
            DType::U8 => Kind::Uint8,
            DType::Bool => Kind::Bool,
        }
    }

    /// The name used in messages (numpy style).
    pub fn name(self) -> &'static str {
        match self {
            DType::F64 => "float64",
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    /// The dtype of a torch typed-storage class name such as `FloatStorage`.
    pub fn from_torch_storage(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => DType::F64,
            "FloatStorage" => DType::F32,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        })
    }

    /// The dtype of a numpy type code such as `f4`.
    pub fn from_numpy_code(code: &str) -> Option<Self> {
        Some(match code {
            "f8" => DType::F64,
            "f4" => DType::F32,
            "f2" => DType::F16,
            "i8" => DType::I64,
            "i4" => DType::I32,
            "i2" => DType::I16,
            "i1" => DType::I8,
            "u1" => DType::U8,
            "b1" => DType::Bool,
            _ => return None,
        })
    }
}

/// A torch storage named by a persistent id `('storage', torch.FloatStorage, key, location,
/// numel)`; its bytes live outside the pickle (`data/<key>` in a zip archive).
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// The storage's key (the file name under `data/`).
    pub key: String,
    /// Element type, from the storage class.
    pub dtype: DType,
    /// Device it was saved from (`cpu`, `cuda:0`); ignored when loading.
    pub location: String,
    /// Number of elements the pickle declares; the reader checks it against the stored bytes.
    pub numel: u64,
}

/// A tensor view of a storage, as `torch._utils._rebuild_tensor_v2` describes it. Built lazily:
/// the bytes are read by [`crate::io::torch_archive`]. The view is checked to lie within the
/// declared storage when it is unpickled.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// The storage viewed.
    pub storage: StorageRef,
    /// Offset of the first element, in elements.
    pub offset: u64,
    /// Shape.
    pub size: Vec<u64>,
    /// Strides, in elements.
    pub stride: Vec<u64>,
    /// Whether it was a parameter requiring grad (informational).
    pub requires_grad: bool,
}

impl TensorRef {
    /// Number of elements of the view.
    pub fn numel(&self) -> Option<u64> {
        self.size.iter().try_fold(1u64, |n, &d| n.checked_mul(d))
    }

    /// One past the largest storage element the view touches (0 for an empty view), or `None`
    /// on overflow.
    pub fn extent(&self) -> Option<u64> {
        if self.size.contains(&0) {
            return Some(0);
        }
        let mut last = self.offset;
        for (&d, &s) in self.size.iter().zip(&self.stride) {
            last = last.checked_add((d - 1).checked_mul(s)?)?;
        }
        last.checked_add(1)
    }
}

/// A numpy dtype under construction (`numpy.dtype(code, align, copy)` then `BUILD`).
#[derive(Debug, Clone, PartialEq)]
pub struct NpDtype {
    /// The type code, e.g. `f4`.
    pub code: String,
    /// Byte order: `<`, `>`, `|` or `=`.
    pub byteorder: char,
}

/// A numpy array. `data` holds the elements in little-endian byte order (big-endian input is
/// swapped when read), in C order unless `fortran` is set; its length is exactly
/// `numel * dtype.size()` once the array is built.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    /// Element type; `None` only while the array awaits its `BUILD`.
    pub dtype: Option<DType>,
    /// Shape.
    pub shape: Vec<u64>,
    /// Column-major element order.
    pub fortran: bool,
    /// Raw little-endian element bytes.
    pub data: Arc<[u8]>,
}

impl NdArray {
    /// Number of elements.
    pub fn numel(&self) -> Option<u64> {
        self.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d))
    }
}

/// An unpickled object.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`
    None,
    /// `bool`
    Bool(bool),
    /// `int` that fits in 64 bits
    Int(i64),
    /// `int` beyond 64 bits, as little-endian two's-complement bytes
    BigInt(Arc<[u8]>),
    /// `float`
    Float(f64),
    /// `str` (protocol-2 byte strings are decoded as latin-1, as `encoding='latin1'` does)
    Str(Arc<str>),
    /// `bytes` / `bytearray`
    Bytes(Arc<[u8]>),
    /// `list`
    List(Vec<Value>),
    /// `tuple`
    Tuple(Vec<Value>),
    /// `set` / `frozenset`
    Set(Vec<Value>),
    /// `dict` / `OrderedDict`, in insertion order
    Dict(Vec<(Value, Value)>),
    /// A reference to an allowed global that was not called.
    Global(Box<Global>),
    /// An instance of an allowed opaque class (TorchScript `__torch__.*` modules).
    Object(Box<Object>),
    /// A torch storage (persistent id).
    Storage(Box<StorageRef>),
    /// A lazy torch tensor.
    Tensor(Box<TensorRef>),
    /// A numpy array.
    Array(Box<NdArray>),
    /// A numpy dtype.
    Dtype(Box<NpDtype>),
}

/// An instance of an opaque class: its constructor arguments and the state `BUILD` gave it (for
/// TorchScript modules, a dict of attributes).
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// The class.
    pub class: Global,
    /// `NEWOBJ` arguments.
    pub args: Vec<Value>,
    /// `BUILD` state.
    pub state: Option<Value>,
}

impl Value {
    /// The Python-ish type name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Set(_) => "set",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Object(_) => "object",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
            Value::Array(_) => "ndarray",
            Value::Dtype(_) => "dtype",
        }
    }

    /// The string, if this is a `str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an `int` within 64 bits (or a `bool`, as in Python).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(i) => Some(i),
            Value::Bool(b) => Some(b as i64),
            _ => None,
        }
    }

    /// The entries, if this is a dict.
    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The items, if this is a tuple or a list.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }

    /// The value stored under the string key `key` (the last one, as Python keeps), if this is
    /// a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?.iter().rev().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }
}

/// Why a pickle was rejected.
#[derive(Debug, thiserror::Error)]
pub enum PickleError {
    /// The input ended inside an opcode or before `STOP`.
    #[error("truncated pickle: {what} at byte {offset} needs {need} bytes but only {have} remain")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Byte offset of the read.
        offset: usize,
        /// Bytes needed (as declared by the input).
        need: u64,
        /// Bytes left.
        have: usize,
    },
    /// A `GLOBAL` outside the allow-list.
    #[error("disallowed global {0}")]
    DisallowedGlobal(String),
    /// A byte that is no opcode.
    #[error("invalid pickle opcode 0x{op:02x} at byte {offset}")]
    UnknownOpcode {
        /// The byte.
        op: u8,
        /// Its offset.
        offset: usize,
    },
    /// An opcode this reader deliberately does not implement.
    #[error("unsupported pickle opcode {name} at byte {offset}")]
    UnsupportedOpcode {
        /// Its name.
        name: &'static str,
        /// Its offset.
        offset: usize,
    },
    /// Nesting over the depth limit (or a self-referencing structure).
    #[error("pickle nesting deeper than {0} levels (or a cyclic structure)")]
    TooDeep(usize),
    /// Shared references expand beyond the budget the input length allows.
    #[error("pickle expands to more than {0} values through shared references")]
    TooLarge(u64),
    /// Anything else that is malformed.
    #[error("invalid pickle at byte {offset}: {msg}")]
    Invalid {
        /// Offset of the opcode.
        offset: usize,
        /// What is wrong.
        msg: String,
    },
}

type PResult<T> = Result<T, PickleError>;

/// What a pickle may contain.
#[derive(Debug, Clone)]
pub struct Options {
    /// Allowed globals, as `module.name`; only those also in [`KNOWN_GLOBALS`] resolve.
    pub allowed_globals: BTreeSet<String>,
    /// Accept any `__torch__.*` class as an opaque [`Value::Object`] (TorchScript archives).
    pub torchscript_classes: bool,
    /// Accept torch storage persistent ids (`BINPERSID`); otherwise they are an error.
    pub torch_storages: bool,
    /// Nesting limit of the result.
    pub max_depth: usize,
}

/// [`KNOWN_GLOBALS`] without those whose name starts with `excluded`.
fn known_globals_except(excluded: Option<&str>) -> BTreeSet<String> {
    let keep = |g: &&&str| excluded.is_none_or(|prefix| !g.starts_with(prefix));
    KNOWN_GLOBALS.iter().filter(keep).map(|s| s.to_string()).collect()
}

impl Options {
    /// Only what `paddle.save` / `pickle.dump` of numpy arrays in (ordered) dicts needs.
    pub fn numpy() -> Self {
        Self {
            allowed_globals: known_globals_except(Some("torch.")),
            torchscript_classes: false,
            torch_storages: false,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }

    /// `torch.save` files (tensors, parameters, ordered dicts; numpy values are allowed too).
    pub fn torch() -> Self {
        Self {
            allowed_globals: known_globals_except(Some("torch.jit.")),
            torchscript_classes: false,
            torch_storages: true,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }

    /// TorchScript archives: like [`Options::torch`] plus `__torch__.*` objects and the
    /// `torch.jit._pickle` helpers.
    pub fn torchscript() -> Self {
        Self {
            allowed_globals: known_globals_except(None),
            torchscript_classes: true,
            torch_storages: true,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// Builds a tensor of `dtype` and `shape` from exactly `numel * elt_size` little-endian bytes:
/// how both torch storages and numpy arrays become tensors.
pub fn tensor_from_bytes(bytes: &[u8], shape: &[u64], dtype: DType) -> anyhow::Result<tch::Tensor> {
    let numel = shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .ok_or_else(|| anyhow::anyhow!("tensor shape {shape:?} overflows"))?;
    let need =
        numel.checked_mul(dtype.size() as u64).ok_or_else(|| anyhow::anyhow!("tensor shape {shape:?} overflows"))?;
    // libtorch copies numel * elt_size bytes from the pointer: the length must match exactly.
    if bytes.len() as u64 != need {
        anyhow::bail!("tensor of shape {shape:?} and {} needs {need} bytes, got {}", dtype.name(), bytes.len());
    }
    let dims = shape
        .iter()
        .map(|&d| i64::try_from(d).map_err(|_| anyhow::anyhow!("dimension {d} too large")))
        .collect::<anyhow::Result<Vec<i64>>>()?;
    let normalized;
    let bytes = if dtype == DType::Bool && bytes.iter().any(|&b| b > 1) {
        // A bool byte other than 0/1 is not a valid libtorch bool.
        normalized = bytes.iter().map(|&b| (b != 0) as u8).collect::<Vec<u8>>();
        &normalized[..]
    } else {
        bytes
    };
    Ok(tch::Tensor::f_from_data_size(bytes, &dims, dtype.kind())?)
}

/// Unpickles one complete pickle that must span all of `data`.
pub fn unpickle(data: &[u8], opts: &Options) -> PResult<Value> {
    let (value, used) = unpickle_prefix(data, opts)?;
    if used != data.len() {
        return Err(PickleError::Invalid {
            offset: used,
            msg: format!("{} bytes of trailing data after STOP", data.len() - used),
        });
    }
    Ok(value)
}

/// Unpickles the pickle at the start of `data`; returns it and the number of bytes it used
/// (legacy torch files are several pickles in a row).
pub fn unpickle_prefix(data: &[u8], opts: &Options) -> PResult<(Value, usize)> {
    let mut m = Machine::new(data, opts);
    let value = m.run()?;
    Ok((value, m.pos))
}
