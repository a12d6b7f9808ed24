//! The unpaired training loader: independent shuffled streams of domain A and domain B
//! images, augmented, batched and prefetched by background threads.
//!
//! # The sequence (a pure function, so resuming is exact)
//!
//! For each domain `d` with `n` files and batch size `B`, training step `s` (1-based, like the
//! reference's loop) takes global chunk `g = s − 1` of an endless sequence of epochs:
//!
//! * `k = ⌊n / B⌋` chunks per epoch; epoch `e = ⌊g / k⌋`, chunk `c = g mod k`;
//! * epoch `e` is the permutation of `0..n` drawn by `Rng::for_stream(seed, [PERM, d, e])`;
//! * the chunk is positions `c·B .. c·B + B` of it; the last `n mod B` positions of every epoch
//!   are **dropped** (a different, random leftover each epoch), so every batch is full;
//! * the sample at position `p` is augmented with `Rng::for_stream(seed, [AUG, d, e, p])`
//!   ([`TrainAugment::draw`]).
//!
//! So step `s`'s batch depends only on (seed, `s`, the file lists, `B`, image size), never on
//! what was drawn before: a loader started at `first_step = s` yields exactly the batches an
//! uninterrupted run yields from step `s` on. A and B use different stream ids and so are
//! independent, like the reference's two separately shuffled `DataLoader`s (whose random
//! pairing is the point of unpaired training). With `B = 1` (the reference default) nothing is
//! dropped; torch's `DataLoader` would instead yield a short final batch.
//!
//! # Shards (data-parallel training)
//!
//! A plan [`sharded`](BatchPlan::sharded) into `R` parts draws the global batch of `B` samples as
//! above and loads only part `r`'s `B / R` consecutive samples of it, so `R` ranks together train
//! on exactly the batches one process with batch `B` trains on.
//!
//! # Threads
//!
//! With `workers = W > 0`, worker `w` builds steps `first + w, first + w + W, …` and hands
//! them over through its own bounded channel of [`PREFETCH_PER_WORKER`] batches; the consumer
//! reads the workers round-robin, which restores step order without a reordering buffer. At
//! most `W·(PREFETCH_PER_WORKER + 1)` batches are in memory or in the making. Workers do pure
//! Rust work (read, decode, resize, crop, convert) and send plain `f32` buffers; tensors are
//! made on the consumer's thread. Dropping the loader stops and joins them. `W = 0` loads
//! synchronously inside [`UnpairedLoader::next`].

use super::augment::{extend_chw_unit, train_pixels, TrainAugment};
use super::rng::Rng;
use crate::io::image::load_rgb8;
use anyhow::{anyhow, bail, Context, Result};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use tch::Tensor;

/// Stream tag of the per-epoch permutations ("perm").
pub const STREAM_PERMUTATION: u64 = 0x7065_726d;
/// Stream tag of the per-sample augmentation draws ("augm").
pub const STREAM_AUGMENT: u64 = 0x6175_676d;
/// Batches each worker may have finished ahead of the consumer.
pub const PREFETCH_PER_WORKER: usize = 2;

/// One side of the unpaired data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    A,
    B,
}

impl Domain {
    /// The id used in stream paths (A = 0, B = 1).
    pub fn id(self) -> u64 {
        match self {
            Domain::A => 0,
            Domain::B => 1,
        }
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Domain::A => "A",
            Domain::B => "B",
        })
    }
}

/// Where one sample of a training batch comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draw {
    /// Index into the domain's file list.
    pub file: usize,
    /// The epoch of the domain's sequence.
    pub epoch: u64,
    /// The position within the epoch's permutation.
    pub position: u64,
}

/// The deterministic plan: which files, which augmentation, for any step.
#[derive(Debug, Clone)]
pub struct BatchPlan {
    a: Vec<PathBuf>,
    b: Vec<PathBuf>,
    batch_size: usize,
    img_size: u32,
    seed: u64,
    /// The part of each batch this plan loads: `(index, count)`; `(0, 1)` is the whole batch.
    shard: (usize, usize),
}

/// The permutation of the most recent epoch per domain, so consecutive steps don't redraw it.
#[derive(Debug, Default)]
struct PermCache {
    cached: [Option<(u64, Vec<usize>)>; 2],
}

/// One step's two batches as channel-major `f32` data, `[B, 3, S, S]` each.
type RawBatch = (Vec<f32>, Vec<f32>);

impl BatchPlan {
    /// Validates the configuration: a positive batch size and image size, and at least one
    /// full batch of files in each domain.
    pub fn new(a: Vec<PathBuf>, b: Vec<PathBuf>, batch_size: usize, img_size: u32, seed: u64) -> Result<Self> {
        if batch_size == 0 {
            bail!("the batch size must be at least 1");
        }
        if img_size == 0 {
            bail!("the image size must be positive");
        }
        for (d, files) in [(Domain::A, &a), (Domain::B, &b)] {
            if files.len() < batch_size {
                bail!("domain {d} has {} training image(s), fewer than the batch size {batch_size}", files.len());
            }
        }
        Ok(Self { a, b, batch_size, img_size, seed, shard: (0, 1) })
    }

