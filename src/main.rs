use clap::Parser;

/// libtorch's OpenMP threads spin while waiting for work by default; when anything else wants the
/// cores (another process, our loader threads) that spin costs up to 15× in wall time on a
/// 2-core machine. The setting is read when the OpenMP runtime loads, before `main`, so the
/// process re-executes itself once with the passive policy unless the user chose one.
fn ensure_passive_openmp() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("OMP_WAIT_POLICY").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let err =
        std::process::Command::new(exe).args(std::env::args_os().skip(1)).env("OMP_WAIT_POLICY", "PASSIVE").exec();
    // Only reached when exec failed: carry on with the default policy.
    eprintln!("warning: could not re-execute with OMP_WAIT_POLICY=PASSIVE: {err}");
}

/// Rust ignores SIGPIPE, so printing into a closed pipe (`ugatit … | head -1`) would panic;
/// the default action ends the process quietly, as other command-line tools do.
fn default_sigpipe() {
    // SAFETY: restores the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() {
    default_sigpipe();
    ensure_passive_openmp();
    ugatit::device::keep_freed_memory();
    let cli = ugatit::cli::Cli::parse();
    if let Err(err) = ugatit::cli::run(cli) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
