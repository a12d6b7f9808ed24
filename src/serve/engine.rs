//! The model side of the server: one worker thread owns both generators and answers requests
//! in batches — it takes the first waiting request, waits up to a few milliseconds for more (up to
//! the batch size), translates each direction's images in one forward pass and replies to each
//! request on its own channel. Requests arrive through a bounded queue; a full queue is the
//! caller's to report (503), so memory stays bounded whatever the load.

use crate::io::image::RgbImage;
use crate::pictures::png_bytes;
use crate::translate::{result_picture, Direction, Translator};
use anyhow::Result;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};
use tch::Tensor;
use tokio::sync::oneshot;

/// What a request wants back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Picture {
    /// The translated image (`/api/translate`).
    Image,
    /// The CAM heatmap (`/api/cam`).
    Cam,
}

/// One image to translate, with where the PNG (or the error) goes.
pub struct Job {
    pub direction: Direction,
    pub picture: Picture,
    pub keep_size: bool,
    pub image: RgbImage,
    pub reply: oneshot::Sender<Result<Vec<u8>, String>>,
}

/// The handle requests are submitted through.
#[derive(Clone)]
pub struct Engine {
    queue: SyncSender<Job>,
}

/// How the worker batches.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Most images per forward pass.
    pub batch_size: usize,
    /// Longest wait for a batch to fill after its first request.
    pub wait: Duration,
    /// Requests that may wait in the queue.
    pub queue: usize,
}

impl Engine {
    /// Starts the worker thread with the generators of both directions.
    pub fn start(a2b: Translator, b2a: Translator, batching: Batching) -> Result<Self> {
        let (queue, jobs) = mpsc::sync_channel(batching.queue.max(1));
        std::thread::Builder::new().name("ugatit-model".into()).spawn(move || worker(jobs, &a2b, &b2a, batching))?;
        Ok(Self { queue })
    }

    /// Queues `job`, or hands it back when the queue is full (or the worker is gone).
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        self.queue.try_send(job).map_err(|e| match e {
            TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
        })
    }
}

fn worker(jobs: Receiver<Job>, a2b: &Translator, b2a: &Translator, batching: Batching) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        let deadline = Instant::now() + batching.wait;
        while batch.len() < batching.batch_size {
            match jobs.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        for (direction, translator) in [(Direction::A2b, a2b), (Direction::B2a, b2a)] {
            let (group, rest): (Vec<Job>, Vec<Job>) = batch.into_iter().partition(|j| j.direction == direction);
            batch = rest;
            if !group.is_empty() {
                // A failure inside libtorch must not take the worker (and the server) down.
                let run = std::panic::AssertUnwindSafe(|| run_batch(translator, group));
                if std::panic::catch_unwind(run).is_err() {
                    eprintln!("error: the model panicked on a batch; its requests failed");
                }
            }
        }
    }
}

/// Translates one direction's jobs in one forward pass and replies to each.
fn run_batch(translator: &Translator, jobs: Vec<Job>) {
    let side = translator.config.img_size as u32;
    let mut ready = Vec::with_capacity(jobs.len());
    let mut inputs = Vec::with_capacity(jobs.len());
    for job in jobs {
        match translator.prepare(&job.image) {
            Ok(x) => {
                inputs.push(x);
                ready.push(job);
            }
            Err(e) => drop(job.reply.send(Err(format!("{e:#}")))),
        }
    }
    if ready.is_empty() {
        return;
    }
    let device = translator.generator_device();
    let out = translator.translate(&Tensor::stack(&inputs, 0).to_device(device));
    for (i, job) in ready.into_iter().enumerate() {
        let t = match job.picture {
            Picture::Image => out.image.get(i as i64),
            Picture::Cam => out.heatmap.get(i as i64),
        };
        let original = job.keep_size.then(|| job.image.dimensions());
        let png = result_picture(&t, job.picture == Picture::Cam, side, original).and_then(|img| png_bytes(&img));
        let _ = job.reply.send(png.map_err(|e| format!("{e:#}")));
    }
}
