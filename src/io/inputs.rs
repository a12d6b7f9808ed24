//! What `ugatit translate` reads and where each result goes: files, folders (recursively, with
//! their relative paths kept) and glob patterns expanded into [`Job`]s, and the checks that keep
//! the outputs from clobbering anything (two inputs onto one output, an output onto an input).

use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// An input image and where its result goes (relative to the output folder, without extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub input: PathBuf,
    pub output: PathBuf,
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn stem(path: &Path) -> PathBuf {
    PathBuf::from(path.file_stem().unwrap_or(path.as_os_str()))
}

/// Expands `inputs` into jobs. Each file is taken once, however many inputs or links reach it;
/// errors: a pattern matching nothing, no file at all, two inputs for one output name.
pub fn collect_jobs(inputs: &[String]) -> Result<Vec<Job>> {
    let mut jobs = Vec::new();
    let mut seen_files = BTreeSet::new();
    let mut take = |jobs: &mut Vec<Job>, input: PathBuf, output: PathBuf| {
        if seen_files.insert(input.canonicalize().unwrap_or_else(|_| input.clone())) {
            jobs.push(Job { input, output });
        }
    };
    for input in inputs {
        let path = Path::new(input);
        if path.is_dir() {
            for file in walk(path)? {
                let rel = file.strip_prefix(path).unwrap_or(&file).with_extension("");
                take(&mut jobs, file, rel);
            }
        } else if is_glob(input) && !path.exists() {
            let matches: Vec<PathBuf> = glob::glob(input)
                .with_context(|| format!("invalid pattern {input:?}"))?
                .filter_map(Result::ok)
                .filter(|p| p.is_file())
                .collect();
            if matches.is_empty() {
                bail!("{input}: the pattern matches no file");
            }
            for p in matches {
                take(&mut jobs, p.clone(), stem(&p));
            }
        } else {
            take(&mut jobs, path.to_path_buf(), stem(path));
        }
    }
    if jobs.is_empty() {
        bail!("no input files in {} (hidden files are skipped)", inputs.join(", "));
    }
    let mut outputs = BTreeMap::new();
    for job in &jobs {
        if let Some(first) = outputs.insert(job.output.clone(), job.input.clone()) {
            bail!(
                "{} and {} would both be written to {}.png",
                first.display(),
                job.input.display(),
                job.output.display()
            );
        }
    }
    Ok(jobs)
}

/// Every non-hidden file under `dir`, sorted, each folder visited once (a symbolic link back
/// up the tree is not followed round).
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut visited = BTreeSet::new();
    walk_into(dir, &mut visited, &mut files)?;
    Ok(files)
}

fn walk_into(dir: &Path, visited: &mut BTreeSet<PathBuf>, files: &mut Vec<PathBuf>) -> Result<()> {
    let canonical = dir.canonicalize().with_context(|| format!("reading folder {}", dir.display()))?;
    if !visited.insert(canonical) {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk_into(&path, visited, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

/// `path` with its folder resolved, if that folder exists.
fn resolved(path: &Path) -> Option<PathBuf> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Some(parent.canonicalize().ok()?.join(path.file_name()?))
}

/// Refuses an output folder that is a file, and any output that would replace an input file.
/// `outputs` gives the files a job writes, relative to `out`.
pub fn check_outputs(jobs: &[Job], out: &Path, outputs: impl Fn(&Job) -> Vec<PathBuf>) -> Result<()> {
    if out.exists() && !out.is_dir() {
        bail!("--out {} is a file: give a folder for the results", out.display());
    }
    let inputs: BTreeMap<PathBuf, &Path> =
        jobs.iter().filter_map(|j| Some((j.input.canonicalize().ok()?, j.input.as_path()))).collect();
    for job in jobs {
        for file in outputs(job) {
            let target = out.join(&file);
            if let Some(input) = resolved(&target).and_then(|t| inputs.get(&t)) {
                bail!(
                    "the result of {} would be written over the input {}: choose another --out",
                    job.input.display(),
                    input.display()
                );
            }
        }
    }
    Ok(())
}
