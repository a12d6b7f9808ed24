//! The allow-list of globals and the data-only constructors behind it: what `GLOBAL`,
//! `REDUCE`/`NEWOBJ`, `BUILD` and `BINPERSID` may do. Containers (`collections.OrderedDict`,
//! `builtins.tuple`/`list`/`set`, `torch.Size`) are rebuilt from arena ids; the other
//! constructors (`_codecs.encode`, numpy `_reconstruct`/`scalar`/`dtype`, the torch
//! `_rebuild_*` functions) are pure functions of their materialised arguments.

use super::limits::{check_tensor, MAX_DIMS};
use super::machine::{Id, Machine, Node, NodeObject};
use super::{DType, NdArray, NpDtype, Options, PResult, PickleError, StorageRef, TensorRef, Value};
use std::fmt;
use std::sync::Arc;

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

impl Options {
    fn allows(&self, g: &Global) -> bool {
        if self.torchscript_classes && g.module.starts_with("__torch__") {
            return true;
        }
        let full = g.full_name();
        self.allowed_globals.contains(&full) && KNOWN_GLOBALS.contains(&full.as_str())
    }
}

impl<'a, 'o> Machine<'a, 'o> {
    pub(super) fn global(&mut self, module: &str, name: &str) -> PResult<()> {
        let g = Global::new(module, name);
        if !self.opts.allows(&g) {
            return Err(PickleError::DisallowedGlobal(g.to_string()));
        }
        self.push_value(Value::Global(Box::new(g)));
        Ok(())
    }

    /// `REDUCE` / `NEWOBJ`: applies an allowed constructor to its argument tuple.
    pub(super) fn call(&mut self, callee: Id, args: Id, what: &str) -> PResult<Id> {
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

    pub(super) fn build(&mut self, target: Id, state: Id) -> PResult<()> {
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

    pub(super) fn persistent_load(&mut self, pid: Value) -> PResult<Value> {
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
    use crate::io::pickle::op::latin1;

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
