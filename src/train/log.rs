//! The loss log: every loss term of every step in `losses.csv` (one row per step, columns
//! `step,lr,` then [`LOSS_NAMES`]), kept in memory for the loss plot.
//!
//! A resumed run keeps the rows up to its checkpoint byte for byte and appends after them; rows a
//! killed run wrote after its last checkpoint are cut, as the resumed run computes those steps
//! again.

use super::step::LOSS_NAMES;
use crate::pictures::plot_losses;
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;

/// The terms the loss plot shows.
const PLOTTED: [&str; 6] = ["d_loss", "g_loss", "G_recon_A", "G_recon_B", "G_cam_A", "G_cam_B"];

/// The per-step loss log.
pub struct LossLog {
    writer: BufWriter<File>,
    history: Vec<(i64, Vec<f64>)>,
}

impl LossLog {
    /// Opens the log of a run whose checkpoint is at `last_step` (0: a new run, new file).
    pub fn open(path: &Path, last_step: i64) -> Result<Self> {
        let mut history = Vec::new();
        if last_step > 0 && path.exists() {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let keep = kept_prefix(&text, last_step, 1, &mut history);
            let file =
                OpenOptions::new().write(true).open(path).with_context(|| format!("opening {}", path.display()))?;
            file.set_len(keep as u64).with_context(|| format!("truncating {}", path.display()))?;
        } else {
            let header = format!("step,lr,{}\n", LOSS_NAMES.join(","));
            crate::io::atomic::write_atomic(path, header.as_bytes())?;
        }
        let file = OpenOptions::new().append(true).open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(Self { writer: BufWriter::new(file), history })
    }

    /// One row: the loss values with 8 decimals, the learning rate with 6 significant digits.
    fn row(step: i64, lr: f64, values: &[f64]) -> String {
        let values: Vec<String> = values.iter().map(|v| format!("{v:.8}")).collect();
        format!("{step},{lr:.6e},{}\n", values.join(","))
    }

    pub fn push(&mut self, step: i64, lr: f64, values: Vec<f64>) -> Result<()> {
        self.writer.write_all(Self::row(step, lr, &values).as_bytes())?;
        self.history.push((step, values));
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        Ok(self.writer.flush()?)
    }

    /// Plots the total and main terms.
    pub fn plot(&self, path: &Path) -> Result<()> {
        let series: Vec<(&str, Vec<(f64, f64)>)> = PLOTTED
            .iter()
            .filter_map(|name| {
                let i = LOSS_NAMES.iter().position(|n| n == name)?;
                Some((*name, self.history.iter().filter_map(|(s, v)| Some((*s as f64, *v.get(i)?))).collect()))
            })
            .collect();
        plot_losses(&series, path)
    }
}

/// The length of the header and the complete rows of steps up to `last_step` in the CSV `text`;
/// their values (after the step and `skip` more columns) go to `history`.
pub(super) fn kept_prefix(text: &str, last_step: i64, skip: usize, history: &mut Vec<(i64, Vec<f64>)>) -> usize {
    let mut lines = text.split_inclusive('\n');
    let mut keep = lines.next().map_or(0, str::len);
    for line in lines {
        let Some(row) = line.strip_suffix('\n') else { break };
        let mut fields = row.split(',');
        let Some(Ok(step)) = fields.next().map(str::parse::<i64>) else { break };
        if step > last_step {
            break;
        }
        history.push((step, fields.skip(skip).filter_map(|f| f.parse().ok()).collect()));
        keep += line.len();
    }
    keep
}
