//! Opcode semantics of the restricted unpickler on hand-made pickles.

mod pickle_support;

use pickle_support::P;
use ugatit::io::pickle::{unpickle, unpickle_prefix, Options, Value};

fn run(p: P, opts: &Options) -> Value {
    let bytes = p.bytes_vec();
    unpickle(&bytes, opts).unwrap_or_else(|e| panic!("{e}"))
}

fn s(x: &str) -> Value {
    Value::Str(x.into())
}

#[test]
fn memoised_containers_are_shared_and_see_later_mutation() {
    // d = {}; memo[0] = d; l = [d, d]; d["k"] = 1  ->  ([{"k": 1}, {"k": 1}])
    let p = P::new()
        .proto(2)
        .empty_dict()
        .binput(0)
        .op(b'0') // POP
        .empty_list()
        .binget(0)
        .append()
        .binget(0)
        .append()
        .binget(0)
        .str("k")
        .int(1)
        .setitem()
        .op(b'0')
        .stop();
    let d = Value::Dict(vec![(s("k"), Value::Int(1))]);
    assert_eq!(run(p, &Options::numpy()), Value::List(vec![d.clone(), d]));
}

#[test]
fn text_opcodes_and_stack_ops() {
    // Protocol-0 style scalars, DUP, POP_MARK, LONG_BINPUT/LONG_BINGET, MEMOIZE.
    let p = P::new()
        .raw(b"(I01\nI00\nI-42\nL123L\nF0.25\n")
        .op(0x94) // MEMOIZE -> memo[0] = 0.25
        .op(b'2') // DUP
        .raw(b"r\x07\x00\x00\x00") // LONG_BINPUT 7
        .raw(b"j\x07\x00\x00\x00") // LONG_BINGET 7
        .raw(b"g0\n") // GET 0
        .op(b't')
        .mark()
        .none()
        .op(b'1') // POP_MARK
        .stop();
    let f = Value::Float(0.25);
    assert_eq!(
        run(p, &Options::numpy()),
        Value::Tuple(vec![
            Value::Bool(true),
            Value::Bool(false),
            Value::Int(-42),
            Value::Int(123),
            f.clone(),
            f.clone(),
            f.clone(),
            f
        ])
    );
}

#[test]
fn sets_dicts_and_constructors() {
    let p = P::new()
        .proto(4)
        .mark()
        .op(0x8f) // EMPTY_SET
        .mark()
        .int(1)
        .int(2)
        .op(0x90) // ADDITEMS
        .mark()
        .int(3)
        .op(0x91) // FROZENSET
        .mark()
        .str("a")
        .int(1)
        .op(b'd') // DICT
        // OrderedDict([("x", 1)]) and a BUILD of attributes on it (ignored)
        .global("collections", "OrderedDict")
        .mark()
        .mark()
        .str("x")
        .int(1)
        .op(b't')
        .op(b'l')
        .op(0x85)
        .reduce()
        .empty_dict()
        .op(b'b')
        // tuple(["p", "q"]) through NEWOBJ_EX with no kwargs
        .global("builtins", "tuple")
        .mark()
        .str("p")
        .str("q")
        .op(b'l')
        .op(0x85)
        .empty_dict()
        .op(0x92)
        .op(b't')
        .stop();
    assert_eq!(
        run(p, &Options::numpy()),
        Value::Tuple(vec![
            Value::Set(vec![Value::Int(1), Value::Int(2)]),
            Value::Set(vec![Value::Int(3)]),
            Value::Dict(vec![(s("a"), Value::Int(1))]),
            Value::Dict(vec![(s("x"), Value::Int(1))]),
            Value::Tuple(vec![s("p"), s("q")]),
        ])
    );
}

#[test]
fn torchscript_objects_and_jit_helpers() {
    // __torch__.M() with state {"w": build_intlist([1, 2]), "t": restore_type_tag({}, "Dict")}
    let p = P::new()
        .proto(2)
        .global("__torch__.m", "M")
        .empty_tuple()
        .op(0x81)
        .empty_dict()
        .str("w")
        .global("torch.jit._pickle", "build_intlist")
        .mark()
        .mark()
        .int(1)
        .int(2)
        .op(b'l')
        .tuple()
        .reduce()
        .setitem()
        .str("t")
        .global("torch.jit._pickle", "restore_type_tag")
        .mark()
        .empty_dict()
        .str("Dict[str, Tensor]")
        .tuple()
        .reduce()
        .setitem()
        .op(b'b')
        .stop();
    let v = run(p, &Options::torchscript());
    let Value::Object(o) = &v else { panic!("{v:?}") };
    assert_eq!(o.class.full_name(), "__torch__.m.M");
    let state = o.state.as_ref().unwrap();
    assert_eq!(state.get("w"), Some(&Value::List(vec![Value::Int(1), Value::Int(2)])));
    assert_eq!(state.get("t"), Some(&Value::Dict(vec![])));
}

#[test]
fn consecutive_pickles() {
    let mut bytes = P::new().proto(2).int(5).stop().bytes_vec();
    bytes.extend(P::new().proto(2).str("x").stop().bytes_vec());
    let (a, used) = unpickle_prefix(&bytes, &Options::numpy()).unwrap();
    assert_eq!(a, Value::Int(5));
    let (b, used2) = unpickle_prefix(&bytes[used..], &Options::numpy()).unwrap();
    assert_eq!(b, s("x"));
    assert_eq!(used + used2, bytes.len());
}

#[test]
fn caller_allow_list_narrows_the_known_set() {
    let mut opts = Options::numpy();
    opts.allowed_globals.remove("collections.OrderedDict");
    let bytes = P::new().proto(2).global("collections", "OrderedDict").empty_tuple().reduce().stop().bytes_vec();
    assert_eq!(unpickle(&bytes, &opts).unwrap_err().to_string(), "disallowed global collections.OrderedDict");
    // Names outside the implemented set stay refused even when listed.
    opts.allowed_globals.insert("os.system".into());
    let bytes = P::new().proto(2).global("os", "system").stop().bytes_vec();
    assert_eq!(unpickle(&bytes, &opts).unwrap_err().to_string(), "disallowed global os.system");
}
