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

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use tch::Kind;

/// Default limit on the nesting depth of the resulting [`Value`].
pub const DEFAULT_MAX_DEPTH: usize = 256;

/// Most dimensions a tensor or array may have (numpy allows 64).
pub const MAX_DIMS: usize = 64;

/// A Python global, `module.name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Global {
    /// The module, e.g. `collections`.
    pub module: String,
    /// The attribute, e.g. `OrderedDict`.
    pub name: String,
}

impl Global {
    fn new(module: &str, name: &str) -> Self {
        // Python 3 maps the Python 2 module names of protocol <= 2 pickles (`fix_imports`).
        let module = match module {
            "__builtin__" => "builtins",
            "copy_reg" => "copyreg",
            m => m,
        };
        Self { module: module.to_string(), name: name.to_string() }
    }

    /// `module.name`.
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.module, self.name)
    }

    fn is(&self, full: &str) -> bool {
        self.full_name() == full
    }
}

impl fmt::Display for Global {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Escape control characters: the name comes from untrusted input and ends up in messages.
        write!(f, "{}.{}", self.module.escape_debug(), self.name.escape_debug())
    }
}

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

/// Globals that have a data-only implementation here. An [`Options`] allow-list can only
/// select among these (plus TorchScript classes).
pub const KNOWN_GLOBALS: &[&str] = &[
    "collections.OrderedDict",
    "builtins.tuple",
    "builtins.list",
    "builtins.set",
    "builtins.frozenset",
    "builtins.bytes",
    "builtins.bytearray",
    "_codecs.encode",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.ndarray",
    "numpy.dtype",
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch.Size",
    "torch.DoubleStorage",
    "torch.FloatStorage",
    "torch.HalfStorage",
    "torch.BFloat16Storage",
    "torch.LongStorage",
    "torch.IntStorage",
    "torch.ShortStorage",
    "torch.CharStorage",
    "torch.ByteStorage",
    "torch.BoolStorage",
    "torch.jit._pickle.build_intlist",
    "torch.jit._pickle.build_floatlist",
    "torch.jit._pickle.build_doublelist",
    "torch.jit._pickle.build_boollist",
    "torch.jit._pickle.build_tensorlist",
    "torch.jit._pickle.restore_type_tag",
];

const NUMPY_GLOBALS: &[&str] = &[
    "collections.OrderedDict",
    "builtins.tuple",
    "builtins.list",
    "builtins.set",
    "builtins.frozenset",
    "builtins.bytes",
    "builtins.bytearray",
    "_codecs.encode",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.ndarray",
    "numpy.dtype",
];

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

