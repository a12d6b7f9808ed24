//! `ugatit serve`: flags to [`crate::serve`].

use super::settings;
use crate::serve::engine::Batching;
use crate::serve::{model_facts, serve, ServeConfig};
use crate::translate::Translator;
use anyhow::Result;
use std::path::PathBuf;
use std::time::Duration;

/// Serve a web page and an HTTP API that translate photos.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Checkpoint: any file `ugatit translate` reads.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Working size of a light model (default: the size its checkpoint records, else 256).
    #[arg(long, allow_negative_numbers = true)]
    pub img_size: Option<i64>,
    /// Address to listen on (loopback: only this machine can connect).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free port; the URL is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Largest upload in MB.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_upload_mb: u64,
    /// Largest image in megapixels, as its header declares it (checked before decoding).
    #[arg(long, default_value_t = 50.0)]
    pub max_megapixels: f64,
    /// Most images per forward pass.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub batch_size: u64,
    /// Longest wait, in milliseconds, for a batch to fill.
    #[arg(long, default_value_t = 5)]
    pub batch_wait_ms: u64,
    /// Requests in flight at most (decoding, waiting or translating); more get 503.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub queue: u64,
    #[command(flatten)]
    pub device: settings::device::Flags,
}

pub fn run(args: ServeArgs) -> Result<()> {
    if !(args.max_megapixels.is_finite() && args.max_megapixels > 0.0) {
        anyhow::bail!("--max-megapixels must be a positive number (got {})", args.max_megapixels);
    }
    let compute = super::start_compute(&args.device)?;
    let checkpoint =
        crate::io::checkpoint::read_networks(&args.checkpoint, crate::io::checkpoint::Networks::Generators)?;
    let (a2b, b2a) = Translator::both(&checkpoint, &args.checkpoint, args.img_size, compute)?;
    let facts = model_facts(&checkpoint, &args.checkpoint, &a2b);
    drop(checkpoint);
    let config = ServeConfig {
        host: args.host,
        port: args.port,
        max_upload_bytes: (args.max_upload_mb << 20) as usize,
        max_pixels: (args.max_megapixels * 1e6) as u64,
        batching: Batching {
            batch_size: args.batch_size as usize,
            wait: Duration::from_millis(args.batch_wait_ms),
            queue: args.queue as usize,
        },
    };
    serve(config, a2b, b2a, facts)
}
