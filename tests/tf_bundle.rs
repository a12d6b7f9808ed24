//! The TensorFlow tensor-bundle reader on the fixture checkpoints written by TensorFlow 2.21
//! (`tests/fixtures/tf/{light,full}/`, see `tools/oracle/TF_CHECKPOINT.md`), and on broken copies
//! of them and small hand-built bundles: every problem must be an error naming the file, never a
//! panic.
//!
//! `tests/fixtures/tf/light/some_values.json` holds reference values for both fixtures, read by
//! TensorFlow itself (`tf.train.load_checkpoint(prefix).get_tensor(name)` in the oracle venv
//! `/tmp/tfv`, sums in float64): per listed variable its shape, sum and first 4 values, plus the
//! sum over all `generator_B/` weights and the number of entries. Written by this one-off script:
//!
//! ```python
//! import json, numpy as np, tensorflow as tf
//! for v in ["light", "full"]:
//!     r = tf.train.load_checkpoint(f"tests/fixtures/tf/{v}/UGATIT.model-1000")
//!     out[v] = {n: {"shape": list(t.shape), "dtype": str(t.dtype), "sum": float(t.astype(np.float64).sum()),
//!                   "first": [float(x) for x in t.reshape(-1)[:4]]} for n in names for t in [r.get_tensor(n)]}
//!     out[v]["_generator_B_weights_sum"] = sum(r.get_tensor(k).astype(np.float64).sum() for k in generator_B_weights)
//!     out[v]["_entries"] = len(r.get_variable_to_shape_map())
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};
use ugatit::io::tf_bundle::{self, is_index, masked_crc32c, parse_index, resolve_prefix, Bundle};

const VARIANTS: [&str; 2] = ["light", "full"];
const STEM: &str = "UGATIT.model-1000";
const DATA: &str = "UGATIT.model-1000.data-00000-of-00001";

fn fixture_dir(variant: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf").join(variant)
}

fn prefix(variant: &str) -> PathBuf {
    fixture_dir(variant).join(STEM)
}

