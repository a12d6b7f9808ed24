//! The protobuf messages of a bundle index (`BundleHeaderProto`, `BundleEntryProto`,
//! `TensorShapeProto`), decoded by hand: only the fields a reader needs, every unknown field
//! skipped by its wire type, groups without recursion.

use super::Entry;
use anyhow::{anyhow, bail, Result};

/// The bundle format version this reader implements (`kTensorBundleVersion`).
const BUNDLE_VERSION: i64 = 1;

/// TensorFlow's limit on a tensor's rank (`TensorShape::MaxDimensions`).
const MAX_RANK: usize = 254;

/// Nesting limit for protobuf groups skipped as unknown fields (protobuf's own default).
pub(super) const MAX_GROUP_DEPTH: usize = 100;

/// A cursor over a byte slice; every read is bounds-checked.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(super) fn byte(&mut self, what: &str) -> Result<u8> {
        let b = *self.buf.get(self.pos).ok_or_else(|| anyhow!("truncated {what} at byte {}", self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    pub(super) fn bytes(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let start = self.pos;
        let end = usize::try_from(n).ok().and_then(|n| start.checked_add(n));
        match end.and_then(|end| Some((end, self.buf.get(start..end)?))) {
            Some((end, s)) => {
                self.pos = end;
                Ok(s)
            }
            None => bail!(
                "truncated {what}: {n} bytes declared at byte {start} but only {} remain",
                self.buf.len().saturating_sub(start)
            ),
        }
    }

    /// A base-128 varint of at most `max_bits` bits (32 or 64).
    pub(super) fn varint(&mut self, max_bits: u32, what: &str) -> Result<u64> {
        let start = self.pos;
        let mut v = 0u64;
        let mut shift = 0u32;
        while shift < max_bits {
            let b = self.byte(what)?;
            let low = u64::from(b & 0x7f);
            // The last byte may hold only the bits that are left (4 of 32, 1 of 64).
            if shift + 7 > max_bits && low >> (max_bits - shift) != 0 {
                bail!("{what}: varint at byte {start} overflows {max_bits} bits");
            }
            v |= low << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
        }
        bail!("{what}: varint at byte {start} is longer than {max_bits} bits allow")
    }

    pub(super) fn fixed32(&mut self, what: &str) -> Result<u32> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes(b.try_into().map_err(|_| anyhow!("truncated {what}"))?))
    }
}

/// One protobuf field: its number and value.
enum Field<'a> {
    Varint(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
    /// Fixed64 values and groups: nothing this reader needs.
    Skipped,
}

/// Reads the next field of a protobuf message, skipping groups (without recursion).
fn next_field<'a>(r: &mut Reader<'a>, what: &str) -> Result<(u32, Field<'a>)> {
    let at = r.pos;
    let tag = r.varint(32, what)?;
    let number = u32::try_from(tag >> 3).map_err(|_| anyhow!("{what}: bad field tag at byte {at}"))?;
    if number == 0 {
        bail!("{what}: field number 0 at byte {at}");
    }
    let field = match tag & 7 {
        0 => Field::Varint(r.varint(64, what)?),
        1 => {
            r.bytes(8, what)?;
            Field::Skipped
        }
        2 => {
            let len = r.varint(32, what)?;
            Field::Bytes(r.bytes(len, &format!("{what} field {number}"))?)
        }
        3 => {
            skip_group(r, number, what)?;
            Field::Skipped
        }
        4 => bail!("{what}: unexpected end-group tag at byte {at}"),
        5 => Field::Fixed32(r.fixed32(what)?),
        w => bail!("{what}: invalid wire type {w} at byte {at}"),
    };
    Ok((number, field))
}

/// Skips a group whose start tag (field `number`) was just read, up to its matching end tag.
fn skip_group(r: &mut Reader<'_>, number: u32, what: &str) -> Result<()> {
    let mut open: Vec<u32> = vec![number];
    while let Some(&inner) = open.last() {
        let at = r.pos;
        let tag = r.varint(32, what)?;
        let n = u32::try_from(tag >> 3).map_err(|_| anyhow!("{what}: bad field tag at byte {at}"))?;
        match tag & 7 {
            0 => {
                r.varint(64, what)?;
            }
            1 => {
                r.bytes(8, what)?;
            }
            2 => {
                let len = r.varint(32, what)?;
                r.bytes(len, what)?;
            }
            3 => {
                if open.len() >= MAX_GROUP_DEPTH {
                    bail!("{what}: groups nested deeper than {MAX_GROUP_DEPTH}");
                }
                open.push(n);
            }
            4 => {
                if n != inner {
                    bail!("{what}: end-group tag for field {n} at byte {at} closes group {inner}");
                }
                open.pop();
            }
            5 => {
                r.fixed32(what)?;
            }
            w => bail!("{what}: invalid wire type {w} at byte {at}"),
        }
    }
    Ok(())
}

/// A protobuf int32 (sent as a sign-extended varint).
fn int32(v: u64, what: &str) -> Result<i32> {
    i32::try_from(v as i64).map_err(|_| anyhow!("{what}: {v} is not an int32"))
}

/// A non-negative protobuf int64.
fn non_negative(v: u64, what: &str) -> Result<u64> {
    if v > i64::MAX as u64 {
        bail!("{what}: negative value {}", v as i64);
    }
    Ok(v)
}

