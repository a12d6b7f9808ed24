//! Format coverage of the checkpoint readers against files written by torch, numpy and
//! Python's pickle (tests/fixtures/checkpoints, see tools/oracle/make_checkpoint_fixtures.py).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};
use ugatit::io::pdparams::read_pdparams;
use ugatit::io::pickle::{unpickle, Options, Value};
use ugatit::io::torch_archive::{attributes, read_torchscript_tensors, TorchFile};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoints").join(name)
}

fn expected(name: &str) -> BTreeMap<String, Tensor> {
    ugatit::io::safetensors::read(&fixture(name)).unwrap_or_else(|e| panic!("{e:#}")).tensors
}

/// Same names, same shapes, identical values (compared in float64).
fn assert_same(actual: &BTreeMap<String, Tensor>, expected: &BTreeMap<String, Tensor>) {
    let a: Vec<&String> = actual.keys().collect();
    let e: Vec<&String> = expected.keys().collect();
    assert_eq!(a, e, "tensor names differ");
    for (k, want) in expected {
        let got = &actual[k];
        assert_eq!(got.size(), want.size(), "{k}: shape");
        let diff = if want.numel() == 0 {
            0.0
        } else {
            (got.to_kind(Kind::Double) - want.to_kind(Kind::Double)).abs().max().double_value(&[])
        };
        assert_eq!(diff, 0.0, "{k}: values differ");
        assert!(got.is_contiguous(), "{k}: not contiguous");
    }
}

fn views_kinds(t: &BTreeMap<String, Tensor>) {
    for (k, kind) in [
        ("contig", Kind::Float),
        ("shared_a", Kind::Double),
        ("f16", Kind::Half),
        ("bf16", Kind::BFloat16),
        ("i64", Kind::Int64),
        ("i32", Kind::Int),
        ("i16", Kind::Int16),
        ("i8", Kind::Int8),
        ("u8", Kind::Uint8),
        ("bool", Kind::Bool),
    ] {
        assert_eq!(t[k].kind(), kind, "{k}");
    }
    assert_eq!(t["scalar"].size(), Vec::<i64>::new());
    assert_eq!(t["empty"].size(), vec![0, 3]);
}

#[test]
fn torch_zip_views_strides_and_dtypes() {
    let file = TorchFile::open(&fixture("torch_views.pt")).unwrap();
    let t = file.tensors().unwrap();
    assert_same(&t, &expected("torch_views.expected.safetensors"));
    views_kinds(&t);
    // The non-tensor entries are still in the object.
    let meta = file.root().get("not_a_tensor").unwrap();
    assert_eq!(meta.get("epoch"), Some(&Value::Int(3)));
    // Views copy: the two tensors over one storage do not share memory.
    let _ = t["shared_a"].shallow_clone().fill_(0.0);
    assert_ne!(t["shared_b"].double_value(&[0, 2]), 0.0);
}

#[test]
fn torch_legacy_format() {
    let t = TorchFile::open(&fixture("torch_views_legacy.pt")).unwrap().tensors().unwrap();
    assert_same(&t, &expected("torch_views.expected.safetensors"));
    views_kinds(&t);
}

#[test]
fn torchscript_module_tree() {
    let t = read_torchscript_tensors(&fixture("torchscript_small.pt")).unwrap();
    assert_same(&t, &expected("torchscript_small.expected.safetensors"));
    assert!(t.contains_key("layers.1.bn.running_mean"));
    assert!(t.contains_key("scale"));
    // Non-tensor attributes of the scripted modules are reachable too (nn.Conv2d's stride and
    // BatchNorm's eps are TorchScript constants in the code, not attributes).
    let bytes = std::fs::read(fixture("torchscript_small.pt")).unwrap();
    let attrs = attributes(TorchFile::torchscript_from_bytes(bytes).unwrap().root());
    assert_eq!(attrs.get("layers.0.bn.training"), Some(&Value::Bool(false)));
    assert_eq!(attrs.get("stem.transposed"), Some(&Value::Bool(false)));
    assert_eq!(attrs.get("stem._reversed_padding_repeated_twice"), Some(&Value::List(vec![Value::Int(0); 4])));
}

#[test]
fn numpy_pickles_protocol_2_and_4() {
    let want = expected("numpy_dtypes.expected.safetensors");
    for name in ["numpy_dtypes_p2.pdparams", "numpy_dtypes_p4.pdparams"] {
        let t = read_pdparams(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_same(&t, &want);
        assert_eq!(t["f16"].kind(), Kind::Half);
        assert_eq!(t["i64"].kind(), Kind::Int64);
        assert_eq!(t["bool"].kind(), Kind::Bool);
        assert_eq!(t["big"].size(), vec![5, 7]);
        assert_eq!(t["fortran3"].size(), vec![2, 3, 4]);
        assert_eq!(t["npscalar"].size(), Vec::<i64>::new());
    }
}

fn values(name: &str) -> Value {
    let bytes = std::fs::read(fixture(name)).unwrap();
    unpickle(&bytes, &Options::numpy()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn python_values_protocol_2_and_5() {
    for name in ["values_p2.pkl", "values_p5.pkl"] {
        let v = values(name);
        let get = |k: &str| v.get(k).unwrap_or_else(|| panic!("{name}: no {k}"));
        let s = |x: &str| Value::Str(x.into());
        let i = Value::Int;
        assert_eq!(get("none"), &Value::None);
        assert_eq!(get("t"), &Value::Bool(true));
        assert_eq!(get("f"), &Value::Bool(false));
        assert_eq!(get("small"), &i(7));
        assert_eq!(get("neg"), &i(-3));
        assert_eq!(get("i16"), &i(40000));
        assert_eq!(get("i32"), &i(-(1 << 31)));
        assert_eq!(get("i64"), &i(1 << 62));
        match get("big") {
            Value::BigInt(b) => {
                // 2**80 = 0x01 followed by 10 zero bytes (little-endian: 10 zeros then 0x01).
                assert_eq!(b.len(), 11);
                assert_eq!(b[10], 1);
                assert!(b[..10].iter().all(|&x| x == 0));
            }
            other => panic!("{name}: big is {other:?}"),
        }
        assert!(matches!(get("bigneg"), Value::BigInt(_)));
        assert_eq!(get("float"), &Value::Float(1.5));
        assert_eq!(get("str"), &s("héllo ✓"));
        assert_eq!(get("empty"), &s(""));
        assert_eq!(get("bytes"), &Value::Bytes(vec![0u8, 1, 255].into()));
        assert_eq!(get("bytearray"), &Value::Bytes(b"ab".to_vec().into()));
        assert_eq!(get("list"), &Value::List(vec![i(1), Value::List(vec![i(2), Value::List(vec![i(3)])])]));
        assert_eq!(get("tuple"), &Value::Tuple(vec![i(1), s("a")]));
        assert_eq!(get("tuple0"), &Value::Tuple(vec![]));
        assert_eq!(get("t3"), &Value::Tuple(vec![i(1), i(2), i(3)]));
        assert_eq!(get("set"), &Value::Set(vec![i(3)]));
        assert_eq!(get("frozenset"), &Value::Set(vec![i(4)]));
        let shared = Value::List(vec![i(1), i(2)]);
        assert_eq!(get("shared"), &Value::Tuple(vec![shared.clone(), shared]));
        assert_eq!(get("od"), &Value::Dict(vec![(s("b"), i(1)), (s("a"), i(2))]));
        assert_eq!(get("intkeys"), &Value::Dict(vec![(i(1), s("one")), (i(2), s("two"))]));
    }
}
