//! A small zip reader for archives held in memory (`torch.save` files, TorchScript archives,
//! Python wheels).
//!
//! It parses only what these files use: stored and deflated entries, and zip64 sizes and
//! offsets. Every offset and size is checked against the file before it is used, CRCs are
//! verified, and deflated entries are inflated with an output limit equal to their declared
//! size, so a malformed or hostile archive yields an error rather than a panic or an allocation
//! beyond what the file justifies. Stored entries are borrowed from the input, not copied.
//!
//! Why not the `zip` crate: its versions from 9.0.1 on also cap inflation at the declared size
//! and bound their directory allocations by the file's length, but an entry's data comes out only
//! through `Read`, copied: a checkpoint's tensor storages are stored entries, so a 1.1 GB full
//! model would need twice its size in memory while being read (slicing the input ourselves would
//! skip the crate's CRC and size checks, which we would then redo). It also accepts an inflated
//! entry shorter than declared, which this reader refuses, and brings ~8,700 lines of decoders we
//! do not need in place of these.

use anyhow::{anyhow, bail, Context, Result};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

/// One member of a zip archive.
#[derive(Debug, Clone)]
pub struct ZipEntry {
    /// Its path inside the archive.
    pub name: String,
    /// 0 = stored, 8 = deflate.
    pub method: u16,
    /// CRC-32 of the uncompressed data.
    pub crc32: u32,
    /// Compressed size in bytes.
    pub compressed_size: u64,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// Offset of the local header.
    header_offset: u64,
}

/// The central directory of a zip archive held in memory.
#[derive(Debug, Clone)]
pub struct ZipIndex {
    entries: Vec<ZipEntry>,
    by_name: HashMap<String, usize>,
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

pub(crate) fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

pub(crate) fn to_usize(v: u64, what: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| anyhow!("zip: {what} {v} does not fit in memory"))
}

const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD64_LOCATOR_SIG: u32 = 0x0706_4b50;
const EOCD64_SIG: u32 = 0x0606_4b50;
const CDH_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;

impl ZipIndex {
    /// Parses the central directory of the zip archive `data`.
    pub fn parse(data: &[u8]) -> Result<Self> {
        if data.len() < 22 {
            bail!("truncated zip archive: {} bytes is shorter than an end record", data.len());
        }
        // The end-of-central-directory record is within the last 22 + 65535 bytes.
        let lowest = data.len().saturating_sub(22 + 0xffff);
        let eocd = (lowest..=data.len() - 22)
            .rev()
            .find(|&i| {
                le32(data, i) == Some(EOCD_SIG) && le16(data, i + 20).map(|c| i + 22 + c as usize) == Some(data.len())
            })
            .or_else(|| {
                // Tolerate trailing garbage after the comment: take the last signature.
                (lowest..=data.len() - 22).rev().find(|&i| le32(data, i) == Some(EOCD_SIG))
            })
            .ok_or_else(|| anyhow!("truncated zip archive: no end of central directory record"))?;
        let short = |at: usize| le16(data, eocd + at).unwrap_or(0);
        let long = |at: usize| le32(data, eocd + at).unwrap_or(0);
        let mut count = short(10) as u64;
        let mut cd_size = long(12) as u64;
        let mut cd_offset = long(16) as u64;
        if count == 0xffff || cd_size == 0xffff_ffff || cd_offset == 0xffff_ffff {
            // Zip64: the locator sits right before the end record.
            let loc = eocd
                .checked_sub(20)
                .filter(|&l| le32(data, l) == Some(EOCD64_LOCATOR_SIG))
                .ok_or_else(|| anyhow!("zip: zip64 sizes without a zip64 locator"))?;
            let rec = le64(data, loc + 8).ok_or_else(|| anyhow!("zip: truncated zip64 locator"))?;
            let rec = to_usize(rec, "zip64 record offset")?;
            if le32(data, rec) != Some(EOCD64_SIG) {
                bail!("zip: zip64 end record not found at offset {rec}");
            }
            let field = |at: usize| {
                le64(data, rec.saturating_add(at)).ok_or_else(|| anyhow!("zip: truncated zip64 end record"))
            };
            count = field(32)?;
            cd_size = field(40)?;
            cd_offset = field(48)?;
        }
        let cd_start = to_usize(cd_offset, "central directory offset")?;
        let cd_end = cd_start
            .checked_add(to_usize(cd_size, "central directory size")?)
            .filter(|&e| e <= data.len())
            .ok_or_else(|| {
                anyhow!(
                    "truncated zip archive: central directory at {cd_offset} (+{cd_size} bytes) lies beyond the {} bytes of the file",
                    data.len()
                )
            })?;
        let cd = &data[cd_start..cd_end];
        let mut entries = Vec::new();
        let mut by_name = HashMap::new();
        let mut at = 0usize;
        for i in 0..count {
            if le32(cd, at) != Some(CDH_SIG) {
                bail!("zip: central directory entry {i} of {count} is missing or corrupt");
            }
            let f16 = |o: usize| le16(cd, at + o).ok_or_else(|| anyhow!("zip: truncated central directory"));
            let f32_ = |o: usize| le32(cd, at + o).ok_or_else(|| anyhow!("zip: truncated central directory"));
            let flags = f16(8)?;
            let method = f16(10)?;
            let crc32 = f32_(16)?;
            let mut compressed_size = f32_(20)? as u64;
            let mut size = f32_(24)? as u64;
            let name_len = f16(28)? as usize;
            let extra_len = f16(30)? as usize;
            let comment_len = f16(32)? as usize;
            let mut header_offset = f32_(42)? as u64;
            let name_at = at + 46;
            let extra_at = name_at + name_len;
            let next = extra_at + extra_len + comment_len;
            let (Some(name), Some(extra)) = (cd.get(name_at..extra_at), cd.get(extra_at..extra_at + extra_len)) else {
                bail!("zip: truncated central directory");
            };
            // Zip64 extra field: the 64-bit values of the fields set to 0xffffffff, in order.
            let mut e = 0usize;
            while e + 4 <= extra.len() {
                let id = le16(extra, e).unwrap_or(0);
                let len = le16(extra, e + 2).unwrap_or(0) as usize;
                let body = extra.get(e + 4..e + 4 + len).unwrap_or(&[]);
                if id == 0x0001 {
                    let mut p = 0usize;
                    let mut next64 = |v: &mut u64| {
                        if *v == 0xffff_ffff {
                            if let Some(x) = le64(body, p) {
                                *v = x;
                                p += 8;
                            }
                        }
                    };
                    next64(&mut size);
                    next64(&mut compressed_size);
                    next64(&mut header_offset);
                }
                e += 4 + len;
            }
            if flags & 1 != 0 {
                bail!("zip: entry {} is encrypted", String::from_utf8_lossy(name));
            }
            let name = String::from_utf8_lossy(name).into_owned();
            by_name.entry(name.clone()).or_insert(entries.len());
            entries.push(ZipEntry { name, method, crc32, compressed_size, size, header_offset });
            at = next;
        }
        Ok(Self { entries, by_name })
    }