    /// The same plan loading only part `index` of `count` equal parts of each batch.
    pub fn sharded(self, index: usize, count: usize) -> Result<Self> {
        if count == 0 || index >= count || !self.batch_size.is_multiple_of(count) {
            bail!("a batch of {} cannot be split into {count} equal parts (part {index})", self.batch_size);
        }
        Ok(Self { shard: (index, count), ..self })
    }

    /// Samples per loaded batch: the batch size divided by the shard count.
    pub fn local_batch_size(&self) -> usize {
        self.batch_size / self.shard.1
    }

    /// The domain's files.
    pub fn files(&self, d: Domain) -> &[PathBuf] {
        match d {
            Domain::A => &self.a,
            Domain::B => &self.b,
        }
    }

    /// The batch size.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The output side length.
    pub fn img_size(&self) -> u32 {
        self.img_size
    }

    /// Full batches per epoch of domain `d` (`⌊n / B⌋ ≥ 1`).
    pub fn batches_per_epoch(&self, d: Domain) -> u64 {
        (self.files(d).len() / self.batch_size) as u64
    }

    /// The epoch and first position of step `step`'s chunk in domain `d`.
    fn locate(&self, d: Domain, step: u64) -> Result<(u64, u64)> {
        if step == 0 {
            bail!("training steps are numbered from 1");
        }
        let per_epoch = self.batches_per_epoch(d);
        let chunk = step - 1;
        Ok((chunk / per_epoch, (chunk % per_epoch) * self.batch_size as u64))
    }

    fn permutation(&self, d: Domain, epoch: u64) -> Vec<usize> {
        Rng::for_stream(self.seed, &[STREAM_PERMUTATION, d.id(), epoch]).permutation(self.files(d).len())
    }

    fn draws_cached(&self, d: Domain, step: u64, cache: &mut PermCache) -> Result<Vec<Draw>> {
        let (epoch, start) = self.locate(d, step)?;
        let slot = &mut cache.cached[d.id() as usize];
        if slot.as_ref().is_none_or(|(e, _)| *e != epoch) {
            *slot = Some((epoch, self.permutation(d, epoch)));
        }
        let perm = slot.as_ref().map(|(_, p)| p.as_slice()).unwrap_or_default();
        Ok((0..self.batch_size as u64)
            .map(|j| {
                let position = start + j;
                Draw { file: perm[position as usize], epoch, position }
            })
            .collect())
    }

    /// The samples of step `step` in domain `d`, in batch order.
    pub fn draws(&self, d: Domain, step: u64) -> Result<Vec<Draw>> {
        self.draws_cached(d, step, &mut PermCache::default())
    }

    /// The augmentation of one drawn sample.
    pub fn augment(&self, d: Domain, draw: Draw) -> TrainAugment {
        TrainAugment::draw(&mut Rng::for_stream(self.seed, &[STREAM_AUGMENT, d.id(), draw.epoch, draw.position]))
    }

    /// The files of step `step` in domain `d`, in batch order (for logging and debugging).
    pub fn step_files(&self, d: Domain, step: u64) -> Result<Vec<PathBuf>> {
        Ok(self.draws(d, step)?.into_iter().map(|dr| self.files(d)[dr.file].clone()).collect())
    }

    fn load_domain(&self, d: Domain, step: u64, cache: &mut PermCache, stop: &AtomicBool) -> Result<Vec<f32>> {
        let side = self.img_size as usize;
        let local = self.local_batch_size();
        let mut out = Vec::with_capacity(local * 3 * side * side);
        for draw in self.draws_cached(d, step, cache)?.into_iter().skip(self.shard.0 * local).take(local) {
            if stop.load(Ordering::Relaxed) {
                bail!("the loader is shutting down");
            }
            let path = &self.files(d)[draw.file];
            let img = load_rgb8(path).with_context(|| format!("step {step}, domain {d}"))?;
            let pixels = train_pixels(&img, self.img_size, self.augment(d, draw))
                .with_context(|| format!("step {step}, domain {d}: augmenting {}", path.display()))?;
            extend_chw_unit(&pixels, &mut out);
        }
        Ok(out)
    }

    fn load_raw(&self, step: u64, cache: &mut PermCache, stop: &AtomicBool) -> Result<RawBatch> {
        Ok((self.load_domain(Domain::A, step, cache, stop)?, self.load_domain(Domain::B, step, cache, stop)?))
    }

    fn to_tensors(&self, (a, b): RawBatch) -> (Tensor, Tensor) {
        let s = i64::from(self.img_size);
        let shape = [self.local_batch_size() as i64, 3, s, s];
        (Tensor::from_slice(&a).view(shape), Tensor::from_slice(&b).view(shape))
    }