/// Decodes a `BundleHeaderProto`; returns `num_shards`.
pub(super) fn parse_header(value: &[u8]) -> Result<u32> {
    let what = "bundle header";
    let mut r = Reader::new(value);
    let mut num_shards = 0i32;
    let mut endianness = 0i32;
    let (mut producer, mut min_consumer, mut bad_consumers) = (0i64, 0i64, Vec::new());
    while !r.is_empty() {
        match next_field(&mut r, what)? {
            (1, Field::Varint(v)) => num_shards = int32(v, "bundle header num_shards")?,
            (2, Field::Varint(v)) => endianness = int32(v, "bundle header endianness")?,
            (3, Field::Bytes(b)) => {
                // VersionDef: producer = 1, min_consumer = 2, bad_consumers = 3 (repeated).
                let mut v = Reader::new(b);
                while !v.is_empty() {
                    match next_field(&mut v, "bundle version")? {
                        (1, Field::Varint(x)) => producer = i64::from(int32(x, "bundle version producer")?),
                        (2, Field::Varint(x)) => min_consumer = i64::from(int32(x, "bundle version min_consumer")?),
                        (3, Field::Varint(x)) => {
                            bad_consumers.push(i64::from(int32(x, "bundle version bad_consumer")?))
                        }
                        (3, Field::Bytes(packed)) => {
                            let mut p = Reader::new(packed);
                            while !p.is_empty() {
                                let x = p.varint(64, "bundle version bad_consumers")?;
                                bad_consumers.push(i64::from(int32(x, "bundle version bad_consumer")?));
                            }
                        }
                        (1..=3, _) => bail!("bundle version: a field has the wrong wire type"),
                        _ => {}
                    }
                }
            }
            (1..=3, _) => bail!("{what}: a field has the wrong wire type"),
            _ => {}
        }
    }
    if endianness == 1 {
        bail!("big-endian bundle: not supported");
    }
    if endianness != 0 {
        bail!("{what}: unknown endianness {endianness}");
    }
    if min_consumer > BUNDLE_VERSION {
        bail!("bundle needs a reader of version {min_consumer} or later (this one is {BUNDLE_VERSION}; written by version {producer})");
    }
    if bad_consumers.contains(&BUNDLE_VERSION) {
        bail!("bundle refuses readers of version {BUNDLE_VERSION}");
    }
    if num_shards < 1 {
        bail!("{what}: num_shards is {num_shards}");
    }
    Ok(num_shards as u32)
}

/// Decodes a `TensorShapeProto` into `shape` (repeated `dim` fields are appended, as protobuf
/// merges repeated occurrences of a message).
fn parse_shape(bytes: &[u8], shape: &mut Vec<i64>) -> Result<()> {
    let what = "tensor shape";
    let mut r = Reader::new(bytes);
    while !r.is_empty() {
        match next_field(&mut r, what)? {
            (2, Field::Bytes(dim)) => {
                let mut size = 0u64;
                let mut d = Reader::new(dim);
                while !d.is_empty() {
                    match next_field(&mut d, "tensor shape dim")? {
                        (1, Field::Varint(v)) => size = v,
                        (1, _) => bail!("tensor shape dim: size has the wrong wire type"),
                        _ => {}
                    }
                }
                if size > i64::MAX as u64 {
                    bail!("{what}: dimension {} (unknown or negative) in a saved tensor", size as i64);
                }
                if shape.len() >= MAX_RANK {
                    bail!("{what}: more than {MAX_RANK} dimensions");
                }
                shape.push(size as i64);
            }
            (3, Field::Varint(v)) if v != 0 => bail!("{what}: unknown rank in a saved tensor"),
            (3, Field::Varint(_)) => {}
            (2 | 3, _) => bail!("{what}: a field has the wrong wire type"),
            _ => {}
        }
    }
    Ok(())
}

/// Decodes a `BundleEntryProto`.
pub(super) fn parse_entry(value: &[u8]) -> Result<Entry> {
    let what = "bundle entry";
    let mut r = Reader::new(value);
    let mut e = Entry { dtype: 0, shape: Vec::new(), shard: 0, offset: 0, size: 0, crc32c: None };
    while !r.is_empty() {
        match next_field(&mut r, what)? {
            (1, Field::Varint(v)) => e.dtype = int32(v, "bundle entry dtype")?,
            (2, Field::Bytes(b)) => parse_shape(b, &mut e.shape)?,
            (3, Field::Varint(v)) => {
                let id = int32(v, "bundle entry shard_id")?;
                e.shard = u32::try_from(id).map_err(|_| anyhow!("{what}: negative shard_id {id}"))?;
            }
            (4, Field::Varint(v)) => e.offset = non_negative(v, "bundle entry offset")?,
            (5, Field::Varint(v)) => e.size = non_negative(v, "bundle entry size")?,
            (6, Field::Fixed32(v)) => e.crc32c = Some(v),
            (7, _) => bail!("tensor saved in slices (a partitioned variable): not supported"),
            (1..=6, _) => bail!("{what}: a field has the wrong wire type"),
            _ => {}
        }
    }
    Ok(e)
}