impl Options {
    /// Only what `paddle.save` / `pickle.dump` of numpy arrays in (ordered) dicts needs.
    pub fn numpy() -> Self {
        Self {
            allowed_globals: NUMPY_GLOBALS.iter().map(|s| s.to_string()).collect(),
            torchscript_classes: false,
            torch_storages: false,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }

    /// `torch.save` files (tensors, parameters, ordered dicts; numpy values are allowed too).
    pub fn torch() -> Self {
        Self {
            allowed_globals: KNOWN_GLOBALS
                .iter()
                .filter(|g| !g.starts_with("torch.jit."))
                .map(|s| s.to_string())
                .collect(),
            torchscript_classes: false,
            torch_storages: true,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }

    /// TorchScript archives: like [`Options::torch`] plus `__torch__.*` objects and the
    /// `torch.jit._pickle` helpers.
    pub fn torchscript() -> Self {
        Self {
            allowed_globals: KNOWN_GLOBALS.iter().map(|s| s.to_string()).collect(),
            torchscript_classes: true,
            torch_storages: true,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }

    fn allows(&self, g: &Global) -> bool {
        if self.torchscript_classes && g.module.starts_with("__torch__") {
            return true;
        }
        let full = g.full_name();
        self.allowed_globals.contains(&full) && KNOWN_GLOBALS.contains(&full.as_str())
    }
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

// ------------------------------------------------------------------------------------------
// The machine.

type Id = usize;

/// Arena node: containers refer to their items by id, so memo sharing costs nothing and
/// mutation after memoisation (`EMPTY_DICT BINPUT ... SETITEMS`) is seen by every reference.
#[derive(Debug)]
enum Node {
    Leaf(Value),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Set(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Object(Box<NodeObject>),
}

#[derive(Debug)]
struct NodeObject {
    class: Global,
    args: Vec<Id>,
    state: Option<Id>,
}

impl Node {
    fn type_name(&self) -> &'static str {
        match self {
            Node::Leaf(v) => v.type_name(),
            Node::List(_) => "list",
            Node::Tuple(_) => "tuple",
            Node::Set(_) => "set",
            Node::Dict(_) => "dict",
            Node::Object(_) => "object",
        }
    }
}

struct Machine<'a, 'o> {
    data: &'a [u8],
    pos: usize,
    /// Offset of the opcode being executed (for messages).
    op_at: usize,
    opts: &'o Options,
    nodes: Vec<Node>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
    /// Values that materialising may still produce.
    budget: u64,
    budget_total: u64,
}

mod op {
    pub const MARK: u8 = b'(';
    pub const STOP: u8 = b'.';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const FLOAT: u8 = b'F';
    pub const INT: u8 = b'I';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const LONG: u8 = b'L';
    pub const BININT2: u8 = b'M';
    pub const NONE: u8 = b'N';
    pub const PERSID: u8 = b'P';
    pub const BINPERSID: u8 = b'Q';
    pub const REDUCE: u8 = b'R';
    pub const STRING: u8 = b'S';
    pub const BINSTRING: u8 = b'T';
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const UNICODE: u8 = b'V';
    pub const BINUNICODE: u8 = b'X';
    pub const APPEND: u8 = b'a';
    pub const BUILD: u8 = b'b';
    pub const GLOBAL: u8 = b'c';
    pub const DICT: u8 = b'd';
    pub const EMPTY_DICT: u8 = b'}';
    pub const APPENDS: u8 = b'e';
    pub const GET: u8 = b'g';
    pub const BINGET: u8 = b'h';
    pub const INST: u8 = b'i';
    pub const LONG_BINGET: u8 = b'j';
    pub const LIST: u8 = b'l';
    pub const EMPTY_LIST: u8 = b']';
    pub const OBJ: u8 = b'o';
    pub const PUT: u8 = b'p';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const SETITEM: u8 = b's';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const SETITEMS: u8 = b'u';
    pub const BINFLOAT: u8 = b'G';
    pub const PROTO: u8 = 0x80;
    pub const NEWOBJ: u8 = 0x81;
    pub const EXT1: u8 = 0x82;
    pub const EXT2: u8 = 0x83;
    pub const EXT4: u8 = 0x84;
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BINBYTES8: u8 = 0x8e;
    pub const EMPTY_SET: u8 = 0x8f;
    pub const ADDITEMS: u8 = 0x90;
    pub const FROZENSET: u8 = 0x91;
    pub const NEWOBJ_EX: u8 = 0x92;
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const MEMOIZE: u8 = 0x94;
    pub const FRAME: u8 = 0x95;
    pub const BYTEARRAY8: u8 = 0x96;
    pub const NEXT_BUFFER: u8 = 0x97;
    pub const READONLY_BUFFER: u8 = 0x98;
}

impl<'a, 'o> Machine<'a, 'o> {
    fn new(data: &'a [u8], opts: &'o Options) -> Self {
        // One materialised value per input byte plus slack: legitimate files produce far
        // fewer values than bytes, while shared-reference bombs blow through it at once.
        let budget = (data.len() as u64).saturating_add(1 << 20);
        Self {
            data,
            pos: 0,
            op_at: 0,
            opts,
            nodes: Vec::new(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            budget,
            budget_total: budget,
        }
    }

    fn invalid<T>(&self, msg: impl Into<String>) -> PResult<T> {
        Err(PickleError::Invalid { offset: self.op_at, msg: msg.into() })
    }

    // ---- reading ------------------------------------------------------------------------

    fn take(&mut self, n: u64, what: &'static str) -> PResult<&'a [u8]> {
        let have = self.data.len() - self.pos;
        if n > have as u64 {
            return Err(PickleError::Truncated { what, offset: self.pos, need: n, have });
        }
        let start = self.pos;
        // n <= have, so this fits in usize and stays in bounds.
        self.pos += n as usize;
        Ok(&self.data[start..self.pos])
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> PResult<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> PResult<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> PResult<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> PResult<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn i32(&mut self, what: &'static str) -> PResult<i32> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> PResult<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A `\n`-terminated line (without the newline).
    fn line(&mut self, what: &'static str) -> PResult<&'a [u8]> {
        let rest = &self.data[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(n) => {
                let line = &rest[..n];
                self.pos += n + 1;
                Ok(line)
            }
            None => {
                Err(PickleError::Truncated { what, offset: self.pos, need: rest.len() as u64 + 1, have: rest.len() })
            }
        }
    }

    fn line_str(&mut self, what: &'static str) -> PResult<&'a str> {
        let line = self.line(what)?;
        match std::str::from_utf8(line) {
            Ok(s) => Ok(s),
            Err(_) => self.invalid(format!("{what} is not valid UTF-8")),
        }
    }

    // ---- stack --------------------------------------------------------------------------

    fn push_node(&mut self, node: Node) -> Id {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn push(&mut self, node: Node) {
        let id = self.push_node(node);
        self.stack.push(id);
    }

    fn push_value(&mut self, v: Value) {
        self.push(Node::Leaf(v));
    }

    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> PResult<Id> {
        if self.stack.len() <= self.floor() {
            return self.invalid("stack underflow");
        }
        match self.stack.pop() {
            Some(id) => Ok(id),
            None => self.invalid("stack underflow"),
        }
    }

    fn top(&self) -> PResult<Id> {
        if self.stack.len() <= self.floor() {
            return self.invalid("stack underflow");
        }
        match self.stack.last() {
            Some(&id) => Ok(id),
            None => self.invalid("stack underflow"),
        }
    }

    fn pop_mark(&mut self) -> PResult<Vec<Id>> {
        let Some(mark) = self.marks.pop() else {
            return self.invalid("MARK expected on the stack");
        };
        if mark > self.stack.len() {
            return self.invalid("stack underflow below MARK");
        }
        Ok(self.stack.split_off(mark))
    }

    fn node(&self, id: Id) -> &Node {
        // Ids only come from push_node, so they are always valid.
        &self.nodes[id]
    }

    fn memo_get(&mut self, key: u64) -> PResult<()> {
        match self.memo.get(&key) {
            Some(&id) => {
                self.stack.push(id);
                Ok(())
            }
            None => self.invalid(format!("memo key {key} was never stored")),
        }
    }

    fn memo_put(&mut self, key: u64) -> PResult<()> {
        let id = self.top()?;
        self.memo.insert(key, id);
        Ok(())
    }

    // ---- materialising ------------------------------------------------------------------

    fn charge(&mut self, n: u64) -> PResult<()> {
        if n > self.budget {
            return Err(PickleError::TooLarge(self.budget_total));
        }
        self.budget -= n;
        Ok(())
    }

    fn materialize(&mut self, id: Id, depth: usize) -> PResult<Value> {
        if depth > self.opts.max_depth {
            return Err(PickleError::TooDeep(self.opts.max_depth));
        }
        self.charge(1)?;
        let items = |m: &mut Self, ids: &[Id]| -> PResult<Vec<Value>> {
            let mut out = Vec::with_capacity(ids.len());
            for &i in ids {
                out.push(m.materialize(i, depth + 1)?);
            }
            Ok(out)
        };
        // Clone the id lists (cheap, bounded by the arena) so that recursion can borrow self.
        match self.node(id) {
            Node::Leaf(v) => Ok(v.clone()),
            Node::List(ids) => {
                let ids = ids.clone();
                Ok(Value::List(items(self, &ids)?))
            }
            Node::Tuple(ids) => {
                let ids = ids.clone();
                Ok(Value::Tuple(items(self, &ids)?))
            }
            Node::Set(ids) => {
                let ids = ids.clone();
                Ok(Value::Set(items(self, &ids)?))
            }
            Node::Dict(pairs) => {
                let pairs = pairs.clone();
                let mut out = Vec::with_capacity(pairs.len());
                for (k, v) in pairs {
                    let k = self.materialize(k, depth + 1)?;
                    let v = self.materialize(v, depth + 1)?;
                    out.push((k, v));
                }
                Ok(Value::Dict(out))
            }
            Node::Object(o) => {
                let (class, args, state) = (o.class.clone(), o.args.clone(), o.state);
                let args = items(self, &args)?;
                let state = match state {
                    Some(s) => Some(self.materialize(s, depth + 1)?),
                    None => None,
                };
                Ok(Value::Object(Box::new(Object { class, args, state })))
            }
        }
    }

    /// Stores a value built by a constructor in the arena (containers become container nodes
    /// so that later `APPEND`/`SETITEMS`/`BUILD` can mutate them).
    fn intern(&mut self, v: Value, depth: usize) -> PResult<Id> {
        if depth > self.opts.max_depth {
            return Err(PickleError::TooDeep(self.opts.max_depth));
        }
        let many = |m: &mut Self, vs: Vec<Value>| -> PResult<Vec<Id>> {
            vs.into_iter().map(|v| m.intern(v, depth + 1)).collect()
        };
        let node = match v {
            Value::List(vs) => Node::List(many(self, vs)?),
            Value::Tuple(vs) => Node::Tuple(many(self, vs)?),
            Value::Set(vs) => Node::Set(many(self, vs)?),
            Value::Dict(kvs) => {
                let mut pairs = Vec::with_capacity(kvs.len());
                for (k, v) in kvs {
                    pairs.push((self.intern(k, depth + 1)?, self.intern(v, depth + 1)?));
                }
                Node::Dict(pairs)
            }
            Value::Object(o) => {
                let Object { class, args, state } = *o;
                let args = many(self, args)?;
                let state = match state {
                    Some(s) => Some(self.intern(s, depth + 1)?),
                    None => None,
                };
                Node::Object(Box::new(NodeObject { class, args, state }))
            }
            leaf => Node::Leaf(leaf),
        };
        Ok(self.push_node(node))
    }

    // ---- the loop -----------------------------------------------------------------------

    fn run(&mut self) -> PResult<Value> {
        loop {
            self.op_at = self.pos;
            let code = self.u8("opcode")?;
            match code {
                op::STOP => {
                    let id = self.pop()?;
                    return self.materialize(id, 0);
                }
                op::PROTO => {
                    let p = self.u8("PROTO")?;
                    if p > 5 {
                        return self.invalid(format!("unsupported pickle protocol {p}"));
                    }
                }
                op::FRAME => {
                    // Frames only group opcodes for buffered reading; just check the length.
                    let n = self.u64("FRAME")?;
                    let have = self.data.len() - self.pos;
                    if n > have as u64 {
                        return Err(PickleError::Truncated { what: "FRAME", offset: self.pos, need: n, have });
                    }
                }
                op::MARK => self.marks.push(self.stack.len()),
                op::POP => {
                    if self.stack.len() > self.floor() {
                        self.pop()?;
                    } else {
                        self.pop_mark()?;
                    }
                }
                op::POP_MARK => {
                    self.pop_mark()?;
                }
                op::DUP => {
                    let id = self.top()?;
                    self.stack.push(id);
                }

                // -- scalars
                op::NONE => self.push_value(Value::None),
                op::NEWTRUE => self.push_value(Value::Bool(true)),
                op::NEWFALSE => self.push_value(Value::Bool(false)),
                op::BININT => {
                    let v = self.i32("BININT")?;
                    self.push_value(Value::Int(v as i64));
                }
                op::BININT1 => {
                    let v = self.u8("BININT1")?;
                    self.push_value(Value::Int(v as i64));
                }
                op::BININT2 => {
                    let v = self.u16("BININT2")?;
                    self.push_value(Value::Int(v as i64));
                }
                op::LONG1 => {
                    let n = self.u8("LONG1")? as u64;
                    let bytes = self.take(n, "LONG1")?;
                    self.push_value(decode_long(bytes));
                }
                op::LONG4 => {
                    let n = self.i32("LONG4")?;
                    if n < 0 {
                        return self.invalid("LONG4 with a negative length");
                    }
                    let bytes = self.take(n as u64, "LONG4")?;
                    self.push_value(decode_long(bytes));
                }
                op::INT => {
                    let line = self.line_str("INT")?;
                    let v = match line {
                        "01" => Value::Bool(true),
                        "00" => Value::Bool(false),
                        s => match s.trim().parse::<i64>() {
                            Ok(i) => Value::Int(i),
                            Err(_) => return self.invalid("INT is not a 64-bit integer"),
                        },
                    };
                    self.push_value(v);
                }
                op::LONG => {
                    let line = self.line_str("LONG")?;
                    let s = line.trim().trim_end_matches('L');
                    match s.parse::<i64>() {
                        Ok(i) => self.push_value(Value::Int(i)),
                        Err(_) => return self.invalid("LONG is not a 64-bit integer"),
                    }
                }
                op::BINFLOAT => {
                    let v = f64::from_be_bytes(self.array("BINFLOAT")?);
                    self.push_value(Value::Float(v));
                }
                op::FLOAT => {
                    let line = self.line_str("FLOAT")?;
                    match line.trim().parse::<f64>() {
                        Ok(f) => self.push_value(Value::Float(f)),
                        Err(_) => return self.invalid("FLOAT is not a number"),
                    }
                }

                // -- strings and bytes
                op::BINUNICODE => {
                    let n = self.u32("BINUNICODE")? as u64;
                    self.unicode(n, "BINUNICODE")?;
                }
                op::SHORT_BINUNICODE => {
                    let n = self.u8("SHORT_BINUNICODE")? as u64;
                    self.unicode(n, "SHORT_BINUNICODE")?;
                }
                op::BINUNICODE8 => {
                    let n = self.u64("BINUNICODE8")?;
                    self.unicode(n, "BINUNICODE8")?;
                }
                op::BINSTRING => {
                    let n = self.i32("BINSTRING")?;
                    if n < 0 {
                        return self.invalid("BINSTRING with a negative length");
                    }
                    let bytes = self.take(n as u64, "BINSTRING")?;
                    self.push_value(Value::Str(latin1(bytes)));
                }
                op::SHORT_BINSTRING => {
                    let n = self.u8("SHORT_BINSTRING")? as u64;
                    let bytes = self.take(n, "SHORT_BINSTRING")?;
                    self.push_value(Value::Str(latin1(bytes)));
                }
                op::BINBYTES => {
                    let n = self.u32("BINBYTES")? as u64;
                    let bytes = self.take(n, "BINBYTES")?;
                    self.push_value(Value::Bytes(Arc::from(bytes)));
                }
                op::SHORT_BINBYTES => {
                    let n = self.u8("SHORT_BINBYTES")? as u64;
                    let bytes = self.take(n, "SHORT_BINBYTES")?;
                    self.push_value(Value::Bytes(Arc::from(bytes)));
                }
                op::BINBYTES8 | op::BYTEARRAY8 => {
                    let what = if code == op::BINBYTES8 { "BINBYTES8" } else { "BYTEARRAY8" };
                    let n = self.u64(what)?;
                    let bytes = self.take(n, what)?;
                    self.push_value(Value::Bytes(Arc::from(bytes)));
                }

                // -- containers
                op::EMPTY_LIST => self.push(Node::List(Vec::new())),
                op::EMPTY_TUPLE => self.push(Node::Tuple(Vec::new())),
                op::EMPTY_DICT => self.push(Node::Dict(Vec::new())),
                op::EMPTY_SET => self.push(Node::Set(Vec::new())),
                op::LIST => {
                    let items = self.pop_mark()?;
                    self.push(Node::List(items));
                }
                op::TUPLE => {
                    let items = self.pop_mark()?;
                    self.push(Node::Tuple(items));
                }
                op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                    let n = (code - op::TUPLE1 + 1) as usize;
                    let mut items = vec![0; n];
                    for slot in items.iter_mut().rev() {
                        *slot = self.pop()?;
                    }
                    self.push(Node::Tuple(items));
                }
                op::DICT => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.push(Node::Dict(pairs));
                }
                op::FROZENSET => {
                    let items = self.pop_mark()?;
                    self.push(Node::Set(items));
                }
                op::APPEND => {
                    let v = self.pop()?;
                    self.extend_list(vec![v], "APPEND")?;
                }
                op::APPENDS => {
                    let items = self.pop_mark()?;
                    self.extend_list(items, "APPENDS")?;
                }
                op::SETITEM => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.extend_dict(vec![(k, v)], "SETITEM")?;
                }
                op::SETITEMS => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.extend_dict(pairs, "SETITEMS")?;
                }
                op::ADDITEMS => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    match &mut self.nodes[target] {
                        Node::Set(s) => s.extend(items),
                        other => {
                            let t = other.type_name();
                            return self.invalid(format!("ADDITEMS on a {t}"));
                        }
                    }
                }

                // -- memo
                op::BINGET => {
                    let k = self.u8("BINGET")? as u64;
                    self.memo_get(k)?;
                }
                op::LONG_BINGET => {
                    let k = self.u32("LONG_BINGET")? as u64;
                    self.memo_get(k)?;
                }
                op::GET => {
                    let line = self.line_str("GET")?;
                    let Ok(k) = line.trim().parse::<u64>() else {
                        return self.invalid("GET key is not a number");
                    };
                    self.memo_get(k)?;
                }
                op::BINPUT => {
                    let k = self.u8("BINPUT")? as u64;
                    self.memo_put(k)?;
                }
                op::LONG_BINPUT => {
                    let k = self.u32("LONG_BINPUT")? as u64;
                    self.memo_put(k)?;
                }
                op::PUT => {
                    let line = self.line_str("PUT")?;
                    let Ok(k) = line.trim().parse::<u64>() else {
                        return self.invalid("PUT key is not a number");
                    };
                    self.memo_put(k)?;
                }
                op::MEMOIZE => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }

                // -- objects
                op::GLOBAL => {
                    let module = self.line_str("GLOBAL module")?;
                    let name = self.line_str("GLOBAL name")?;
                    self.global(module, name)?;
                }
                op::STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Node::Leaf(Value::Str(m)), Node::Leaf(Value::Str(n))) = (self.node(module), self.node(name))
                    else {
                        return self.invalid("STACK_GLOBAL needs two strings");
                    };
                    let (m, n) = (m.clone(), n.clone());
                    self.global(&m, &n)?;
                }
                op::REDUCE => {
                    let args = self.pop()?;
                    let callee = self.pop()?;
                    let id = self.call(callee, args, "REDUCE")?;
                    self.stack.push(id);
                }
                op::NEWOBJ => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let id = self.call(cls, args, "NEWOBJ")?;
                    self.stack.push(id);
                }
                op::NEWOBJ_EX => {
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    match self.node(kwargs) {
                        Node::Dict(d) if d.is_empty() => {}
                        _ => return self.invalid("NEWOBJ_EX with keyword arguments"),
                    }
                    let id = self.call(cls, args, "NEWOBJ_EX")?;
                    self.stack.push(id);
                }
                op::BUILD => {
                    let state = self.pop()?;
                    let target = self.top()?;
                    self.build(target, state)?;
                }
                op::BINPERSID => {
                    let pid = self.pop()?;
                    let pid = self.materialize(pid, 0)?;
                    let v = self.persistent_load(pid)?;
                    self.push_value(v);
                }
                op::PERSID => {
                    let line = self.line_str("PERSID")?;
                    let v = self.persistent_load(Value::Str(Arc::from(line)))?;
                    self.push_value(v);
                }

                // -- deliberately unsupported
                op::STRING
                | op::UNICODE
                | op::INST
                | op::OBJ
                | op::EXT1
                | op::EXT2
                | op::EXT4
                | op::NEXT_BUFFER
                | op::READONLY_BUFFER => {
                    let name = match code {
                        op::STRING => "STRING",
                        op::UNICODE => "UNICODE",
                        op::INST => "INST",
                        op::OBJ => "OBJ",
                        op::EXT1 => "EXT1",
                        op::EXT2 => "EXT2",
                        op::EXT4 => "EXT4",
                        op::NEXT_BUFFER => "NEXT_BUFFER",
                        _ => "READONLY_BUFFER",
                    };
                    return Err(PickleError::UnsupportedOpcode { name, offset: self.op_at });
                }
                other => return Err(PickleError::UnknownOpcode { op: other, offset: self.op_at }),
            }
        }
    }

    fn unicode(&mut self, n: u64, what: &'static str) -> PResult<()> {
        let bytes = self.take(n, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                self.push_value(Value::Str(Arc::from(s)));
                Ok(())
            }
            Err(_) => self.invalid(format!("{what} is not valid UTF-8")),
        }
    }

    fn pairs(&self, items: Vec<Id>) -> PResult<Vec<(Id, Id)>> {
        if !items.len().is_multiple_of(2) {
            return self.invalid("odd number of items for a dict");
        }
        Ok(items.chunks_exact(2).map(|c| (c[0], c[1])).collect())
    }

    fn extend_list(&mut self, items: Vec<Id>, what: &str) -> PResult<()> {
        let target = self.top()?;
        match &mut self.nodes[target] {
            Node::List(l) => {
                l.extend(items);
                Ok(())
            }
            other => {
                let t = other.type_name();
                self.invalid(format!("{what} on a {t}"))
            }
        }
    }

    fn extend_dict(&mut self, pairs: Vec<(Id, Id)>, what: &str) -> PResult<()> {
        let target = self.top()?;
        match &mut self.nodes[target] {
            Node::Dict(d) => {
                d.extend(pairs);
                Ok(())
            }
            other => {
                let t = other.type_name();
                self.invalid(format!("{what} on a {t}"))
            }
        }
    }

    fn global(&mut self, module: &str, name: &str) -> PResult<()> {
        let g = Global::new(module, name);
        if !self.opts.allows(&g) {
            return Err(PickleError::DisallowedGlobal(g.to_string()));
        }
        self.push_value(Value::Global(Box::new(g)));
        Ok(())
    }

    /// `REDUCE` / `NEWOBJ`: applies an allowed constructor to its argument tuple.
    fn call(&mut self, callee: Id, args: Id, what: &str) -> PResult<Id> {
        let g = match self.node(callee) {
            Node::Leaf(Value::Global(g)) => (**g).clone(),
            other => {
                let t = other.type_name();
                return self.invalid(format!("{what} calls a {t}, not an allowed global"));
            }
        };
        let arg_ids = match self.node(args) {
            Node::Tuple(ids) => ids.clone(),
            other => {
                let t = other.type_name();
                return self.invalid(format!("{what} arguments of {g} are a {t}, not a tuple"));
            }
        };
        // TorchScript objects: keep their arguments by reference; BUILD adds the state.
        if g.module.starts_with("__torch__") {
            return Ok(self.push_node(Node::Object(Box::new(NodeObject { class: g, args: arg_ids, state: None }))));
        }
        // Containers are rebuilt from ids (no copying of their items), but the id lists are
        // charged to the budget so that repeated conversions of one big list stay bounded.
        let seq_of = |m: &mut Self, ids: &[Id]| -> PResult<Vec<Id>> {
            let items = match ids {
                [] => Vec::new(),
                [one] => match m.node(*one) {
                    Node::List(v) | Node::Tuple(v) | Node::Set(v) => v.clone(),
                    Node::Dict(d) => d.iter().map(|&(k, _)| k).collect(),
                    other => return m.invalid(format!("{g} of a {}, expected a list or tuple", other.type_name())),
                },
                _ => return m.invalid(format!("{g} takes at most one argument")),
            };
            m.charge(items.len() as u64)?;
            Ok(items)
        };
        if g.is("collections.OrderedDict") {
            let items = seq_of(self, &arg_ids)?;
            let mut pairs = Vec::with_capacity(items.len());
            for id in items {
                match self.node(id) {
                    Node::Tuple(kv) | Node::List(kv) if kv.len() == 2 => pairs.push((kv[0], kv[1])),
                    _ => return self.invalid("OrderedDict items must be (key, value) pairs"),
                }
            }
            return Ok(self.push_node(Node::Dict(pairs)));
        }
        if g.is("builtins.tuple") || g.is("torch.Size") {
            let items = seq_of(self, &arg_ids)?;
            return Ok(self.push_node(Node::Tuple(items)));
        }
        if g.is("builtins.list") {
            let items = seq_of(self, &arg_ids)?;
            return Ok(self.push_node(Node::List(items)));
        }
        if g.is("builtins.set") || g.is("builtins.frozenset") {
            let items = seq_of(self, &arg_ids)?;
            return Ok(self.push_node(Node::Set(items)));
        }
        if g.module == "torch.jit._pickle" {
            // build_*list(list) and restore_type_tag(value, type): the value itself.
            let Some(&first) = arg_ids.first() else {
                return self.invalid(format!("{g} without arguments"));
            };
            return Ok(first);
        }
        let mut vals = Vec::with_capacity(arg_ids.len());
        for id in arg_ids {
            vals.push(self.materialize(id, 1)?);
        }
        let v = match construct(&g, vals) {
            Ok(v) => v,
            Err(msg) => return self.invalid(msg),
        };
        self.intern(v, 0)
    }

    fn build(&mut self, target: Id, state: Id) -> PResult<()> {
        match self.node(target) {
            Node::Object(_) => {
                if let Node::Object(o) = &mut self.nodes[target] {
                    o.state = Some(state);
                }
                Ok(())
            }
            // Attribute state of dict/list subclasses (e.g. a state_dict's `_metadata`): not
            // data we use.
            Node::Dict(_) | Node::List(_) | Node::Set(_) | Node::Tuple(_) => Ok(()),
            Node::Leaf(Value::Array(_)) | Node::Leaf(Value::Dtype(_)) => {
                let state = self.materialize(state, 1)?;
                let result = match &mut self.nodes[target] {
                    Node::Leaf(Value::Array(a)) => build_array(a, state),
                    Node::Leaf(Value::Dtype(d)) => build_dtype(d, state),
                    _ => Ok(()),
                };
                match result {
                    Ok(()) => Ok(()),
                    Err(msg) => self.invalid(msg),
                }
            }
            // Python attributes on a tensor (rare): ignored.
            Node::Leaf(Value::Tensor(_)) => Ok(()),
            Node::Leaf(other) => {
                let t = other.type_name();
                self.invalid(format!("BUILD on a {t}"))
            }
        }
    }

    fn persistent_load(&mut self, pid: Value) -> PResult<Value> {
        if !self.opts.torch_storages {
            return self.invalid("persistent ids are not allowed in this format");
        }
        match storage_from_pid(pid) {
            Ok(s) => Ok(Value::Storage(Box::new(s))),
            Err(msg) => self.invalid(msg),
        }
    }
}

// ------------------------------------------------------------------------------------------
// Constructors, as pure functions of their (materialised) arguments.

fn decode_long(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
    let fill = if negative { 0xff } else { 0 };
    // Strip redundant sign-extension bytes, then fit into i64 when possible.
    let mut n = bytes.len();
    while n > 1 && bytes[n - 1] == fill && (bytes[n - 2] & 0x80 != 0) == negative {
        n -= 1;
    }
    if n <= 8 {
        let mut buf = [fill; 8];
        buf[..n].copy_from_slice(&bytes[..n]);
        Value::Int(i64::from_le_bytes(buf))
    } else {
        Value::BigInt(Arc::from(bytes))
    }
}

fn latin1(bytes: &[u8]) -> Arc<str> {
    let s: String = bytes.iter().map(|&b| b as char).collect();
    Arc::from(s)
}

/// `s.encode('latin-1')`, or `None` for a character above U+00FF. Protocol-2 pickles carry all
/// array data this way, so this works on the UTF-8 bytes directly (U+0080..U+00FF are the two
/// byte sequences C2 xx and C3 xx) instead of decoding characters.
fn encode_latin1(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c < 0x80 {
            out.push(c);
            i += 1;
        } else if c == 0xc2 || c == 0xc3 {
            // `s` is valid UTF-8, so a continuation byte follows.
            let next = *b.get(i + 1)?;
            out.push(((c & 0x03) << 6) | (next & 0x3f));
            i += 2;
        } else {
            return None;
        }
    }
    Some(out)
}