fn values() -> serde_json::Value {
    let path = fixture_dir("light").join("some_values.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn assert_contains(msg: &str, want: &str) {
    assert!(msg.contains(want), "error {msg:?} does not contain {want:?}");
}

fn open_err(path: &Path) -> String {
    match Bundle::open(path) {
        Ok(b) => panic!("opened a bad bundle with {} entries", b.entries().len()),
        Err(e) => format!("{e:#}"),
    }
}

fn tensor_err(b: &Bundle, name: &str) -> String {
    match b.tensor(name) {
        Ok(t) => panic!("read {name} ({:?}) from a bad bundle", t.size()),
        Err(e) => format!("{e:#}"),
    }
}

fn index_err(bytes: &[u8]) -> String {
    match parse_index(bytes) {
        Ok(i) => panic!("parsed a bad index with {} entries", i.entries.len()),
        Err(e) => format!("{e:#}"),
    }
}

/// A scratch folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ugatit-tf-bundle-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// A copy of a fixture checkpoint (index, data, `checkpoint` file).
    fn with_fixture(name: &str, variant: &str) -> Self {
        let t = Self::new(name);
        for f in [format!("{STEM}.index"), DATA.to_string(), "checkpoint".to_string()] {
            std::fs::copy(fixture_dir(variant).join(&f), t.0.join(&f)).unwrap();
        }
        t
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn prefix(&self) -> PathBuf {
        self.path(STEM)
    }

    fn index(&self) -> PathBuf {
        self.path(&format!("{STEM}.index"))
    }

    fn edit(&self, name: &str, f: impl FnOnce(&mut Vec<u8>)) {
        let mut bytes = std::fs::read(self.path(name)).unwrap();
        f(&mut bytes);
        std::fs::write(self.path(name), bytes).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sum(t: &Tensor) -> f64 {
    t.to_kind(Kind::Double).sum(Kind::Double).double_value(&[])
}

fn is_generator_weight(name: &str, scope: &str) -> bool {
    name.starts_with(scope) && !name.ends_with("/Adam") && !name.ends_with("/Adam_1")
}

#[test]
fn opens_through_every_path_form() {
    for v in VARIANTS {
        let dir = fixture_dir(v);
        let forms = [dir.clone(), prefix(v), dir.join(format!("{STEM}.index")), dir.join(DATA)];
        for form in &forms {
            assert_eq!(resolve_prefix(form).unwrap(), prefix(v), "{}", form.display());
            let b = Bundle::open(form).unwrap_or_else(|e| panic!("{}: {e:#}", form.display()));
            assert_eq!(b.prefix(), prefix(v));
            assert_eq!(b.num_shards(), 1);
            let e = b.entries();
            assert_eq!(e.len(), 776);
            assert_eq!(e["generator_B/G_logit/conv2d/kernel"].shape, [7, 7, 4, 3]);
            assert_eq!(e["generator_B/G_logit/conv2d/kernel"].dtype, tf_bundle::dtype::FLOAT);
            let linear_0 = if v == "light" { [16, 16] } else { [1024, 16] };
            assert_eq!(e["generator_A/MLP/linear_0/dense/kernel"].shape, linear_0);
            assert_eq!(e["generator_B/MLP/linear_0/dense/kernel/Adam"].shape, linear_0);
            assert_eq!(e["generator_B/MLP/linear_0/dense/kernel/Adam_1"].shape, linear_0);
            for scalar in ["beta1_power", "beta2_power", "beta1_power_1", "beta2_power_1"] {
                assert_eq!(e[scalar].shape, Vec::<i64>::new(), "{scalar}");
                assert_eq!(e[scalar].size, 4, "{scalar}");
            }
            assert!(e.keys().filter(|k| k.ends_with("/Adam")).count() == 248);
            assert_eq!(e.keys().filter(|k| is_generator_weight(k, "generator_B/")).count(), 92);
            assert!(e.values().all(|x| x.crc32c.is_some()));
        }
        let index = std::fs::read(dir.join(format!("{STEM}.index"))).unwrap();
        assert!(is_index(&index));
        assert!(!is_index(&std::fs::read(dir.join(DATA)).unwrap()));
        assert!(!is_index(&index[..index.len() - 1]));
        // The data shard is packed in key order from offset 0, as TF_CHECKPOINT.md says.
        let b = Bundle::open(&dir).unwrap();
        let mut end = 0;
        for x in b.entries().values() {
            assert_eq!(x.offset, end);
            end += x.size;
        }
        assert_eq!(end, std::fs::metadata(dir.join(DATA)).unwrap().len());
    }
}

#[test]
fn values_match_tensorflow() {
    let want = values();
    for v in VARIANTS {
        let b = Bundle::open(&fixture_dir(v)).unwrap();
        let want = want[v].as_object().unwrap();
        let mut checked = 0;
        for (name, w) in want.iter().filter(|(k, _)| !k.starts_with('_')) {
            let t = b.tensor(name).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            let shape: Vec<i64> = w["shape"].as_array().unwrap().iter().map(|d| d.as_i64().unwrap()).collect();
            assert_eq!(t.size(), shape, "{v} {name}");
            assert_eq!(t.kind(), Kind::Float);
            assert_eq!(t.device(), tch::Device::Cpu);
            assert!(t.isfinite().all().int64_value(&[]) == 1, "{v} {name}: not finite");
            let s = sum(&t);
            let ws = w["sum"].as_f64().unwrap();
            assert!((s - ws).abs() <= 1e-6 * (1.0 + ws.abs()), "{v} {name}: sum {s} vs TensorFlow's {ws}");
            let flat = t.reshape([-1]);
            for (i, x) in w["first"].as_array().unwrap().iter().enumerate() {
                // float32 values, exactly (the JSON's decimal is parsed to the nearest f32).
                let got = flat.double_value(&[i as i64]) as f32;
                assert_eq!(got, x.as_f64().unwrap() as f32, "{v} {name}[{i}]");
            }
            checked += 1;
        }
        assert_eq!(checked, 8);
        assert_eq!(b.entries().len() as u64, want["_entries"].as_u64().unwrap());
    }
}

#[test]
fn reads_one_generator() {
    let want = values();
    for v in VARIANTS {
        let b = Bundle::open(&prefix(v)).unwrap();
        let names: Vec<&String> = b.entries().keys().filter(|k| is_generator_weight(k, "generator_B/")).collect();
        assert_eq!(names.len(), 92);
        let mut total = 0.0;
        let mut tensors = BTreeMap::new();
        for name in names {
            let t = b.tensor(name).unwrap();
            assert_eq!(t.size(), b.entries()[name].shape);
            assert!(t.isfinite().all().int64_value(&[]) == 1, "{name}");
            total += sum(&t);
            tensors.insert(name.clone(), t);
        }
        let ws = want[v]["_generator_B_weights_sum"].as_f64().unwrap();
        assert!((total - ws).abs() < 1e-6 * ws.abs(), "{v}: generator_B sum {total} vs TensorFlow's {ws}");
        // The raw bytes are TF's row-major layout, as stored.
        let k = &tensors["generator_B/G_logit/conv2d/kernel"];
        let raw = b.tensor_bytes("generator_B/G_logit/conv2d/kernel").unwrap();
        let third = f32::from_le_bytes(raw[8..12].try_into().unwrap());
        assert_eq!(k.double_value(&[0, 0, 0, 2]), f64::from(third));
    }
}

#[test]
fn checkpoint_file_forms() {
    let t = TempDir::with_fixture("checkpoint-forms", "light");
    // Absolute path.
    std::fs::write(t.path("checkpoint"), format!("model_checkpoint_path: \"{}\"\n", t.prefix().display())).unwrap();
    assert_eq!(resolve_prefix(&t.0).unwrap(), t.prefix());
    // The default Saver's path as given at training time: found by its basename.
    std::fs::write(
        t.path("checkpoint"),
        "model_checkpoint_path: \"checkpoint/UGATIT_selfie2anime/UGATIT.model-1000\"\n\
         all_model_checkpoint_paths: \"checkpoint/UGATIT_selfie2anime/UGATIT.model-900\"\n\
         all_model_checkpoint_paths: \"checkpoint/UGATIT_selfie2anime/UGATIT.model-1000\"\n",
    )
    .unwrap();
    assert_eq!(resolve_prefix(&t.0).unwrap(), t.prefix());
    assert_eq!(Bundle::open(&t.0).unwrap().entries().len(), 776);
    // Names a checkpoint that is not there.
    std::fs::write(t.path("checkpoint"), "model_checkpoint_path: \"UGATIT.model-2000\"\n").unwrap();
    let err = open_err(&t.0);
    assert_contains(&err, "names \"UGATIT.model-2000\"");
    assert_contains(&err, &t.path("UGATIT.model-2000.index").display().to_string());
    // No model_checkpoint_path line.
    std::fs::write(t.path("checkpoint"), "all_model_checkpoint_paths: \"UGATIT.model-1000\"\n").unwrap();
    assert_contains(&open_err(&t.0), "no `model_checkpoint_path` line");
    // No checkpoint file.
    std::fs::remove_file(t.path("checkpoint")).unwrap();
    let err = open_err(&t.0);
    assert_contains(&err, "without a readable `checkpoint` file");
    assert_contains(&err, &t.path("checkpoint").display().to_string());
    // A prefix that does not exist.
    let err = open_err(&t.path("UGATIT.model-5"));
    assert_contains(&err, "no TensorFlow checkpoint at");
    assert_contains(&err, "looked for");
    assert_contains(&err, &t.path("UGATIT.model-5.index").display().to_string());
    // A .data file whose index is missing.
    std::fs::copy(t.path(DATA), t.path("other.data-00000-of-00001")).unwrap();
    assert_contains(&open_err(&t.path("other.data-00000-of-00001")), "other.index");
}

#[test]
fn truncated_index() {
    let t = TempDir::with_fixture("truncated-index", "light");
    let whole = std::fs::read(t.index()).unwrap();
    t.edit(&format!("{STEM}.index"), |b| b.truncate(40));
    let err = open_err(&t.0);
    assert_contains(&err, &t.index().display().to_string());
    assert_contains(&err, "too short for an SSTable footer");
    t.edit(&format!("{STEM}.index"), |b| *b = whole[..whole.len() - 1000].to_vec());
    let err = open_err(&t.0);
    assert_contains(&err, &t.index().display().to_string());
    assert_contains(&err, "wrong magic");
    // Every cut fails cleanly (the magic moves), and an empty file too.
    for n in (0..whole.len()).step_by(61) {
        index_err(&whole[..n]);
    }
}

#[test]
fn wrong_magic() {
    let t = TempDir::with_fixture("wrong-magic", "full");
    t.edit(&format!("{STEM}.index"), |b| *b.last_mut().unwrap() ^= 0x01);
    let err = open_err(&t.prefix());
    assert_contains(&err, &t.index().display().to_string());
    assert_contains(&err, "wrong magic 0xda4775248b80fb57");
    assert_contains(&err, "not a TensorFlow .index file");
    // A data file is no index either.
    assert_contains(&index_err(&std::fs::read(fixture_dir("full").join(DATA)).unwrap()), "wrong magic");
}

#[test]
fn flipped_byte_in_a_block() {
    let t = TempDir::with_fixture("flipped-block", "light");
    t.edit(&format!("{STEM}.index"), |b| b[1000] ^= 0x20);
    let err = open_err(&t.0);
    assert_contains(&err, &t.index().display().to_string());
    assert_contains(&err, "data block 0 at offset 0: CRC mismatch");
    // Flips anywhere: every one is an error or (in the footer's padding, which TF ignores too)
    // an unchanged index; none panics.
    let whole = std::fs::read(fixture_dir("light").join(format!("{STEM}.index"))).unwrap();
    let good = parse_index(&whole).unwrap();
    for at in (0..whole.len()).step_by(13).chain(whole.len() - 48..whole.len()) {
        let mut bad = whole.clone();
        bad[at] ^= 0x5a;
        if let Ok(i) = parse_index(&bad) {
            assert!(at >= whole.len() - 48, "flip at {at} went unnoticed");
            assert_eq!(i, good);
        }
    }
}

#[test]
fn missing_data_shard() {
    let t = TempDir::with_fixture("missing-shard", "light");
    std::fs::remove_file(t.path(DATA)).unwrap();
    let err = open_err(&t.0);
    assert_contains(&err, "opening data shard");
    assert_contains(&err, &t.path(DATA).display().to_string());
}

#[test]
fn data_file_too_short() {
    let t = TempDir::with_fixture("short-data", "full");
    t.edit(DATA, |b| b.truncate(b.len() - 2));
    let b = Bundle::open(&t.0).unwrap();
    let (last, e) = b.entries().iter().max_by_key(|(_, e)| e.offset).unwrap();
    let err = tensor_err(&b, last);
    assert_contains(&err, &t.path(DATA).display().to_string());
    assert_contains(&err, &format!("variable {last:?} at offset {} of size {}", e.offset, e.size));
    assert_contains(&err, "passes the end of the file");
    // The tensors before the cut still read.
    assert_eq!(b.tensor("beta1_power").unwrap().double_value(&[]), 0.25);
    // An empty data file.
    t.edit(DATA, |b| b.clear());
    let b = Bundle::open(&t.0).unwrap();
    assert_contains(&tensor_err(&b, "beta1_power"), "passes the end of the file (0 bytes)");
}

#[test]
fn tensor_crc_mismatch() {
    let t = TempDir::with_fixture("tensor-crc", "light");
    let name = "generator_B/G_logit/conv2d/kernel";
    let at = Bundle::open(&t.0).unwrap().entries()[name].offset as usize + 17;
    t.edit(DATA, |b| b[at] ^= 0x01);
    let b = Bundle::open(&t.0).unwrap();
    let err = tensor_err(&b, name);
    assert_contains(&err, &t.path(DATA).display().to_string());
    assert_contains(&err, &format!("variable {name:?}"));
    assert_contains(&err, "CRC mismatch");
    assert!(b.tensor("generator_B/G_logit/conv2d/bias").is_ok());
    assert_contains(&tensor_err(&b, "generator_C/nothing"), "no variable named \"generator_C/nothing\"");
}

fn varint(b: &[u8], at: &mut usize) -> u64 {
    let mut v = 0;
    for shift in (0..64).step_by(7) {
        let x = b[*at];
        *at += 1;
        v |= u64::from(x & 0x7f) << shift;
        if x & 0x80 == 0 {
            break;
        }
    }
    v
}

/// Sets the compression type of the block at (offset, size) and fixes its CRC.
fn set_block_type(b: &mut [u8], offset: usize, size: usize, kind: u8) {
    b[offset + size] = kind;
    let crc = masked_crc32c(&b[offset..offset + size + 1]);
    b[offset + size + 1..offset + size + 5].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn snappy_block() {
    let t = TempDir::with_fixture("snappy", "light");
    let whole = std::fs::read(t.index()).unwrap();
    let mut at = whole.len() - 48;
    let _meta = (varint(&whole, &mut at), varint(&whole, &mut at));
    let (index_off, index_size) = (varint(&whole, &mut at) as usize, varint(&whole, &mut at) as usize);
    // The index block's single entry: shared 0, key length, value length, key, value = the
    // data block's handle.
    let mut at = index_off + 1;
    let key_len = varint(&whole, &mut at) as usize;
    let _value_len = varint(&whole, &mut at);
    at += key_len;
    let (data_off, data_size) = (varint(&whole, &mut at) as usize, varint(&whole, &mut at) as usize);
    assert_eq!(data_off, 0);

    let index_name = format!("{STEM}.index");
    t.edit(&index_name, |b| set_block_type(b, data_off, data_size, 1));
    let err = open_err(&t.0);
    assert_contains(&err, &t.index().display().to_string());
    assert_contains(&err, "data block 0 at offset 0: snappy-compressed block: not supported");
    t.edit(&index_name, |b| set_block_type(b, index_off, index_size, 1));
    let want = format!("index block at offset {index_off}: snappy-compressed block: not supported");
    assert_contains(&open_err(&t.0), &want);
    t.edit(&index_name, |b| set_block_type(b, index_off, index_size, 7));
    assert_contains(&open_err(&t.0), "unknown block compression type 7");
}

// ---- Hand-built bundles -------------------------------------------------------------------

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_varint(out: &mut Vec<u8>, field: u32, v: u64) {
    put_varint(out, u64::from(field) << 3);
    put_varint(out, v);
}

fn field_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_varint(out, (u64::from(field) << 3) | 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn header(num_shards: u64, endianness: u64) -> Vec<u8> {
    let mut h = Vec::new();
    field_varint(&mut h, 1, num_shards);
    if endianness != 0 {
        field_varint(&mut h, 2, endianness);
    }
    field_bytes(&mut h, 3, &[0x08, 0x01]);
    h
}

fn entry(dtype: i32, shape: &[i64], offset: u64, data: &[u8]) -> Vec<u8> {
    let mut e = Vec::new();
    field_varint(&mut e, 1, dtype as u64);
    let mut s = Vec::new();
    for &d in shape {
        let mut dim = Vec::new();
        field_varint(&mut dim, 1, d as u64);
        field_bytes(&mut s, 2, &dim);
    }
    field_bytes(&mut e, 2, &s);
    if offset != 0 {
        field_varint(&mut e, 4, offset);
    }
    field_varint(&mut e, 5, data.len() as u64);
    put_varint(&mut e, (6 << 3) | 5);
    e.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    e
}

type Kv = (Vec<u8>, Vec<u8>);

fn kv(key: &str, value: Vec<u8>) -> Kv {
    (key.as_bytes().to_vec(), value)
}

/// A block of (key, value) entries, prefix-compressed, one restart every 2 entries.
fn block(entries: &[Kv]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut restarts = Vec::new();
    let mut prev: &[u8] = &[];
    for (i, (k, v)) in entries.iter().enumerate() {
        let shared = if i % 2 == 0 {
            restarts.push(out.len() as u32);
            0
        } else {
            prev.iter().zip(k.iter()).take_while(|(a, b)| a == b).count()
        };
        put_varint(&mut out, shared as u64);
        put_varint(&mut out, (k.len() - shared) as u64);
        put_varint(&mut out, v.len() as u64);
        out.extend_from_slice(&k[shared..]);
        out.extend_from_slice(v);
        prev = k;
    }
    if restarts.is_empty() {
        restarts.push(0);
    }
    for r in &restarts {
        out.extend_from_slice(&r.to_le_bytes());
    }
    out.extend_from_slice(&(restarts.len() as u32).to_le_bytes());
    out
}

/// Appends a block and its trailer; returns its handle.
fn put_block(file: &mut Vec<u8>, b: &[u8]) -> (u64, u64) {
    let at = file.len() as u64;
    file.extend_from_slice(b);
    file.push(0);
    let crc = masked_crc32c(&file[at as usize..]);
    file.extend_from_slice(&crc.to_le_bytes());
    (at, b.len() as u64)
}

/// An SSTable with one data block (`data_block`), an empty metaindex, and an index block. The
/// footer points at `index` when given, else at the real index block.
fn sstable_raw(data_block: &[u8], index: Option<(u64, u64)>) -> Vec<u8> {
    let mut file = Vec::new();
    let data = put_block(&mut file, data_block);
    let meta = put_block(&mut file, &block(&[]));
    let mut handle = Vec::new();
    put_varint(&mut handle, data.0);
    put_varint(&mut handle, data.1);
    let real_index = put_block(&mut file, &block(&[kv("~", handle)]));
    let index = index.unwrap_or(real_index);
    let mut footer = Vec::new();
    for v in [meta.0, meta.1, index.0, index.1] {
        put_varint(&mut footer, v);
    }
    footer.resize(40, 0);
    footer.extend_from_slice(&tf_bundle::MAGIC.to_le_bytes());
    file.extend_from_slice(&footer);
    file
}

/// An SSTable holding `entries` (sorted) in one data block.
fn sstable(entries: &[Kv]) -> Vec<u8> {
    sstable_raw(&block(entries), None)
}

#[test]
fn hand_built_bundle_of_every_dtype() {
    use tf_bundle::dtype::*;
    let t = TempDir::new("dtypes");
    let f64s: Vec<u8> = [1.5f64, -2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    let i64s: Vec<u8> = [7i64, -9, 1 << 40].iter().flat_map(|x| x.to_le_bytes()).collect();
    let i32s: Vec<u8> = (-3i32).to_le_bytes().to_vec();
    let halfs: Vec<u8> = vec![0x00, 0x3c, 0x00, 0xc0]; // 1.0, -2.0 in float16
    let bf16s: Vec<u8> = vec![0x80, 0x3f]; // 1.0 in bfloat16
    let bools: Vec<u8> = vec![0, 1, 2];
    let u8s: Vec<u8> = vec![250, 3];
    let tensors: Vec<(&str, i32, Vec<i64>, Vec<u8>)> = vec![
        ("a/bool", BOOL, vec![3], bools),
        ("a/double", DOUBLE, vec![2, 1], f64s),
        ("a/empty", FLOAT, vec![0, 5], Vec::new()),
        ("b/bfloat16", BFLOAT16, vec![], bf16s),
        ("b/half", HALF, vec![2], halfs),
        ("b/int32", INT32, vec![1, 1, 1], i32s),
        ("b/int64", INT64, vec![3], i64s),
        ("c/uint8", UINT8, vec![2], u8s.clone()),
        ("d/string", 7, vec![1], u8s),
    ];
    let mut data = Vec::new();
    let mut entries = vec![kv("", header(1, 0))];
    for (k, dt, shape, bytes) in &tensors {
        entries.push(kv(k, entry(*dt, shape, data.len() as u64, bytes)));
        data.extend_from_slice(bytes);
    }
    std::fs::write(t.path("m.index"), sstable(&entries)).unwrap();
    std::fs::write(t.path("m.data-00000-of-00001"), &data).unwrap();
    let b = Bundle::open(&t.path("m")).unwrap();
    assert_eq!(b.entries().len(), 9);
    let get = |n: &str| b.tensor(n).unwrap_or_else(|e| panic!("{n}: {e:#}"));
    assert_eq!(Vec::<bool>::try_from(get("a/bool")).unwrap(), [false, true, true]);
    assert_eq!(get("a/double").size(), [2, 1]);
    assert_eq!(get("a/double").double_value(&[1, 0]), -2.0);
    assert_eq!(get("a/empty").size(), [0, 5]);
    assert_eq!(get("b/bfloat16").kind(), Kind::BFloat16);
    assert_eq!(get("b/bfloat16").double_value(&[]), 1.0);
    assert_eq!(get("b/half").kind(), Kind::Half);
    assert_eq!(Vec::<f64>::try_from(get("b/half").to_kind(Kind::Double)).unwrap(), [1.0, -2.0]);
    assert_eq!(get("b/int32").int64_value(&[0, 0, 0]), -3);
    assert_eq!(Vec::<i64>::try_from(get("b/int64")).unwrap(), [7, -9, 1 << 40]);
    assert_eq!(get("c/uint8").int64_value(&[0]), 250);
    assert_contains(&tensor_err(&b, "d/string"), "dtype DT_STRING (7) not supported");
}

fn one_entry_index(value: Vec<u8>) -> Vec<u8> {
    sstable(&[kv("", header(1, 0)), kv("w", value)])
}

#[test]
fn hand_built_bad_entries() {
    let four = vec![0u8; 4];
    // Size disagrees with the shape: refused when the tensor is read.
    let t = TempDir::new("bad-entries");
    let mut e = entry(1, &[2], 0, &four);
    std::fs::write(t.path("m.index"), one_entry_index(e.clone())).unwrap();
    std::fs::write(t.path("m.data-00000-of-00001"), &four).unwrap();
    let b = Bundle::open(&t.path("m")).unwrap();
    assert_contains(&tensor_err(&b, "w"), "shape [2] of float32 needs 8 bytes but the entry says 4");
    assert_contains(&tensor_err(&b, "w"), &t.path("m.index").display().to_string());
    // A second shard the header declares but no entry uses is not needed.
    std::fs::write(t.path("n.index"), sstable(&[kv("", header(2, 0)), kv("w", entry(1, &[1], 0, &four))])).unwrap();
    std::fs::write(t.path("n.data-00000-of-00002"), &four).unwrap();
    assert_eq!(Bundle::open(&t.path("n")).unwrap().tensor("w").unwrap().double_value(&[0]), 0.0);

    // Sliced (partitioned) variables.
    field_bytes(&mut e, 7, &[]);
    assert_contains(&index_err(&one_entry_index(e)), "tensor saved in slices (a partitioned variable): not supported");
    let slice_key = sstable(&[kv("", header(1, 0)), kv("\u{0}\u{1}w", entry(1, &[1], 0, &four))]);
    assert_contains(&index_err(&slice_key), "tensor slice key");
    // Big-endian, no header, shard out of range, unknown rank, negative dimension.
    assert_contains(&index_err(&sstable(&[kv("", header(1, 1))])), "big-endian bundle: not supported");
    assert_contains(&index_err(&sstable(&[kv("w", entry(1, &[1], 0, &four))])), "comes before the bundle header");
    assert_contains(&index_err(&sstable(&[])), "no bundle header");
    let mut e = entry(1, &[1], 0, &four);
    field_varint(&mut e, 3, 1);
    assert_contains(&index_err(&one_entry_index(e)), "shard 1 but the bundle has 1 shards");
    let mut e = entry(1, &[1], 0, &four);
    field_bytes(&mut e, 2, &[0x18, 0x01]);
    assert_contains(&index_err(&one_entry_index(e)), "unknown rank");
    assert_contains(&index_err(&one_entry_index(entry(1, &[-1], 0, &four))), "dimension -1");
    // Keys out of order; a varint too long.
    let unsorted = sstable(&[kv("", header(1, 0)), kv("b", entry(1, &[], 0, &four)), kv("a", entry(1, &[], 0, &four))]);
    assert_contains(&index_err(&unsorted), "keys out of order");
    let mut bad_value = entry(1, &[], 0, &four);
    bad_value.extend_from_slice(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    assert_contains(&index_err(&one_entry_index(bad_value)), "overflows 64 bits");
    // A block whose restart count exceeds its size.
    let mut bogus = block(&[kv("", header(1, 0))]);
    let n = bogus.len();
    bogus[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_contains(&index_err(&sstable_raw(&bogus, None)), "4294967295 restart points declared");
    // An entry sharing more key bytes than the previous key has.
    let mut greedy = Vec::new();
    put_varint(&mut greedy, 3);
    put_varint(&mut greedy, 0);
    put_varint(&mut greedy, 0);
    greedy.extend_from_slice(&0u32.to_le_bytes());
    greedy.extend_from_slice(&1u32.to_le_bytes());
    assert_contains(&index_err(&sstable_raw(&greedy, None)), "shares 3 key bytes but the previous key has 0");
    // An index handle past the end of the file, and one whose size overflows.
    let good = sstable(&[kv("", header(1, 0))]);
    let err = index_err(&sstable_raw(&block(&[kv("", header(1, 0))]), Some((16383, 20))));
    assert_contains(&err, "index block at offset 16383 of size 20");
    assert_contains(&err, "passes the end of the blocks");
    assert_contains(&index_err(&sstable_raw(&block(&[]), Some((1, u64::MAX)))), "passes the end of the blocks");
    assert!(parse_index(&good).unwrap().entries.is_empty());
}
