//! The bytes of a model file: read into memory, or memory-mapped so that only the pages a reader
//! touches are read from disk and held.

use anyhow::{Context, Result};
use std::io::Read;
use std::ops::Deref;
use std::path::Path;

/// A file's bytes, owned or memory-mapped.
pub enum FileBytes {
    Owned(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl FileBytes {
    /// Maps `path` read-only, or reads it where it cannot be mapped: a pipe (`--checkpoint
    /// <(zcat model.pt.gz)`), some network and FUSE file systems.
    pub fn open(path: &Path) -> Result<Self> {
        let reading = || format!("reading {}", path.display());
        let mut file = std::fs::File::open(path).with_context(reading)?;
        // SAFETY: a read-only map of a file this process does not write; ugatit replaces
        // checkpoints by renaming a new file over the old one (io::atomic), never by rewriting one
        // in place.
        if let Ok(map) = unsafe { memmap2::Mmap::map(&file) } {
            return Ok(Self::Mapped(map));
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).with_context(reading)?;
        Ok(Self::Owned(bytes))
    }
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Owned(bytes) => bytes,
            FileBytes::Mapped(map) => map,
        }
    }
}

impl From<Vec<u8>> for FileBytes {
    fn from(bytes: Vec<u8>) -> Self {
        FileBytes::Owned(bytes)
    }
}

impl std::fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if matches!(self, FileBytes::Mapped(_)) { "mapped" } else { "owned" };
        write!(f, "FileBytes({} bytes, {how})", self.len())
    }
}