fn int_arg(v: &Value, what: &str) -> Result<u64, String> {
    match v.as_i64() {
        Some(i) if i >= 0 => Ok(i as u64),
        _ => Err(format!("{what} must be a non-negative int, got {}", v.type_name())),
    }
}

fn int_tuple(v: &Value, what: &str) -> Result<Vec<u64>, String> {
    let items = v.as_seq().ok_or_else(|| format!("{what} must be a tuple, got {}", v.type_name()))?;
    if items.len() > MAX_DIMS {
        return Err(format!("{what} has {} dimensions (most {MAX_DIMS})", items.len()));
    }
    items.iter().map(|i| int_arg(i, what)).collect()
}

fn construct(g: &Global, args: Vec<Value>) -> Result<Value, String> {
    let full = g.full_name();
    match full.as_str() {
        // Protocol <= 2 spells bytes(b"") as `bytes()` and bytearray(x) as
        // `bytearray(str, 'latin-1')`.
        "builtins.bytes" | "builtins.bytearray" if !matches!(args.first(), Some(Value::Str(_))) => {
            match args.as_slice() {
                [] => Ok(Value::Bytes(Arc::from(Vec::new()))),
                [Value::Bytes(b)] => Ok(Value::Bytes(b.clone())),
                _ => Err(format!("{full} of unsupported arguments")),
            }
        }
        "_codecs.encode" | "builtins.bytes" | "builtins.bytearray" => {
            let (Some(Value::Str(s)), enc) = (args.first(), args.get(1)) else {
                return Err(format!("{full} needs a str"));
            };
            let enc = enc.and_then(|e| e.as_str()).unwrap_or("utf-8");
            match enc.to_ascii_lowercase().as_str() {
                "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" => {
                    let out = encode_latin1(s).ok_or("_codecs.encode: character outside latin-1")?;
                    Ok(Value::Bytes(Arc::from(out)))
                }
                "utf-8" | "utf8" => Ok(Value::Bytes(Arc::from(s.as_bytes()))),
                other => Err(format!("_codecs.encode with encoding {:?}", other)),
            }
        }
        "numpy.core.multiarray._reconstruct" | "numpy._core.multiarray._reconstruct" => match args.first() {
            Some(Value::Global(c)) if c.is("numpy.ndarray") => Ok(Value::Array(Box::new(NdArray {
                dtype: None,
                shape: Vec::new(),
                fortran: false,
                data: Arc::from(Vec::new()),
            }))),
            _ => Err("_reconstruct of something other than numpy.ndarray".into()),
        },
        "numpy.dtype" => {
            let Some(Value::Str(code)) = args.first() else {
                return Err("numpy.dtype needs a type code".into());
            };
            // A code may carry its byte order ('<f4'); a later BUILD usually supplies it.
            let (order, code) = match code.chars().next() {
                Some(c @ ('<' | '>' | '|' | '=')) => (c, &code[1..]),
                _ => ('=', &code[..]),
            };
            Ok(Value::Dtype(Box::new(NpDtype { code: code.to_string(), byteorder: order })))
        }
        "numpy.core.multiarray.scalar" | "numpy._core.multiarray.scalar" => {
            let (Some(Value::Dtype(d)), Some(data)) = (args.first(), args.get(1)) else {
                return Err("numpy scalar needs (dtype, bytes)".into());
            };
            let mut a = NdArray { dtype: None, shape: Vec::new(), fortran: false, data: Arc::from(Vec::new()) };
            fill_array(&mut a, Vec::new(), d, false, data)?;
            Ok(Value::Array(Box::new(a)))
        }
        "torch._utils._rebuild_tensor" | "torch._utils._rebuild_tensor_v2" => {
            if args.len() < 4 {
                return Err(format!("{full} needs at least 4 arguments"));
            }
            let requires_grad = args.get(4).and_then(|v| v.as_i64()).unwrap_or(0) != 0;
            let mut it = args.into_iter();
            let (Some(storage), Some(offset), Some(size), Some(stride)) = (it.next(), it.next(), it.next(), it.next())
            else {
                return Err(format!("{full} needs at least 4 arguments"));
            };
            let Value::Storage(storage) = storage else {
                return Err(format!("{full} of a {}, not a storage", storage.type_name()));
            };
            let t = TensorRef {
                offset: int_arg(&offset, "storage offset")?,
                size: int_tuple(&size, "tensor size")?,
                stride: int_tuple(&stride, "tensor stride")?,
                storage: *storage,
                requires_grad,
            };
            check_tensor(&t)?;
            Ok(Value::Tensor(Box::new(t)))
        }
        "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => {
            let requires_grad = args.get(1).and_then(|v| v.as_i64()).unwrap_or(0) != 0;
            match args.into_iter().next() {
                Some(Value::Tensor(mut t)) => {
                    t.requires_grad = requires_grad;
                    Ok(Value::Tensor(t))
                }
                Some(other) => Err(format!("{full} of a {}", other.type_name())),
                None => Err(format!("{full} without arguments")),
            }
        }
        _ => Err(format!("{g} cannot be called")),
    }
}

