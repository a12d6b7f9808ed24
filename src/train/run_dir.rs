//! A run's folder, `<result_dir>/<dataset>/`: its paths, the lock that keeps a second process
//! out, and the clean-ups a (re)start needs.
//!
//! Layout: `config.toml` (the effective configuration), `losses.csv`, `losses.png`,
//! `img/A2B_%07d.png`, `img/B2A_%07d.png`, `model/latest.safetensors`,
//! `model/<dataset>_params_%07d.safetensors`, `tb/events.out.tfevents.*` (TensorBoard), and `.lock` (the lock file, holding the pid of the
//! run that has it).

use super::config::TrainConfig;
use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// What a run writes directly in its folder (sub-folders `model/` and `img/` hold the rest).
const RUN_FILES: [&str; 3] = ["config.toml", "losses.csv", "losses.png"];
const RUN_FOLDERS: [&str; 3] = ["model", "img", "tb"];

/// Where the run's files go.
pub struct RunPaths {
    pub dir: PathBuf,
}

impl RunPaths {
    pub fn new(config: &TrainConfig) -> Self {
        Self { dir: config.run_dir() }
    }

    pub fn latest(&self) -> PathBuf {
        self.dir.join("model").join("latest.safetensors")
    }

    pub fn numbered(&self, step: i64) -> PathBuf {
        let name = self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.dir.join("model").join(format!("{name}_params_{step:07}.safetensors"))
    }

    pub fn csv(&self) -> PathBuf {
        self.dir.join("losses.csv")
    }

    /// The files of an earlier run found in the folder (relative names), if any.
    pub fn previous_run(&self) -> Vec<String> {
        let mut found: Vec<String> =
            RUN_FILES.iter().filter(|f| self.dir.join(f).exists()).map(|f| f.to_string()).collect();
        for folder in RUN_FOLDERS {
            let entries = std::fs::read_dir(self.dir.join(folder)).into_iter().flatten().flatten();
            if entries.into_iter().next().is_some() {
                found.push(format!("{folder}/"));
            }
        }
        found
    }

    /// Removes an earlier run's files (for `--overwrite`), so that nothing of it mixes with the new
    /// run. Other files in the folder are left alone.
    pub fn remove_previous_run(&self) -> Result<()> {
        for file in RUN_FILES {
            let path = self.dir.join(file);
            if path.exists() {
                std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            }
        }
        for folder in RUN_FOLDERS {
            let path = self.dir.join(folder);
            if path.exists() {
                std::fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
            }
        }
        Ok(())
    }

    /// Removes the temporary files (`.<name>.<pid>.<n>.tmp`) that saves killed mid-write left in
    /// the folder; returns how many. Only call it holding the [`RunLock`]: then no other process
    /// is writing here.
    pub fn remove_stale_temp_files(&self) -> Result<usize> {
        let mut removed = 0;
        for dir in [self.dir.clone(), self.dir.join("model"), self.dir.join("img")] {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && name.ends_with(".tmp") && entry.path().is_file() {
                    std::fs::remove_file(entry.path())
                        .with_context(|| format!("removing {}", entry.path().display()))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Creates the folder and its sub-folders.
    pub fn create(&self) -> Result<()> {
        for sub in RUN_FOLDERS {
            let path = self.dir.join(sub);
            std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        }
        Ok(())
    }
}

/// An exclusive lock on a run folder: an OS file lock on `<run>/.lock`, released by the kernel
/// when the process ends however it ends, so a crashed run never leaves the folder locked.
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes the lock of `dir` (creating the folder), or fails naming the process that holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(".lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() { "another process".to_string() } else { format!("process {holder}") };
            bail!(
                "{} is in use by another ugatit run ({who} holds {}); wait for it to end, or use another --result-dir",
                dir.display(),
                path.display()
            );
        }
        file.set_len(0).and_then(|_| file.rewind()).with_context(|| format!("writing {}", path.display()))?;
        write!(file, "{}", std::process::id()).with_context(|| format!("writing {}", path.display()))?;
        Ok(Self { _file: file })
    }
}
