//! Hostile and broken inputs: each must fail with its specific message, never panic, and never
//! allocate what the input does not hold.

mod pickle_support;

use pickle_support::{f32_bytes, torch_zip, zip, zip_stored, Member, P};
use std::path::{Path, PathBuf};
use ugatit::io::checkpoint::{read as import_checkpoint, read_bytes};
use ugatit::io::pdparams::read_pdparams_bytes;
use ugatit::io::pickle::{unpickle, Options, PickleError};
use ugatit::io::torch_archive::{read_torchscript_tensors_from_bytes, zip_member, TorchFile};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoints").join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

/// The import error for `data`, with its whole context chain.
fn import_err(data: Vec<u8>) -> String {
    match read_bytes(data) {
        Ok(c) => panic!("imported {} tensors from a bad file", c.tensors.len()),
        Err(e) => format!("{e:#}"),
    }
}

fn pickle_err(data: &[u8], opts: &Options) -> String {
    match unpickle(data, opts) {
        Ok(v) => panic!("unpickled {v:?} from a bad pickle"),
        Err(e) => e.to_string(),
    }
}

fn assert_contains(msg: &str, want: &str) {
    assert!(msg.contains(want), "error {msg:?} does not contain {want:?}");
}

#[test]
fn empty_file() {
    assert_contains(&import_err(Vec::new()), "empty file");
    assert_contains(
        &pickle_err(&[], &Options::numpy()),
        "truncated pickle: opcode at byte 0 needs 1 bytes but only 0 remain",
    );
    assert_contains(&format!("{:#}", read_pdparams_bytes(&[]).unwrap_err()), "empty file");
}

#[test]
fn wrong_magic() {
    let err = import_err(b"GIF89a this is no checkpoint".to_vec());
    assert_contains(&err, "wrong magic");
    assert_contains(&err, "47 49 46 38");
    let err = format!("{:#}", TorchFile::from_bytes(b"\x80\x02}q\x00.".to_vec()).unwrap_err());
    assert_contains(&err, "wrong magic: not a torch.save file");
    let err = format!("{:#}", read_pdparams_bytes(b"PK\x03\x04").unwrap_err());
    assert_contains(&err, "wrong magic: not a pickle");
}

