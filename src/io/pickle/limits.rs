//! The bounds on untrusted input and their checks: declared lengths against the bytes that
//! remain, the budget of values that materialising the arena may produce, the nesting depth,
//! the number of dimensions, and tensor views against their storage.

use super::machine::{Id, Machine, Node, NodeObject};
use super::{Object, PResult, PickleError, TensorRef, Value};

/// Default limit on the nesting depth of the resulting [`Value`].
pub const DEFAULT_MAX_DEPTH: usize = 256;

/// Most dimensions a tensor or array may have (numpy allows 64).
pub const MAX_DIMS: usize = 64;

/// How many values materialising a pickle of `input_len` bytes may produce.
pub(super) fn value_budget(input_len: usize) -> u64 {
    // One materialised value per input byte plus slack: legitimate files produce far
    // fewer values than bytes, while shared-reference bombs blow through it at once.
    (input_len as u64).saturating_add(1 << 20)
}

impl<'a, 'o> Machine<'a, 'o> {
    // ---- reading ------------------------------------------------------------------------

    pub(super) fn take(&mut self, n: u64, what: &'static str) -> PResult<&'a [u8]> {
        let have = self.data.len() - self.pos;
        if n > have as u64 {
            return Err(PickleError::Truncated { what, offset: self.pos, need: n, have });
        }
        let start = self.pos;
        // n <= have, so this fits in usize and stays in bounds.
        self.pos += n as usize;
        Ok(&self.data[start..self.pos])
    }

    pub(super) fn array<const N: usize>(&mut self, what: &'static str) -> PResult<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    pub(super) fn u8(&mut self, what: &'static str) -> PResult<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(super) fn u16(&mut self, what: &'static str) -> PResult<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub(super) fn u32(&mut self, what: &'static str) -> PResult<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(super) fn i32(&mut self, what: &'static str) -> PResult<i32> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }

    pub(super) fn u64(&mut self, what: &'static str) -> PResult<u64> {
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

    pub(super) fn line_str(&mut self, what: &'static str) -> PResult<&'a str> {
        let line = self.line(what)?;
        match std::str::from_utf8(line) {
            Ok(s) => Ok(s),
            Err(_) => self.invalid(format!("{what} is not valid UTF-8")),
        }
    }

    // ---- materialising ------------------------------------------------------------------

    pub(super) fn charge(&mut self, n: u64) -> PResult<()> {
        if n > self.budget {
            return Err(PickleError::TooLarge(self.budget_total));
        }
        self.budget -= n;
        Ok(())
    }

    pub(super) fn materialize(&mut self, id: Id, depth: usize) -> PResult<Value> {
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
    pub(super) fn intern(&mut self, v: Value, depth: usize) -> PResult<Id> {
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
}

/// Checks a view against its storage: strides must keep it inside the declared elements, and
/// it may not have more elements than the storage (broadcast views would let a tiny file ask
/// for an arbitrarily large tensor).
pub(super) fn check_tensor(t: &TensorRef) -> Result<(), String> {
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
