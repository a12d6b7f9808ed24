//! The TensorFlow tensor-bundle `.index` parser (an SSTable of `BundleEntryProto`s) on
//! arbitrary bytes: it must return, never panic, and what it returns must be consistent.
//!
//! The first byte picks the mode. Even: the rest is the whole file. Odd: the rest is the
//! contents of one data block, wrapped here in a valid SSTable (block trailers with correct
//! CRCs, an empty metaindex, an index block, the footer), so that mutations reach the block
//! and protobuf decoding instead of stopping at the block CRC.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ugatit::io::tf_bundle::{is_index, masked_crc32c, parse_index, MAGIC};

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a block and its trailer; returns its handle.
fn put_block(file: &mut Vec<u8>, contents: &[u8]) -> (u64, u64) {
    let at = file.len();
    file.extend_from_slice(contents);
    file.push(0);
    let crc = masked_crc32c(&file[at..]);
    file.extend_from_slice(&crc.to_le_bytes());
    (at as u64, contents.len() as u64)
}

fn wrap_data_block(data_block: &[u8]) -> Vec<u8> {
    let mut file = Vec::with_capacity(data_block.len() + 128);
    let data = put_block(&mut file, data_block);
    // An empty block: one restart at 0, count 1.
    let meta = put_block(&mut file, &[0, 0, 0, 0, 1, 0, 0, 0]);
    // The index block: one entry, key "~", value = the data block's handle.
    let mut handle = Vec::new();
    put_varint(&mut handle, data.0);
    put_varint(&mut handle, data.1);
    let mut index_block = vec![0, 1, handle.len() as u8, b'~'];
    index_block.extend_from_slice(&handle);
    index_block.extend_from_slice(&[0, 0, 0, 0, 1, 0, 0, 0]);
    let index = put_block(&mut file, &index_block);
    let mut footer = Vec::new();
    for v in [meta.0, meta.1, index.0, index.1] {
        put_varint(&mut footer, v);
    }
    footer.resize(40, 0);
    footer.extend_from_slice(&MAGIC.to_le_bytes());
    file.extend_from_slice(&footer);
    file
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let wrapped;
    let bytes = if sel & 1 == 0 {
        rest
    } else {
        wrapped = wrap_data_block(rest);
        &wrapped[..]
    };
    let sniffed = is_index(bytes);
    if let Ok(index) = parse_index(bytes) {
        assert!(sniffed, "parsed an index without the footer magic");
        assert!(index.num_shards >= 1);
        for e in index.entries.values() {
            assert!(e.shard < index.num_shards);
            assert!(e.shape.iter().all(|&d| d >= 0));
        }
    }
});