/// Checks a view against its storage: strides must keep it inside the declared elements, and
/// it may not have more elements than the storage (broadcast views would let a tiny file ask
/// for an arbitrarily large tensor).
fn check_tensor(t: &TensorRef) -> Result<(), String> {
    if t.size.len() != t.stride.len() {
        return Err(format!("tensor size {:?} and stride {:?} differ in length", t.size, t.stride));
    }
    let numel = t.numel().ok_or_else(|| format!("tensor out of bounds: size {:?} overflows", t.size))?;
    let extent = t.extent().ok_or_else(|| {
        format!("tensor out of bounds: size {:?} stride {:?} offset {} overflows", t.size, t.stride, t.offset)
    })?;
    if extent > t.storage.numel {
        return Err(format!(
            "tensor out of bounds: size {:?} stride {:?} offset {} needs {} elements but storage {} has {}",
            t.size, t.stride, t.offset, extent, t.storage.key, t.storage.numel
        ));
    }
    if numel > t.storage.numel {
        return Err(format!(
            "tensor out of bounds: {} elements view only {} elements of storage {} (broadcast views are not supported)",
            numel, t.storage.numel, t.storage.key
        ));
    }
    Ok(())
}

fn storage_from_pid(pid: Value) -> Result<StorageRef, String> {
    let Value::Tuple(items) = pid else {
        return Err(format!("persistent id is a {}, not a tuple", pid.type_name()));
    };
    let [tag, class, key, location, numel, rest @ ..] = items.as_slice() else {
        return Err("persistent id must be ('storage', type, key, location, numel)".into());
    };
    if tag.as_str() != Some("storage") {
        return Err("persistent id is not a storage".into());
    }
    match rest {
        [] | [Value::None] => {}
        _ => return Err("storage views (torch < 0.4 files) are not supported".into()),
    }
    let Value::Global(g) = class else {
        return Err("storage type is not a global".into());
    };
    let dtype = (g.module == "torch")
        .then(|| DType::from_torch_storage(&g.name))
        .flatten()
        .ok_or_else(|| format!("unsupported storage type {g}"))?;
    let key = match key {
        Value::Str(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        other => return Err(format!("storage key is a {}", other.type_name())),
    };
    let location = location.as_str().unwrap_or("").to_string();
    Ok(StorageRef { key, dtype, location, numel: int_arg(numel, "storage numel")? })
}

fn build_dtype(d: &mut NpDtype, state: Value) -> Result<(), String> {
    // (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
    let items = state.as_seq().ok_or("numpy dtype state must be a tuple")?;
    if let Some(order) = items.get(1).and_then(|v| v.as_str()) {
        d.byteorder = order.chars().next().unwrap_or('=');
    }
    let structured = items.iter().skip(2).take(3).any(|v| !matches!(v, Value::None));
    if structured {
        return Err("structured numpy dtypes are not supported".into());
    }
    Ok(())
}

fn build_array(a: &mut NdArray, state: Value) -> Result<(), String> {
    // (version, shape, dtype, is_fortran, data) or, older, without the version.
    let Value::Tuple(items) = state else {
        return Err("numpy array state must be a tuple".into());
    };
    let (shape, dtype, fortran, data) = match items.as_slice() {
        [_, s, d, f, x] | [s, d, f, x] => (s, d, f, x),
        _ => return Err("numpy array state must have 4 or 5 items".into()),
    };
    let shape = int_tuple(shape, "array shape")?;
    let Value::Dtype(dtype) = dtype else {
        return Err("numpy array state without a dtype".into());
    };
    let fortran = fortran.as_i64().ok_or("numpy fortran flag must be a bool")? != 0;
    fill_array(a, shape, dtype, fortran, data)
}

fn fill_array(a: &mut NdArray, shape: Vec<u64>, dtype: &NpDtype, fortran: bool, data: &Value) -> Result<(), String> {
    let dt = DType::from_numpy_code(&dtype.code).ok_or_else(|| format!("unsupported numpy dtype {:?}", dtype.code))?;
    let numel = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d)).ok_or("numpy array shape overflows")?;
    let need = numel.checked_mul(dt.size() as u64).ok_or("numpy array size overflows")?;
    let bytes: Arc<[u8]> = match data {
        Value::Bytes(b) => b.clone(),
        // Protocol-2 pickles loaded with encoding='latin1' carry the data as a str.
        Value::Str(s) => Arc::from(encode_latin1(s).ok_or("numpy array data: character outside latin-1")?),
        Value::List(_) => return Err("numpy object arrays are not supported".into()),
        other => return Err(format!("numpy array data is a {}", other.type_name())),
    };
    if bytes.len() as u64 != need {
        return Err(format!(
            "numpy array data has {} bytes, but shape {:?} of {} needs {}",
            bytes.len(),
            shape,
            dt.name(),
            need
        ));
    }
    let swap = dtype.byteorder == '>' && dt.size() > 1;
    a.data = if swap {
        let mut v = bytes.to_vec();
        for chunk in v.chunks_exact_mut(dt.size()) {
            chunk.reverse();
        }
        Arc::from(v)
    } else {
        bytes
    };
    a.dtype = Some(dt);
    a.shape = shape;
    a.fortran = fortran;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs() {
        assert_eq!(decode_long(&[]), Value::Int(0));
        assert_eq!(decode_long(&[0xff]), Value::Int(-1));
        assert_eq!(decode_long(&[0x80, 0x00]), Value::Int(128));
        assert_eq!(decode_long(&[0xff; 12]), Value::Int(-1));
        assert!(matches!(decode_long(&[1; 10]), Value::BigInt(_)));
    }

    #[test]
    fn latin1_round_trip() {
        let all: Vec<u8> = (0..=255).collect();
        let s: String = all.iter().map(|&b| b as char).collect();
        assert_eq!(encode_latin1(&s).unwrap(), all);
        assert_eq!(encode_latin1("✓"), None);
        assert_eq!(&*latin1(&all), s.as_str());
    }

    #[test]
    fn global_matching() {
        let g = Global::new("__builtin__", "tuple");
        assert!(g.is("builtins.tuple"));
        assert!(!g.is("builtins.tupl"));
    }
}