#[test]
fn error_names_the_file() {
    let dir = std::env::temp_dir().join(format!("ugatit-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken.pt");
    std::fs::write(&path, b"PK\x03\x04 cut").unwrap();
    let err = format!("{:#}", import_checkpoint(&path).unwrap_err());
    assert_contains(&err, "broken.pt");
    assert_contains(&err, "truncated zip archive");
    let missing = format!("{:#}", import_checkpoint(&dir.join("nope.pt")).unwrap_err());
    assert_contains(&missing, "nope.pt");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn truncated_zip() {
    let full = read("torch_ugatit.pt");
    for cut in [full.len() / 2, full.len() - 1, 30] {
        let err = import_err(full[..cut].to_vec());
        assert_contains(&err, "truncated zip archive");
    }
    // Central directory intact, member data cut: rebuild the end record to point at data
    // beyond the (shortened) file.
    let z = zip_stored(&[("archive/data.pkl", b"\x80\x02}.")]);
    let mut bad = z.clone();
    let n = bad.len();
    bad[n - 6..n - 2].copy_from_slice(&(1u32 << 30).to_le_bytes()); // cd offset
    assert_contains(&import_err(bad), "truncated zip archive: central directory at 1073741824");
    // The local header claims more data than the file has.
    let mut bad = z;
    bad[18..22].copy_from_slice(&u32::MAX.to_le_bytes());
    let cd = bad.len() - 22 - (46 + "archive/data.pkl".len());
    bad[cd + 20..cd + 24].copy_from_slice(&u32::MAX.to_le_bytes()); // compressed size
    bad[cd + 24..cd + 28].copy_from_slice(&u32::MAX.to_le_bytes()); // size
    assert_contains(&import_err(bad), "truncated zip archive: archive/data.pkl needs");
}

#[test]
fn corrupt_zip_members() {
    // CRC mismatch.
    let pkl = P::new().proto(2).empty_dict().stop().bytes_vec();
    let mut z = torch_zip(&pkl, &[]);
    let at = z.windows(3).position(|w| w == b"\x80\x02}").unwrap();
    z[at + 2] = b']';
    assert_contains(&import_err(z), "CRC mismatch in archive/data.pkl");
    // A deflated member that inflates beyond its declared size stops at the limit.
    let big = vec![b'a'; 1 << 20];
    let z = zip(&[Member { name: "x", data: &big, deflate: true, declared_size: Some(10), zip64: false }]);
    let err = format!("{:#}", zip_member(&z, "x").unwrap_err());
    assert_contains(&err, "cannot inflate x");
    // Unsupported compression and missing members.
    let mut z = zip_stored(&[("x", b"abc")]);
    z[8] = 12; // method 12 (bzip2) in the local header
    let cd = z.len() - 22 - 47;
    z[cd + 10] = 12;
    assert_contains(&format!("{:#}", zip_member(&z, "x").unwrap_err()), "compression method 12");
    assert_contains(&format!("{:#}", zip_member(&z, "y").unwrap_err()), "no member y");
}

#[test]
fn truncated_pickle() {
    let full = read("paddle_gen_light.pdparams");
    let err = import_err(full[..full.len() * 3 / 5].to_vec());
    assert_contains(&err, "truncated pickle");
    let full = read("paddle_trainer_p2.pdparams");
    let err = import_err(full[..full.len() - 1].to_vec());
    assert_contains(&err, "truncated pickle: opcode");
    // Missing STOP.
    let p = P::new().proto(2).empty_dict().bytes_vec();
    assert_contains(&pickle_err(&p, &Options::numpy()), "truncated pickle: opcode at byte 3");
    // Trailing bytes after STOP in a file that must be one pickle.
    let p = P::new().proto(2).none().stop().raw(b"xx").bytes_vec();
    assert_contains(&pickle_err(&p, &Options::numpy()), "2 bytes of trailing data");
}

fn os_system() -> Vec<u8> {
    P::new().proto(2).global("os", "system").mark().str("echo pwned").tuple().reduce().stop().bytes_vec()
}

#[test]
fn code_execution_is_refused() {
    let p = os_system();
    for opts in [Options::numpy(), Options::torch(), Options::torchscript()] {
        let msg = pickle_err(&p, &opts);
        assert_eq!(msg, "disallowed global os.system");
    }
    assert!(matches!(
        unpickle(&p, &Options::numpy()),
        Err(PickleError::DisallowedGlobal(g)) if g == "os.system"
    ));
    // Through every entry point.
    assert_contains(&import_err(p.clone()), "disallowed global os.system");
    assert_contains(&import_err(torch_zip(&p, &[])), "disallowed global os.system");
    let ts = zip_stored(&[("m/data.pkl", &p), ("m/constants.pkl", b"\x80\x02).")]);
    let err = format!("{:#}", read_torchscript_tensors_from_bytes(ts).unwrap_err());
    assert_contains(&err, "disallowed global os.system");
    // STACK_GLOBAL (protocol 4) and the Python 2 module name are caught too.
    let p = P::new()
        .proto(4)
        .op(0x8c)
        .raw(&[8])
        .raw(b"builtins")
        .op(0x8c)
        .raw(&[4])
        .raw(b"eval")
        .op(0x93)
        .stop()
        .bytes_vec();
    assert_eq!(pickle_err(&p, &Options::torch()), "disallowed global builtins.eval");
    let p = P::new().proto(2).global("__builtin__", "getattr").stop().bytes_vec();
    assert_eq!(pickle_err(&p, &Options::torch()), "disallowed global builtins.getattr");
    // TorchScript classes are only accepted in TorchScript archives.
    let p = P::new().proto(2).global("__torch__.evil", "Module").empty_tuple().op(0x81).stop().bytes_vec();
    assert_eq!(pickle_err(&p, &Options::torch()), "disallowed global __torch__.evil.Module");
    assert!(unpickle(&p, &Options::torchscript()).is_ok());
    // Torch globals are not allowed in a pdparams file.
    let p = P::new().proto(2).global("torch._utils", "_rebuild_tensor_v2").stop().bytes_vec();
    assert_eq!(pickle_err(&p, &Options::numpy()), "disallowed global torch._utils._rebuild_tensor_v2");
    // A control character in a global name is escaped in the message.
    let p = P::new().proto(2).global("os", "sys\rtem").stop().bytes_vec();
    assert_eq!(pickle_err(&p, &Options::numpy()), "disallowed global os.sys\\rtem");
    // Calling an allowed non-callable is refused.
    let p = P::new().proto(2).global("torch", "FloatStorage").empty_tuple().reduce().stop().bytes_vec();
    assert_contains(&pickle_err(&p, &Options::torch()), "torch.FloatStorage cannot be called");
}

#[test]
fn huge_declared_lengths() {
    let o = Options::numpy();
    // BINUNICODE of 4 GB with one byte present.
    let p = P::new().proto(2).op(b'X').raw(&u32::MAX.to_le_bytes()).raw(b"a").bytes_vec();
    assert_eq!(pickle_err(&p, &o), "truncated pickle: BINUNICODE at byte 7 needs 4294967295 bytes but only 1 remain");
    for (op, name) in [(0x8eu8, "BINBYTES8"), (0x8d, "BINUNICODE8"), (0x96, "BYTEARRAY8"), (0x95, "FRAME")] {
        let p = P::new().proto(4).op(op).raw(&u64::MAX.to_le_bytes()).bytes_vec();
        assert_contains(
            &pickle_err(&p, &o),
            &format!("truncated pickle: {name} at byte 11 needs 18446744073709551615 bytes"),
        );
    }
    let p = P::new().proto(2).op(b'B').raw(&u32::MAX.to_le_bytes()).bytes_vec();
    assert_contains(&pickle_err(&p, &o), "BINBYTES at byte 7 needs 4294967295");
    let p = P::new().proto(2).op(0x8b).raw(&(-1i32).to_le_bytes()).bytes_vec();
    assert_contains(&pickle_err(&p, &o), "LONG4 with a negative length");
    let p = P::new().proto(2).op(b'T').raw(&i32::MIN.to_le_bytes()).bytes_vec();
    assert_contains(&pickle_err(&p, &o), "BINSTRING with a negative length");
}

/// `{genA2B: {w: tensor}}` with one storage of four floats.
fn one_tensor(numel: i64, offset: i64, size: &[i64], stride: &[i64]) -> Vec<u8> {
    let pkl = P::new()
        .proto(2)
        .empty_dict()
        .str("genA2B")
        .empty_dict()
        .str("w")
        .tensor("FloatStorage", "0", numel, offset, size, stride)
        .setitem()
        .setitem()
        .stop()
        .bytes_vec();
    torch_zip(&pkl, &[("0", &f32_bytes(&[1.0, 2.0, 3.0, 4.0]))])
}

#[test]
fn storage_and_tensor_bounds() {
    // Sanity: the well-formed version imports.
    let ok = read_bytes(one_tensor(4, 0, &[2, 2], &[2, 1])).unwrap().tensors;
    assert_eq!(ok["genA2B.w"].size(), vec![2, 2]);
    let t = read_bytes(one_tensor(4, 1, &[3], &[1])).unwrap().tensors;
    assert_eq!(Vec::<f32>::try_from(&t["genA2B.w"]).unwrap(), vec![2.0, 3.0, 4.0]);
    let t = read_bytes(one_tensor(4, 0, &[2, 2], &[1, 2])).unwrap().tensors;
    assert_eq!(Vec::<f32>::try_from(t["genA2B.w"].flatten(0, -1)).unwrap(), vec![1.0, 3.0, 2.0, 4.0]);

    // A storage declaring far more elements than its data.
    let err = import_err(one_tensor(1 << 40, 0, &[4], &[1]));
    assert_contains(
        &err,
        "storage archive/data/0 holds 16 bytes, but the pickle declares 1099511627776 elements of float32",
    );
    // A view that runs past its storage.
    let err = import_err(one_tensor(4, 0, &[2, 3], &[3, 1]));
    assert_contains(
        &err,
        "tensor out of bounds: size [2, 3] stride [3, 1] offset 0 needs 6 elements but storage 0 has 4",
    );
    let err = import_err(one_tensor(4, 4, &[1], &[1]));
    assert_contains(&err, "tensor out of bounds");
    // Sizes whose product or extent overflows.
    let err = import_err(one_tensor(4, 0, &[1 << 40, 1 << 40], &[1, 1]));
    assert_contains(&err, "tensor out of bounds: size [1099511627776, 1099511627776] overflows");
    let err = import_err(one_tensor(4, 0, &[3, 2], &[i64::MAX, 1]));
    assert_contains(&err, "tensor out of bounds");
    // A broadcast view would turn 16 bytes into a huge tensor.
    let err = import_err(one_tensor(4, 0, &[1 << 30], &[0]));
    assert_contains(&err, "broadcast views are not supported");
    // Negative sizes, mismatched ranks, missing storage.
    assert_contains(&import_err(one_tensor(4, 0, &[-1], &[1])), "must be a non-negative int");
    assert_contains(&import_err(one_tensor(4, 0, &[2, 2], &[1])), "differ in length");
    let pkl = P::new()
        .proto(2)
        .empty_dict()
        .str("genA2B")
        .empty_dict()
        .str("w")
        .tensor("FloatStorage", "7", 4, 0, &[4], &[1])
        .setitem()
        .setitem()
        .stop()
        .bytes_vec();
    assert_contains(&import_err(torch_zip(&pkl, &[])), "zip: no member archive/data/7");
    // An unknown storage type.
    let pkl = P::new().proto(2).tensor("ComplexFloatStorage", "0", 4, 0, &[4], &[1]).stop().bytes_vec();
    assert_contains(&pickle_err(&pkl, &Options::torch()), "disallowed global torch.ComplexFloatStorage");
    // Persistent ids are refused outside torch files.
    let pkl = P::new().proto(2).none().op(b'Q').stop().bytes_vec();
    assert_contains(&pickle_err(&pkl, &Options::numpy()), "persistent ids are not allowed");
}

#[test]
fn numpy_array_bounds() {
    // _reconstruct(ndarray, (0,), b'b') then BUILD((1, shape, dtype('f4'), False, data)).
    let array = |shape: &[i64], data: &[u8]| {
        let mut p = P::new()
            .proto(2)
            .global("numpy._core.multiarray", "_reconstruct")
            .global("numpy", "ndarray")
            .mark()
            .int(0)
            .tuple()
            .bytes(b"b")
            .op(0x87)
            .reduce()
            .mark()
            .int(1)
            .mark();
        for &d in shape {
            p = p.long(d);
        }
        p.tuple()
            .global("numpy", "dtype")
            .str("f4")
            .op(0x89)
            .op(0x88)
            .op(0x87)
            .reduce()
            .op(0x89)
            .bytes(data)
            .op(b't')
            .op(b'b')
            .stop()
            .bytes_vec()
    };
    let wrap = |arr: Vec<u8>| {
        // {"w": array}
        let mut p = vec![0x80, 2, b'}', b'X', 1, 0, 0, 0, b'w'];
        p.extend_from_slice(&arr[2..arr.len() - 1]);
        p.extend([b's', b'.']);
        p
    };
    let ok = read_pdparams_bytes(&wrap(array(&[2], &f32_bytes(&[1.0, 2.0])))).unwrap();
    assert_eq!(ok["w"].size(), vec![2]);
    let err = format!("{:#}", read_pdparams_bytes(&wrap(array(&[1_000_000_000], &f32_bytes(&[1.0])))).unwrap_err());
    assert_contains(&err, "numpy array data has 4 bytes, but shape [1000000000] of float32 needs 4000000000");
    let err = format!("{:#}", read_pdparams_bytes(&wrap(array(&[1 << 62, 1 << 62], &[]))).unwrap_err());
    assert_contains(&err, "numpy array shape overflows");
    // Unsupported dtype codes are named.
    let mut q = wrap(array(&[1], &[0; 4]));
    let at = q.windows(2).position(|w| w == b"f4").unwrap();
    q[at] = b'c'; // complex64 'c4'
    let err = format!("{:#}", read_pdparams_bytes(&q).unwrap_err());
    assert_contains(&err, "unsupported numpy dtype \"c4\"");
}

#[test]
fn deep_nesting_and_cycles() {
    let o = Options::numpy();
    // 100k nested lists.
    let n = 100_000;
    let mut p = vec![0x80, 2];
    p.extend(std::iter::repeat_n(b']', n));
    p.extend(std::iter::repeat_n(b'a', n - 1));
    p.push(b'.');
    assert_eq!(pickle_err(&p, &o), "pickle nesting deeper than 256 levels (or a cyclic structure)");
    // A list that contains itself.
    let p = P::new().proto(2).empty_list().binput(0).binget(0).append().stop().bytes_vec();
    assert_contains(&pickle_err(&p, &o), "pickle nesting deeper than 256 levels");
    // A million MARKs are just stack entries: STOP finds nothing above the last mark.
    let mut p = vec![0x80, 2];
    p.extend(std::iter::repeat_n(b'(', 1_000_000));
    p.push(b'.');
    assert_contains(&pickle_err(&p, &o), "stack underflow");
}

#[test]
fn shared_reference_bomb() {
    // l0 = [1, 1]; l(i+1) = [li, li]: 2**60 leaves from ~600 bytes.
    let mut p = P::new().proto(2).empty_list().int(1).append().int(1).append().binput(0);
    for i in 0..60u8 {
        p = p.empty_list().binget(i).append().binget(i).append().binput(i + 1);
    }
    let p = p.stop().bytes_vec();
    assert_contains(&pickle_err(&p, &Options::numpy()), "through shared references");
    // The same through builtins.tuple(list), which copies item ids.
    let mut p = P::new().proto(2).mark();
    for _ in 0..1000 {
        p = p.none();
    }
    p = p.op(b'l').binput(0).empty_list().binput(1);
    for _ in 0..5000 {
        p = p.binget(1).global("builtins", "tuple").binget(0).op(0x85).reduce().append().op(b'0');
    }
    let p = p.none().stop().bytes_vec();
    assert_contains(&pickle_err(&p, &Options::numpy()), "through shared references");
}

#[test]
fn malformed_opcodes() {
    let o = Options::numpy();
    assert_contains(&pickle_err(&[0x80, 2, b'R'], &o), "stack underflow");
    assert_contains(&pickle_err(&[0x80, 2, 0xff], &o), "invalid pickle opcode 0xff at byte 2");
    assert_contains(&pickle_err(&[0x80, 9], &o), "unsupported pickle protocol 9");
    assert_contains(&pickle_err(&[0x80, 2, b'h', 5], &o), "memo key 5 was never stored");
    assert_contains(&pickle_err(b"\x80\x02i", &o), "unsupported pickle opcode INST");
    assert_contains(&pickle_err(b"\x80\x02S'a'\n.", &o), "unsupported pickle opcode STRING");
    assert_contains(&pickle_err(b"\x80\x05\x97", &o), "unsupported pickle opcode NEXT_BUFFER");
    assert_contains(&pickle_err(b"\x80\x02NNNs.", &o), "SETITEM on a None");
    assert_contains(&pickle_err(b"\x80\x02(N}u.", &o), "stack underflow");
    assert_contains(&pickle_err(b"\x80\x02}(Nu.", &o), "odd number of items");
    assert_contains(&pickle_err(b"\x80\x02X\x02\x00\x00\x00\xff\xfe.", &o), "not valid UTF-8");
    assert_contains(&pickle_err(b"\x80\x02NNb.", &o), "BUILD on a None");
    assert_contains(&pickle_err(b"\x80\x02N)R.", &o), "REDUCE calls a None");
}

#[test]
fn legacy_torch_files() {
    let full = read("torch_views_legacy.pt");
    assert!(TorchFile::from_bytes(full.clone()).is_ok());
    let err = format!("{:#}", TorchFile::from_bytes(full[..20].to_vec()).unwrap_err());
    assert_contains(&err, "legacy torch file: reading the protocol version");
    let err = format!("{:#}", TorchFile::from_bytes(full[..full.len() - 3].to_vec()).unwrap_err());
    assert_contains(&err, "truncated legacy torch file: storage");
}

#[test]
fn wrong_kinds_of_files() {
    // A TorchScript archive is not a checkpoint.
    let err = import_err(read("torchscript_small.pt"));
    assert_contains(&err, "TorchScript archive");
    // Pickles that are not dicts of networks.
    let p = P::new().proto(2).empty_list().stop().bytes_vec();
    assert_contains(&import_err(p), "unknown layout: the pickle holds a list");
    let p = P::new().proto(2).empty_dict().str("epoch").int(3).setitem().stop().bytes_vec();
    assert_contains(&import_err(p), "unknown layout: no genA2B");
    // safetensors with a broken header.
    let mut st = 10u64.to_le_bytes().to_vec();
    st.extend(b"{not json}");
    assert_contains(&import_err(st), "invalid safetensors file");
    // A TorchScript archive whose root is not a module.
    let p = P::new().proto(2).empty_dict().stop().bytes_vec();
    let z = zip_stored(&[("m/data.pkl", &p)]);
    let err = format!("{:#}", read_torchscript_tensors_from_bytes(z).unwrap_err());
    assert_contains(&err, "not a TorchScript module: the archive holds a dict");
}
