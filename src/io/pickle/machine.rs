//! The machine: an arena of nodes, the pickle stack with its marks, the memo, and the loop
//! that executes one opcode after another until `STOP`.

use super::limits::value_budget;
use super::op::{self, decode_long, latin1};
use super::{Global, Options, PResult, PickleError, Value};
use std::collections::HashMap;
use std::sync::Arc;

pub(super) type Id = usize;

/// Arena node: containers refer to their items by id, so memo sharing costs nothing and
/// mutation after memoisation (`EMPTY_DICT BINPUT ... SETITEMS`) is seen by every reference.
#[derive(Debug)]
pub(super) enum Node {
    Leaf(Value),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Set(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Object(Box<NodeObject>),
}

#[derive(Debug)]
pub(super) struct NodeObject {
    pub(super) class: Global,
    pub(super) args: Vec<Id>,
    pub(super) state: Option<Id>,
}

impl Node {
    pub(super) fn type_name(&self) -> &'static str {
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

pub(super) struct Machine<'a, 'o> {
    pub(super) data: &'a [u8],
    pub(super) pos: usize,
    /// Offset of the opcode being executed (for messages).
    pub(super) op_at: usize,
    pub(super) opts: &'o Options,
    pub(super) nodes: Vec<Node>,
    pub(super) stack: Vec<Id>,
    pub(super) marks: Vec<usize>,
    pub(super) memo: HashMap<u64, Id>,
    /// Values that materialising may still produce.
    pub(super) budget: u64,
    pub(super) budget_total: u64,
}

impl<'a, 'o> Machine<'a, 'o> {
    pub(super) fn new(data: &'a [u8], opts: &'o Options) -> Self {
        let budget = value_budget(data.len());
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

    pub(super) fn invalid<T>(&self, msg: impl Into<String>) -> PResult<T> {
        Err(PickleError::Invalid { offset: self.op_at, msg: msg.into() })
    }

    // ---- stack --------------------------------------------------------------------------

    pub(super) fn push_node(&mut self, node: Node) -> Id {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn push(&mut self, node: Node) {
        let id = self.push_node(node);
        self.stack.push(id);
    }

    pub(super) fn push_value(&mut self, v: Value) {
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

    pub(super) fn node(&self, id: Id) -> &Node {
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

    /// The key of a memo opcode: a byte (`BINGET`/`BINPUT`), a 4-byte int
    /// (`LONG_BINGET`/`LONG_BINPUT`), the next free key (`MEMOIZE`) or a decimal line
    /// (`GET`/`PUT`).
    fn memo_key(&mut self, code: u8) -> PResult<u64> {
        Ok(match code {
            op::BINGET => self.u8("BINGET")? as u64,
            op::BINPUT => self.u8("BINPUT")? as u64,
            op::LONG_BINGET => self.u32("LONG_BINGET")? as u64,
            op::LONG_BINPUT => self.u32("LONG_BINPUT")? as u64,
            op::MEMOIZE => self.memo.len() as u64,
            _ => {
                let what = if code == op::GET { "GET" } else { "PUT" };
                let line = self.line_str(what)?;
                match line.trim().parse::<u64>() {
                    Ok(k) => k,
                    Err(_) => return self.invalid(format!("{what} key is not a number")),
                }
            }
        })
    }

    // ---- the loop -----------------------------------------------------------------------

    pub(super) fn run(&mut self) -> PResult<Value> {
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
                op::GET | op::BINGET | op::LONG_BINGET => {
                    let k = self.memo_key(code)?;
                    self.memo_get(k)?;
                }
                op::PUT | op::BINPUT | op::LONG_BINPUT | op::MEMOIZE => {
                    let k = self.memo_key(code)?;
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

    /// Runs `extend` on the container at the top of the stack; `extend` returns false when the
    /// node is not of the kind `what` extends.
    fn extend_top(&mut self, what: &str, extend: impl FnOnce(&mut Node) -> bool) -> PResult<()> {
        let target = self.top()?;
        if extend(&mut self.nodes[target]) {
            return Ok(());
        }
        let t = self.nodes[target].type_name();
        self.invalid(format!("{what} on a {t}"))
    }

    fn extend_list(&mut self, items: Vec<Id>, what: &str) -> PResult<()> {
        self.extend_top(what, |node| {
            let Node::List(l) = node else { return false };
            l.extend(items);
            true
        })
    }

    fn extend_dict(&mut self, pairs: Vec<(Id, Id)>, what: &str) -> PResult<()> {
        self.extend_top(what, |node| {
            let Node::Dict(d) = node else { return false };
            d.extend(pairs);
            true
        })
    }
}
