//! The SSTable of a bundle's `.index` file: footer, block handles, block trailers (compression
//! type and masked CRC32C) and prefix-compressed entries.

use super::proto::{parse_entry, parse_header, Reader};
use super::{lossy, Index};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;

/// The SSTable footer magic (`kTableMagicNumber`), stored as a little-endian fixed64.
pub const MAGIC: u64 = 0xdb47_7524_8b80_fb57;

/// Bytes in the SSTable footer.
const FOOTER_LEN: usize = 48;

/// Bytes after each block: the compression type and the masked CRC32C.
const TRAILER_LEN: usize = 5;

/// LevelDB's CRC mask (`crc32c::Mask`): stored CRCs are masked so that a CRC of data holding
/// CRCs does not degenerate.
pub fn mask_crc(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// The masked CRC32C of `data`, as block trailers and `BundleEntryProto.crc32c` store it.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    mask_crc(crc32c::crc32c(data))
}

/// Whether `bytes` end in an SSTable footer (the magic of a tensor-bundle `.index` file).
pub fn is_index(bytes: &[u8]) -> bool {
    bytes.len() >= FOOTER_LEN && read_magic(bytes) == Some(MAGIC)
}

fn read_magic(bytes: &[u8]) -> Option<u64> {
    let tail = bytes.get(bytes.len().checked_sub(8)?..)?;
    Some(u64::from_le_bytes(tail.try_into().ok()?))
}

fn to_usize(v: u64, what: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| anyhow!("{what} {v} does not fit in memory"))
}

/// An SSTable BlockHandle.
#[derive(Debug, Clone, Copy)]
struct Handle {
    offset: u64,
    size: u64,
}

fn handle(r: &mut Reader<'_>, what: &str) -> Result<Handle> {
    let offset = r.varint(64, what)?;
    let size = r.varint(64, what)?;
    Ok(Handle { offset, size })
}

/// The contents of the block at `h`, after checking its trailer (CRC, then compression type).
fn read_block<'a>(file: &'a [u8], h: Handle, what: &str) -> Result<&'a [u8]> {
    // Blocks lie before the footer.
    let limit = file.len().saturating_sub(FOOTER_LEN);
    let start = to_usize(h.offset, &format!("{what} offset"))?;
    let size = to_usize(h.size, &format!("{what} size"))?;
    let end = start.checked_add(size).and_then(|e| e.checked_add(TRAILER_LEN));
    let block_and_trailer = match end {
        Some(end) if end <= limit => file.get(start..end),
        _ => None,
    }
    .ok_or_else(|| {
        anyhow!(
            "{what} at offset {} of size {} (+{TRAILER_LEN} trailer bytes) passes the end of the blocks ({limit} bytes)",
            h.offset,
            h.size
        )
    })?;
    let (contents, trailer) = block_and_trailer.split_at(size);
    let (&kind, crc_bytes) = trailer.split_first().ok_or_else(|| anyhow!("{what}: no block trailer"))?;
    let stored = u32::from_le_bytes(crc_bytes.try_into().map_err(|_| anyhow!("{what}: short block trailer"))?);
    let actual = mask_crc(crc32c::crc32c_append(crc32c::crc32c(contents), &[kind]));
    if stored != actual {
        bail!(
            "{what} at offset {}: CRC mismatch (stored masked crc32c {stored:#010x}, computed {actual:#010x}): the file is corrupt",
            h.offset
        );
    }
    match kind {
        0 => Ok(contents),
        1 => bail!("{what} at offset {}: snappy-compressed block: not supported", h.offset),
        k => bail!("{what} at offset {}: unknown block compression type {k}", h.offset),
    }
}

/// Calls `f(key, value)` for each entry of a block, in order. Keys are rebuilt in `key`.
fn for_each_entry<'a>(block: &'a [u8], what: &str, mut f: impl FnMut(&[u8], &'a [u8]) -> Result<()>) -> Result<()> {
    let n = block.len();
    let count_at = n.checked_sub(4).ok_or_else(|| anyhow!("{what}: {n} bytes, too short for a block"))?;
    let num_restarts = block
        .get(count_at..)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| anyhow!("{what}: cannot read the restart count"))?;
    let max_restarts = count_at / 4;
    if num_restarts as usize > max_restarts {
        bail!("{what}: {num_restarts} restart points declared but the {n}-byte block holds at most {max_restarts}");
    }
    let restarts_at = count_at - 4 * num_restarts as usize;
    let entries = block.get(..restarts_at).ok_or_else(|| anyhow!("{what}: bad restart array"))?;
    if num_restarts == 0 && !entries.is_empty() {
        bail!("{what}: {} bytes of entries but no restart points", entries.len());
    }
    for i in 0..num_restarts as usize {
        let at = restarts_at + 4 * i;
        let off = block
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| anyhow!("{what}: cannot read restart point {i}"))?;
        if off as usize >= restarts_at.max(1) {
            bail!("{what}: restart point {i} at {off} is outside the {restarts_at} bytes of entries");
        }
    }
    let mut r = Reader::new(entries);
    let mut key: Vec<u8> = Vec::new();
    while !r.is_empty() {
        let at = r.pos;
        let shared = r.varint(32, what)?;
        let non_shared = r.varint(32, what)?;
        let value_len = r.varint(32, what)?;
        if shared > key.len() as u64 {
            bail!("{what}: entry at byte {at} shares {shared} key bytes but the previous key has {}", key.len());
        }
        let suffix = r.bytes(non_shared, &format!("{what} key at byte {at}"))?;
        let value = r.bytes(value_len, &format!("{what} value at byte {at}"))?;
        key.truncate(shared as usize);
        key.extend_from_slice(suffix);
        f(&key, value)?;
    }
    Ok(())
}

