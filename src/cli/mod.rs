//! The `ugatit` command line.

pub mod eval;

use anyhow::Result;
use clap::{Parser, Subcommand};

pub mod bench;
pub mod serve;
pub mod settings;
pub mod train;
pub mod translate;

/// U-GAT-IT image-to-image translation (Kim et al., ICLR 2020) on libtorch.
#[derive(Debug, Parser)]
#[command(name = "ugatit", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the parameter count of each of the six networks.
    Summary(SummaryArgs),
    /// Train U-GAT-IT (without --dataset: a short demo on the bundled sample).
    Train(Box<train::TrainArgs>),
    /// Translate images or folders with a trained generator.
    Translate(translate::TranslateArgs),
    /// The reference's test phase on a dataset's testA/testB (grids and plain translations).
    Test(translate::TestArgs),
    /// Convert a UGATIT-pytorch .pt or PaddleGAN .pdparams checkpoint to safetensors.
    Convert(ConvertArgs),
    /// Time training iterations on random images (s/iter, peak memory).
    Bench(bench::BenchArgs),
    /// KID, mean KID and FID between image folders (GAN_Metrics-Tensorflow's definitions).
    Eval(eval::EvalArgs),
    /// Serve a web page and an HTTP API that translate photos.
    Serve(serve::ServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// A UGATIT-pytorch (.pt), PaddleGAN (.pdparams) or safetensors checkpoint.
    pub input: std::path::PathBuf,
    /// The safetensors file to write (keys `genA2B.DownBlock.1.weight`, ...).
    pub output: std::path::PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct SummaryArgs {
    #[command(flatten)]
    pub arch: settings::arch::Flags,
}

/// The defaults with the given architecture flags, checked as `train` checks them.
pub fn architecture(flags: &settings::arch::Flags) -> Result<crate::train::config::Architecture> {
    let mut config = crate::train::config::TrainConfig::default();
    flags.apply(&mut config);
    let arch = config.architecture();
    arch.check_host_memory(false)?;
    Ok(arch)
}

/// Starts the device flags for translating: the CUDA settings, `--device`, `--precision`,
/// `--memory-format`.
pub fn start_compute(flags: &settings::device::Flags) -> Result<crate::precision::Compute> {
    let mut config = crate::train::config::TrainConfig::default();
    flags.apply(&mut config);
    config.start_compute(crate::precision::Workload::Inference)
}

/// `<result-dir default>/<dataset name>`: where `test` and `eval` put their outputs by default.
pub fn default_run_dir(dataset: &std::path::Path) -> std::path::PathBuf {
    crate::train::config::TrainConfig { dataset: dataset.to_path_buf(), ..crate::train::config::TrainConfig::default() }
        .run_dir()
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Summary(args) => {
            for (name, count) in crate::summary::parameter_counts(architecture(&args.arch)?.model_config()?) {
                println!("{name} {count}");
            }
            Ok(())
        }
        Command::Train(args) => train::run(*args),
        Command::Bench(args) => bench::run(args),
        Command::Translate(args) => translate::run_translate(args),
        Command::Test(args) => translate::run_test(args),
        Command::Convert(args) => {
            let n = crate::io::checkpoint::convert(&args.input, &args.output)?;
            eprintln!("wrote {n} tensors to {}", args.output.display());
            Ok(())
        }
        Command::Eval(args) => eval::run(args),
        Command::Serve(args) => serve::run(args),
    }
}