    /// All members, in central-directory order.
    pub fn entries(&self) -> &[ZipEntry] {
        &self.entries
    }

    /// The member called `name`.
    pub fn entry(&self, name: &str) -> Option<&ZipEntry> {
        self.by_name.get(name).and_then(|&i| self.entries.get(i))
    }

    /// The uncompressed bytes of member `name` of the archive `data` (borrowed when stored).
    pub fn read<'a>(&self, data: &'a [u8], name: &str) -> Result<Cow<'a, [u8]>> {
        let e = self.entry(name).ok_or_else(|| anyhow!("zip: no member {name}"))?;
        read_entry(data, e)
    }
}

fn read_entry<'a>(data: &'a [u8], e: &ZipEntry) -> Result<Cow<'a, [u8]>> {
    let name = &e.name;
    let h = to_usize(e.header_offset, "local header offset")?;
    if le32(data, h) != Some(LOCAL_SIG) {
        bail!("truncated zip archive: local header of {name} missing at offset {h}");
    }
    let (Some(n), Some(x)) = (le16(data, h + 26), le16(data, h + 28)) else {
        bail!("truncated zip archive: local header of {name}");
    };
    let start = h + 30 + n as usize + x as usize;
    let end = start
        .checked_add(to_usize(e.compressed_size, "compressed size")?)
        .filter(|&end| end <= data.len())
        .ok_or_else(|| {
            anyhow!(
                "truncated zip archive: {name} needs {} bytes at offset {start}, the file has {}",
                e.compressed_size,
                data.len()
            )
        })?;
    let raw = &data[start..end];
    let out: Cow<[u8]> = match e.method {
        0 => {
            if e.size != e.compressed_size {
                bail!("zip: stored member {name} has different sizes");
            }
            Cow::Borrowed(raw)
        }
        8 => {
            // The limit is the declared size, so a deflate bomb stops there.
            let limit = to_usize(e.size, "uncompressed size")?;
            let v = miniz_oxide::inflate::decompress_to_vec_with_limit(raw, limit)
                .map_err(|err| anyhow!("zip: cannot inflate {name}: {:?}", err.status))?;
            if v.len() != limit {
                bail!("zip: {name} inflates to {} bytes, {} declared", v.len(), limit);
            }
            Cow::Owned(v)
        }
        m => bail!("zip: {name} uses compression method {m}; only stored and deflate are supported"),
    };
    let crc = crc32fast::hash(&out);
    if crc != e.crc32 {
        bail!("zip: CRC mismatch in {name} (corrupt file)");
    }
    Ok(out)
}

/// The uncompressed bytes of `member` inside the zip archive `zip` (e.g. a `.pt` file inside a
/// Python wheel).
pub fn zip_member(zip: &[u8], member: &str) -> Result<Vec<u8>> {
    Ok(ZipIndex::parse(zip)?.read(zip, member)?.into_owned())
}

/// The uncompressed bytes of `member` inside the zip file at `zip_path`.
pub fn read_zip_member(zip_path: &Path, member: &str) -> Result<Vec<u8>> {
    let data = std::fs::read(zip_path).with_context(|| format!("reading {}", zip_path.display()))?;
    zip_member(&data, member).with_context(|| format!("{}", zip_path.display()))
}

/// Whether `data` starts like a zip archive.
pub fn is_zip(data: &[u8]) -> bool {
    data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip_of_nothing_is_an_error() {
        assert!(ZipIndex::parse(b"").is_err());
        assert!(ZipIndex::parse(&[0u8; 100]).is_err());
        // An empty but valid archive.
        let mut eocd = vec![0u8; 22];
        eocd[..4].copy_from_slice(&EOCD_SIG.to_le_bytes());
        assert_eq!(ZipIndex::parse(&eocd).unwrap().entries().len(), 0);
    }
}
