//! Telling the ranks' failures apart: each rank's heartbeat thread counts up a key in the store
//! every [`BEAT`], and each rank records the step it starts. When a collective fails (a peer's
//! connection closed, or the timeout passed), the rank compares the counters a moment apart: a
//! rank whose count stood still has died; a live rank at an earlier step has stalled. If the
//! store itself is gone, rank 0, which serves it, has died.

use crate::shim::c10d::Store;
use anyhow::Result;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a rank's heartbeat ticks.
pub const BEAT: Duration = Duration::from_millis(250);
/// How long a diagnosis watches the counters: several beats, so a live rank always moves.
pub const WATCH: Duration = Duration::from_millis(1500);

fn beat_key(rank: usize) -> String {
    format!("ugatit/beat/{rank}")
}

fn step_key(rank: usize) -> String {
    format!("ugatit/step/{rank}")
}

/// This rank's heartbeat: a thread ticking its counter until dropped.
pub struct Heartbeat {
    store: Arc<Store>,
    rank: usize,
    stop: Arc<AtomicBool>,
    step: Arc<AtomicI64>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    pub fn start(store: Arc<Store>, rank: usize) -> Result<Self> {
        store.add(&beat_key(rank), 1)?;
        store.set(&step_key(rank), b"0")?;
        let stop = Arc::new(AtomicBool::new(false));
        let step = Arc::new(AtomicI64::new(0));
        let thread = {
            let (store, stop, step) = (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&step));
            std::thread::Builder::new().name("ugatit-heartbeat".into()).spawn(move || {
                let mut published = 0;
                while !stop.load(Ordering::Relaxed) {
                    // A failing store means rank 0 is gone; the next collective reports it.
                    let _ = store.add(&beat_key(rank), 1);
                    let now = step.load(Ordering::Relaxed);
                    if now != published && store.set(&step_key(rank), now.to_string().as_bytes()).is_ok() {
                        published = now;
                    }
                    std::thread::sleep(BEAT);
                }
            })?
        };
        Ok(Self { store, rank, stop, step, thread: Some(thread) })
    }

    /// Records the step this rank starts (published by the heartbeat thread).
    pub fn starting(&self, step: i64) {
        self.step.store(step, Ordering::Relaxed);
    }

    /// Which of the `size` ranks died or stalled, as a sentence.
    pub fn diagnose(&self, size: usize) -> String {
        match self.watch(size) {
            Ok(found) if found.is_empty() => "no other rank is known to have failed".to_string(),
            Ok(found) => found.join("; "),
            Err(_) if self.rank == 0 => "the rendezvous store stopped answering".to_string(),
            Err(_) => "rank 0 died (the rendezvous store it serves is gone)".to_string(),
        }
    }

    fn watch(&self, size: usize) -> Result<Vec<String>> {
        let others: Vec<usize> = (0..size).filter(|&r| r != self.rank).collect();
        let beats =
            |store: &Store| -> Result<Vec<i64>> { others.iter().map(|&r| store.add(&beat_key(r), 0)).collect() };
        let before = beats(&self.store)?;
        std::thread::sleep(WATCH);
        let after = beats(&self.store)?;
        let mine = self.step.load(Ordering::Relaxed);
        let mut found = Vec::new();
        for ((&rank, b), a) in others.iter().zip(before).zip(after) {
            let step: i64 = String::from_utf8_lossy(&self.store.get(&step_key(rank))?).parse().unwrap_or(0);
            if a == b {
                found.push(format!(
                    "rank {rank} died (no heartbeat for {:.1} s, last seen in step {step})",
                    WATCH.as_secs_f64()
                ));
            } else if step < mine {
                found.push(format!("rank {rank} is alive but stalled in step {step} (this rank is in step {mine})"));
            }
        }
        Ok(found)
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
