//! `ugatit serve`: a web page and an HTTP API that translate photos with one loaded model
//! (axum on tokio; see [`api`] for the routes and errors, [`engine`] for the batching worker).
//!
//! One model is loaded at start; requests are decoded off the async runtime, queued (bounded)
//! and translated in small batches on a worker thread. Nothing is written to disk and nothing
//! from a request is used as a path. SIGINT or SIGTERM stops accepting connections, lets the
//! requests in flight finish, then exits.

pub mod api;
pub mod engine;

use crate::choice::Choice;
use crate::io::checkpoint::Checkpoint;
use crate::translate::Translator;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// How the server listens and how much it takes on.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to bind (loopback by default: the server has no authentication).
    pub host: String,
    /// Port; 0 picks a free one (printed at start).
    pub port: u16,
    /// Largest request body.
    pub max_upload_bytes: usize,
    /// Largest image, by the size its header declares.
    pub max_pixels: u64,
    /// Batching of the model worker.
    pub batching: engine::Batching,
}

/// The facts `GET /api/model` reports and the page shows.
pub fn model_facts(checkpoint: &Checkpoint, path: &Path, translator: &Translator) -> serde_json::Value {
    let c = translator.config;
    let step = checkpoint
        .metadata
        .get("step")
        .and_then(|s| s.parse::<i64>().ok())
        .or_else(|| crate::train::run::step_in_name(path));
    serde_json::json!({
        "checkpoint": path.file_name().map(|n| n.to_string_lossy().into_owned()),
        "format": checkpoint.format.name(),
        "trained_step": step,
        "architecture": { "light": c.light, "ch": c.ngf, "n_res": c.n_res, "img_size": c.img_size },
        "directions": ["a2b", "b2a"],
        "precision": translator.compute.precision.name(),
        "channels_last": translator.compute.channels_last,
    })
}

/// Serves until SIGINT or SIGTERM. Prints `listening on http://ADDR/` on stdout once bound.
pub fn serve(config: ServeConfig, a2b: Translator, b2a: Translator, facts: serde_json::Value) -> Result<()> {
    let engine = engine::Engine::start(a2b, b2a, config.batching)?;
    let state = Arc::new(api::AppState {
        engine,
        permits: Arc::new(tokio::sync::Semaphore::new(config.batching.queue.max(1))),
        facts,
        max_upload_bytes: config.max_upload_bytes,
        max_pixels: config.max_pixels,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        // Before the URL is printed, so that a signal sent as soon as it is seen is caught.
        use tokio::signal::unix::{signal, SignalKind};
        let signals = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
        let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
        let addr = listener.local_addr()?;
        println!("listening on http://{addr}/");
        std::io::stdout().flush()?;
        axum::serve(listener, api::router(state)).with_graceful_shutdown(stop_signal(signals)).await?;
        eprintln!("stopped");
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal((mut int, mut term): (tokio::signal::unix::Signal, tokio::signal::unix::Signal)) {
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
