use clap::Parser;

fn main() {
    let cli = ugatit::cli::Cli::parse();
    if let Err(err) = ugatit::cli::run(cli) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
