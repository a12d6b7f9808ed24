//! The `ugatit` command line.

pub mod eval;

use anyhow::Result;
use clap::{Parser, Subcommand};

pub mod bench;
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
}

/// Architecture flags shared by the subcommands, named like UGATIT-pytorch's.
#[derive(Debug, Clone, clap::Args)]
pub struct ArchArgs {
    /// Use the light generator (MLP on pooled features).
    #[arg(long)]
    pub light: bool,
    /// Image size (the full generator's MLP depends on it).
    #[arg(long, default_value_t = 256)]
    pub img_size: i64,
    /// Base channel count of the generators and discriminators.
    #[arg(long, default_value_t = 64)]
    pub ch: i64,
    /// Residual blocks in the generator.
    #[arg(long, default_value_t = 4)]
    pub n_res: i64,
}

impl ArchArgs {
    pub fn generator(&self) -> crate::model::generator::Config {
        crate::model::generator::Config { ngf: self.ch, n_res: self.n_res, img_size: self.img_size, light: self.light }
    }
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
    pub arch: ArchArgs,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Summary(args) => {
            for (name, count) in crate::summary::parameter_counts(args.arch.generator()) {
                println!("{name} {count}");
            }
            Ok(())
        }
        Command::Train(args) => train::run(*args),
        Command::Bench(args) => bench::run(args),
        Command::Translate(args) => translate::run_translate(args),
        Command::Test(args) => translate::run_test(args),
        Command::Convert(args) => {
            let n = crate::io::import::convert(&args.input, &args.output)?;
            eprintln!("wrote {n} tensors to {}", args.output.display());
            Ok(())
        }
        Command::Eval(args) => eval::run(args),
    }
}
