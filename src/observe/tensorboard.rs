//! TensorBoard event files, written natively: `events.out.tfevents.<seconds>.<host>` in a run's
//! `tb/` folder, readable by TensorBoard (and by `tensorboard`'s `EventAccumulator`, which
//! `tools/oracle/check_tensorboard.py` uses to check ours).
//!
//! The file is a sequence of TFRecords — a u64 little-endian length, the masked CRC32C of those 8
//! bytes, the data, the masked CRC32C of the data — each holding one `Event` protobuf:
//! `wall_time` (1, double), `step` (2, int64), and either `file_version` (3, the first record,
//! `"brain.Event:2"`) or a `Summary` (5) of `Value`s: `tag` (1) with `simple_value` (2, float) or
//! `image` (4: `height` 1, `width` 2, `colorspace` 3, `encoded_image_string` 4, PNG). The few
//! protobuf fields are encoded by hand. A resumed run starts a new file in the same folder;
//! TensorBoard reads them all.

use crate::io::tf_bundle::masked_crc32c;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// One summary value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f32),
    /// A PNG with its size.
    Image {
        png: Vec<u8>,
        width: u32,
        height: u32,
    },
}

/// An event file being written.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(field: u32, wire: u32, out: &mut Vec<u8>) {
    varint(u64::from(field << 3 | wire), out);
}

fn bytes_field(field: u32, data: &[u8], out: &mut Vec<u8>) {
    key(field, 2, out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

fn varint_field(field: u32, v: u64, out: &mut Vec<u8>) {
    key(field, 0, out);
    varint(v, out);
}

/// A `Summary.Value` message.
fn summary_value(tag: &str, value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    bytes_field(1, tag.as_bytes(), &mut out);
    match value {
        Value::Scalar(v) => {
            key(2, 5, &mut out);
            out.extend_from_slice(&v.to_le_bytes());
        }
        Value::Image { png, width, height } => {
            let mut image = Vec::new();
            varint_field(1, u64::from(*height), &mut image);
            varint_field(2, u64::from(*width), &mut image);
            varint_field(3, 3, &mut image); // RGB
            bytes_field(4, png, &mut image);
            bytes_field(4, &image, &mut out);
        }
    }
    out
}

/// An `Event` message: the header fields, then `what` (already encoded with its field key).
fn event(wall_time: f64, step: i64, what: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    key(1, 1, &mut out);
    out.extend_from_slice(&wall_time.to_le_bytes());
    varint_field(2, step as u64, &mut out);
    out.extend_from_slice(what);
    out
}

/// One TFRecord around `data`.
pub fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// The records of an event file's bytes, every length and CRC checked.
pub fn read_records(bytes: &[u8]) -> Result<Vec<&[u8]>> {
    let mut records = Vec::new();
    let mut at = 0usize;
    let u32_at = |i: usize| -> Option<u32> { Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?)) };
    while at < bytes.len() {
        let Some(head) = bytes.get(at..at + 8) else { bail!("record at byte {at}: truncated length") };
        let len = u64::from_le_bytes(head.try_into()?);
        if u32_at(at + 8) != Some(masked_crc32c(head)) {
            bail!("record at byte {at}: length CRC mismatch");
        }
        let start = at + 12;
        let end = usize::try_from(len)
            .ok()
            .and_then(|n| start.checked_add(n))
            .filter(|&e| e.checked_add(4).is_some_and(|x| x <= bytes.len()));
        let Some(end) = end else { bail!("record at byte {at}: {len} bytes declared, the file ends first") };
        let data = &bytes[start..end];
        if u32_at(end) != Some(masked_crc32c(data)) {
            bail!("record at byte {at}: data CRC mismatch");
        }
        records.push(data);
        at = end + 4;
    }
    Ok(records)
}