/// Parses a tensor-bundle `.index` file held in memory. Pure: it reads no data shard.
pub fn parse_index(bytes: &[u8]) -> Result<Index> {
    if bytes.len() < FOOTER_LEN {
        bail!(
            "{} bytes: too short for an SSTable footer ({FOOTER_LEN} bytes): not a TensorFlow .index file",
            bytes.len()
        );
    }
    let magic = read_magic(bytes).ok_or_else(|| anyhow!("cannot read the footer magic"))?;
    if magic != MAGIC {
        bail!("wrong magic {magic:#018x} (want {MAGIC:#018x}): not a TensorFlow .index file (SSTable)");
    }
    let footer = bytes.get(bytes.len() - FOOTER_LEN..bytes.len() - 8).ok_or_else(|| anyhow!("no footer"))?;
    let mut r = Reader::new(footer);
    let meta = handle(&mut r, "footer metaindex handle")?;
    let index = handle(&mut r, "footer index handle")?;

    // The metaindex block is unused (no filters), but its CRC is checked all the same.
    let meta_block = read_block(bytes, meta, "metaindex block")?;
    for_each_entry(meta_block, "metaindex block", |_, _| Ok(()))?;

    let index_block = read_block(bytes, index, "index block")?;
    let mut handles = Vec::new();
    for_each_entry(index_block, "index block", |_, value| {
        handles.push(handle(&mut Reader::new(value), "index block handle")?);
        Ok(())
    })?;

    let mut last_key: Option<Vec<u8>> = None;
    // Prefix compression lets a few bytes stand for a long key: the names kept are capped at a
    // multiple of the file's length (real indexes hold a few times their size at most).
    let mut key_budget = bytes.len().saturating_mul(64).saturating_add(1 << 20);
    let mut num_shards = None;
    let mut entries = BTreeMap::new();
    // Data blocks must come in file order without overlapping, so each byte is parsed once.
    let mut blocks_end = 0u64;
    for (i, h) in handles.iter().enumerate() {
        let what = format!("data block {i}");
        if h.offset < blocks_end {
            bail!("{what} at offset {} overlaps the block before it (which ends at {blocks_end})", h.offset);
        }
        blocks_end = h.offset.saturating_add(h.size).saturating_add(TRAILER_LEN as u64);
        let block = read_block(bytes, *h, &what)?;
        for_each_entry(block, &what, |key, value| {
            if let Some(prev) = &last_key {
                if key <= prev.as_slice() {
                    bail!("{what}: key {:?} is not after {:?}: keys out of order", lossy(key), lossy(prev));
                }
            }
            key_budget = key_budget.checked_sub(key.len()).ok_or_else(|| {
                anyhow!("{what}: the keys add up to far more bytes than a {}-byte index can hold", bytes.len())
            })?;
            last_key = Some(key.to_vec());
            if key.is_empty() {
                num_shards = Some(parse_header(value)?);
                return Ok(());
            }
            if num_shards.is_none() {
                bail!("{what}: entry {:?} comes before the bundle header (the empty key)", lossy(key));
            }
            if key.first() == Some(&0) {
                bail!("entry {:?}: tensor slice key (a partitioned variable): not supported", lossy(key));
            }
            let name = std::str::from_utf8(key)
                .map_err(|_| anyhow!("{what}: variable name {:?} is not UTF-8", lossy(key)))?
                .to_string();
            let entry = parse_entry(value).with_context(|| format!("entry {name:?}"))?;
            entries.insert(name, entry);
            Ok(())
        })?;
    }
    let num_shards = num_shards.ok_or_else(|| anyhow!("no bundle header (the empty key): not a tensor bundle"))?;
    for (name, e) in &entries {
        if e.shard >= num_shards {
            bail!("entry {name:?}: shard {} but the bundle has {num_shards} shards", e.shard);
        }
    }
    Ok(Index { entries, num_shards })
}