    /// Step `step`'s `(A, B)` batches (this shard's part), `[B, 3, S, S]` float in [−1, 1] on the CPU, computed
    /// synchronously (what the loader's workers compute).
    pub fn load(&self, step: u64) -> Result<(Tensor, Tensor)> {
        let raw = self.load_raw(step, &mut PermCache::default(), &AtomicBool::new(false))?;
        Ok(self.to_tensors(raw))
    }
}

/// Deterministic, prefetching loader of unpaired `(A, B)` training batches (see the module
/// documentation for the exact sequence).
pub struct UnpairedLoader {
    plan: Arc<BatchPlan>,
    first_step: u64,
    next_step: u64,
    receivers: Vec<Receiver<(u64, Result<RawBatch>)>>,
    handles: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    /// Permutations for synchronous loading (`workers == 0`).
    cache: PermCache,
}

impl UnpairedLoader {
    /// A loader whose first [`next`](Self::next) returns step `first_step` (1-based), with
    /// `workers` background threads (0: load synchronously). Fails on an invalid configuration
    /// (see [`BatchPlan::new`]), `first_step == 0`, or when a thread cannot be started.
    pub fn new(
        a: Vec<PathBuf>,
        b: Vec<PathBuf>,
        batch_size: usize,
        img_size: u32,
        seed: u64,
        first_step: u64,
        workers: usize,
    ) -> Result<Self> {
        Self::with_plan(BatchPlan::new(a, b, batch_size, img_size, seed)?, first_step, workers)
    }

    /// A loader of `plan`'s batches (see [`UnpairedLoader::new`]).
    pub fn with_plan(plan: BatchPlan, first_step: u64, workers: usize) -> Result<Self> {
        if first_step == 0 {
            bail!("training steps are numbered from 1");
        }
        let plan = Arc::new(plan);
        let stop = Arc::new(AtomicBool::new(false));
        let mut loader = Self {
            plan,
            first_step,
            next_step: first_step,
            receivers: Vec::with_capacity(workers),
            handles: Vec::with_capacity(workers),
            stop,
            cache: PermCache::default(),
        };
        for w in 0..workers {
            let (tx, rx) = sync_channel(PREFETCH_PER_WORKER);
            let plan = Arc::clone(&loader.plan);
            let stop = Arc::clone(&loader.stop);
            let start = first_step.checked_add(w as u64).context("the step number overflows")?;
            // On failure `loader` is dropped here, which stops the workers already started.
            let handle = std::thread::Builder::new()
                .name(format!("ugatit-data-{w}"))
                .spawn(move || worker(&plan, start, workers as u64, &tx, &stop))
                .context("starting a data loader thread")?;
            loader.receivers.push(rx);
            loader.handles.push(handle);
        }
        Ok(loader)
    }

    /// The `(A, B)` batches of the next step, `[B, 3, S, S]` float in [−1, 1] on the CPU.
    ///
    /// A file that fails to load makes this step's call return an error naming the step and
    /// the file; the following call continues with the next step.
    // Not an `Iterator`: the sequence is endless and every item fallible, so `Option` would
    // only ever be `Some`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<(Tensor, Tensor)> {
        let step = self.next_step;
        self.next_step = step.checked_add(1).context("the step number overflows")?;
        if self.receivers.is_empty() {
            let raw = self.plan.load_raw(step, &mut self.cache, &AtomicBool::new(false))?;
            return Ok(self.plan.to_tensors(raw));
        }
        let w = ((step - self.first_step) % self.receivers.len() as u64) as usize;
        let (got, result) =
            self.receivers[w].recv().map_err(|_| anyhow!("data loader thread {w} stopped unexpectedly"))?;
        if got != step {
            bail!("data loader thread {w} delivered step {got} when step {step} was due");
        }
        Ok(self.plan.to_tensors(result?))
    }

    /// The step the next call to [`next`](Self::next) returns.
    pub fn next_step(&self) -> u64 {
        self.next_step
    }

    /// The plan (file lists, sizes, and the step → files/augmentation mapping).
    pub fn plan(&self) -> &BatchPlan {
        &self.plan
    }
}

impl Drop for UnpairedLoader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receivers fails any blocked send, so every worker returns promptly.
        self.receivers.clear();
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

fn worker(plan: &BatchPlan, start: u64, stride: u64, tx: &SyncSender<(u64, Result<RawBatch>)>, stop: &AtomicBool) {
    let mut cache = PermCache::default();
    let mut step = start;
    while !stop.load(Ordering::Relaxed) {
        // A panic in a decoder becomes this step's error instead of a dead thread.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plan.load_raw(step, &mut cache, stop)))
            .unwrap_or_else(|_| {
                cache = PermCache::default();
                Err(anyhow!("step {step}: the image decoder crashed"))
            });
        if tx.send((step, result)).is_err() {
            return;
        }
        match step.checked_add(stride) {
            Some(s) => step = s,
            None => return,
        }
    }
}