fn seconds_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl EventWriter {
    /// Starts a new event file in `dir` (created if needed), with its version record.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let now = seconds_now();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host = host.trim().replace(['/', '\\'], "_");
        let name = format!(
            "events.out.tfevents.{}.{}.{}",
            now as u64,
            if host.is_empty() { "localhost" } else { &host },
            std::process::id()
        );
        let path = dir.join(name);
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut writer = Self { path, out: BufWriter::new(file) };
        let mut version = Vec::new();
        bytes_field(3, b"brain.Event:2", &mut version);
        writer.write_event(&event(now, 0, &version))?;
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_event(&mut self, event: &[u8]) -> Result<()> {
        self.out.write_all(&record(event)).with_context(|| format!("writing {}", self.path.display()))
    }

    /// One event at `step` holding `values` (`tag`, value).
    pub fn write(&mut self, step: i64, values: &[(&str, Value)]) -> Result<()> {
        let mut summary = Vec::new();
        for (tag, value) in values {
            bytes_field(1, &summary_value(tag, value), &mut summary);
        }
        let mut what = Vec::new();
        bytes_field(5, &summary, &mut what);
        self.write_event(&event(seconds_now(), step, &what))
    }

    /// Pushes what was written to the file (TensorBoard reads as it grows).
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().with_context(|| format!("writing {}", self.path.display()))
    }
}

/// An event read back by [`parse_event`].
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub wall_time: f64,
    pub step: i64,
    pub file_version: Option<String>,
    pub values: Vec<(String, Value)>,
}

/// A protobuf field: its number and its payload (varints as numbers, fixed ones as bytes).
fn fields(mut bytes: &[u8]) -> Result<Vec<(u32, u64, &[u8])>> {
    fn read_varint(bytes: &mut &[u8]) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some((&b, rest)) = bytes.split_first() else { bail!("truncated varint") };
            *bytes = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        bail!("varint too long")
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let key = read_varint(&mut bytes)?;
        let (field, wire) = ((key >> 3) as u32, key & 7);
        fn take<'a>(bytes: &mut &'a [u8], n: usize, field: u32) -> Result<&'a [u8]> {
            if bytes.len() < n {
                bail!("field {field}: truncated");
            }
            let (head, rest) = bytes.split_at(n);
            *bytes = rest;
            Ok(head)
        }
        match wire {
            0 => out.push((field, read_varint(&mut bytes)?, &[][..])),
            1 => out.push((field, 0, take(&mut bytes, 8, field)?)),
            5 => out.push((field, 0, take(&mut bytes, 4, field)?)),
            2 => {
                let n = usize::try_from(read_varint(&mut bytes)?)?;
                out.push((field, 0, take(&mut bytes, n, field)?));
            }
            other => bail!("field {field}: unsupported wire type {other}"),
        }
    }
    Ok(out)
}

/// Decodes an `Event` record as [`EventWriter`] writes them.
pub fn parse_event(bytes: &[u8]) -> Result<Event> {
    let mut event = Event { wall_time: 0.0, step: 0, file_version: None, values: Vec::new() };
    for (field, n, data) in fields(bytes)? {
        match field {
            1 => event.wall_time = f64::from_le_bytes(data.try_into()?),
            2 => event.step = n as i64,
            3 => event.file_version = Some(String::from_utf8(data.to_vec())?),
            5 => {
                for (_, _, value) in fields(data)?.into_iter().filter(|f| f.0 == 1) {
                    let mut tag = String::new();
                    let mut parsed = None;
                    for (f, _, d) in fields(value)? {
                        match f {
                            1 => tag = String::from_utf8(d.to_vec())?,
                            2 => parsed = Some(Value::Scalar(f32::from_le_bytes(d.try_into()?))),
                            4 => {
                                let (mut width, mut height, mut png) = (0, 0, Vec::new());
                                for (g, n, d) in fields(d)? {
                                    match g {
                                        1 => height = n as u32,
                                        2 => width = n as u32,
                                        4 => png = d.to_vec(),
                                        _ => {}
                                    }
                                }
                                parsed = Some(Value::Image { png, width, height });
                            }
                            _ => {}
                        }
                    }
                    let Some(value) = parsed else { bail!("summary value {tag:?} has no scalar or image") };
                    event.values.push((tag, value));
                }
            }
            _ => {}
        }
    }
    Ok(event)
}
