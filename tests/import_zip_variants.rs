//! Zip and storage variants that the fixtures written by torch do not show: zip64 records and
//! fields, deflated members, big-endian archives.

mod pickle_support;

use pickle_support::{f32_bytes, torch_zip, zip, Member, P};
use std::path::Path;
use ugatit::io::checkpoint::read_bytes;
use ugatit::io::torch_archive::{zip_member, TorchFile, ZipIndex};

fn one_tensor_pickle() -> Vec<u8> {
    P::new().proto(2).empty_dict().str("w").tensor("FloatStorage", "0", 3, 0, &[3], &[1]).setitem().stop().bytes_vec()
}

#[test]
fn zip64_end_record_is_followed() {
    // torch always writes a zip64 end record and locator; past 4 GiB the classic end record
    // holds 0xffff / 0xffffffff and only the zip64 one has the numbers.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoints/torch_ugatit.pt");
    let original = std::fs::read(path).unwrap();
    let mut patched = original.clone();
    let n = patched.len();
    let eocd = n - 22;
    assert_eq!(&patched[eocd..eocd + 4], b"PK\x05\x06");
    patched[eocd + 8..eocd + 12].copy_from_slice(&[0xff; 4]); // entry counts
    patched[eocd + 12..eocd + 20].copy_from_slice(&[0xff; 8]); // cd size and offset
    let a = read_bytes(original).unwrap().tensors;
    let b = read_bytes(patched.clone()).unwrap().tensors;
    assert_eq!(a.len(), b.len());
    // Without the zip64 locator, those values are an error.
    let loc = patched.windows(4).rposition(|w| w == b"PK\x06\x07").unwrap();
    patched[loc] = b'X';
    let err = format!("{:#}", read_bytes(patched).unwrap_err());
    assert!(err.contains("zip64 sizes without a zip64 locator"), "{err}");
}

#[test]
fn zip64_extra_fields_and_deflate() {
    let pkl = one_tensor_pickle();
    let data: Vec<u8> = [1.0f32, 2.0, 3.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    let z = zip(&[
        Member { name: "a/data.pkl", data: &pkl, deflate: true, declared_size: None, zip64: true },
        Member { name: "a/data/0", data: &data, deflate: false, declared_size: None, zip64: true },
    ]);
    let index = ZipIndex::parse(&z).unwrap();
    assert_eq!(index.entries().len(), 2);
    assert_eq!(index.entry("a/data/0").unwrap().size, 12);
    assert_eq!(zip_member(&z, "a/data.pkl").unwrap(), pkl);
    let t = TorchFile::from_bytes(z).unwrap().tensors().unwrap();
    assert_eq!(Vec::<f32>::try_from(&t["w"]).unwrap(), vec![1.0, 2.0, 3.0]);
}

#[test]
fn big_endian_archives_are_swapped() {
    let pkl = P::new()
        .proto(2)
        .empty_dict()
        .str("w")
        .tensor("FloatStorage", "0", 4, 1, &[2], &[2])
        .setitem()
        .stop()
        .bytes_vec();
    let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|x| x.to_be_bytes()).collect();
    let z = zip(&[
        Member { name: "archive/data.pkl", data: &pkl, deflate: false, declared_size: None, zip64: false },
        Member { name: "archive/byteorder", data: b"big", deflate: false, declared_size: None, zip64: false },
        Member { name: "archive/data/0", data: &data, deflate: false, declared_size: None, zip64: false },
    ]);
    let t = TorchFile::from_bytes(z).unwrap().tensors().unwrap();
    assert_eq!(Vec::<f32>::try_from(&t["w"]).unwrap(), vec![2.0, 4.0]);
}

#[test]
fn a_torch_files_other_networks_are_never_read_for_translation() {
    use ugatit::io::checkpoint::{read, read_networks, Networks};
    // {genA2B: {w}, disGA: {w}} whose discriminator storage is missing from the archive: reading
    // every network fails on it; reading the generators never touches it.
    let tensor = |p: P, key: &str| p.str("w").tensor("FloatStorage", key, 2, 0, &[2], &[1]).setitem();
    let pkl = P::new().proto(2).empty_dict().str("genA2B").empty_dict();
    let pkl = tensor(pkl, "0").setitem().str("disGA").empty_dict();
    let pkl = tensor(pkl, "1").setitem().stop().bytes_vec();
    let file = std::env::temp_dir().join(format!("ugatit-zip-generators-{}.pt", std::process::id()));
    std::fs::write(&file, torch_zip(&pkl, &[("0", &f32_bytes(&[1.0, 2.0]))])).unwrap();
    let err = format!("{:#}", read(&file).unwrap_err());
    assert!(err.contains("storage 1"), "{err}");
    let generators = read_networks(&file, Networks::Generators).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(generators.tensors.keys().collect::<Vec<_>>(), ["genA2B.w"]);
    assert_eq!(Vec::<f32>::try_from(&generators.tensors["genA2B.w"]).unwrap(), vec![1.0, 2.0]);
    let _ = std::fs::remove_file(file);
}
