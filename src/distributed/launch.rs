//! `ugatit train --nproc-per-node N` without torchrun: this process starts N local ranks — the
//! same executable and arguments, with torchrun's variables — and supervises them. It forwards
//! SIGINT/SIGTERM, and when a rank fails it names it, gives the others the collective timeout to
//! notice and stop, ends any that remain, and fails. A rank dies with its launcher
//! (`PR_SET_PDEATHSIG`), so killing the launcher ends the whole job.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// How often the launcher looks at its ranks.
const POLL: Duration = Duration::from_millis(100);
/// Time beyond the collective timeout that the other ranks get to stop by themselves.
const GRACE: Duration = Duration::from_secs(10);

/// The arguments without `--nproc-per-node N` (or `=N`): what each rank is started with.
pub fn rank_arguments(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--nproc-per-node" {
            args.next();
        } else if !arg.to_string_lossy().starts_with("--nproc-per-node=") {
            out.push(arg);
        }
    }
    out
}

/// A port nobody listens on now (the operating system's choice), for rank 0's store.
fn free_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port for the ranks to meet at")?;
    Ok(listener.local_addr()?.port())
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => format!("ended ({status})"),
    }
}

/// Starts `nproc` ranks when asked for more than one and this process is not itself a rank (no
/// torchrun variables): their common exit status, or `None` to go on as a single process or rank.
pub fn launch_if_asked(
    nproc: i64,
    timeout: Duration,
    interrupt: &AtomicBool,
    signal: &AtomicI32,
) -> Result<Option<i32>> {
    if nproc <= 1 || super::World::from_env()?.is_some() {
        return Ok(None);
    }
    launch(nproc as usize, timeout, interrupt, signal).map(Some)
}

/// Starts `nproc` ranks of this command and waits for them; `interrupt` and `signal` are set by
/// the caller's SIGINT/SIGTERM handler. Returns the ranks' common exit status when they all
/// stopped alike after a signal (e.g. 130), 0 when all finished.
pub fn launch(nproc: usize, timeout: Duration, interrupt: &AtomicBool, signal: &AtomicI32) -> Result<i32> {
    let exe = std::env::current_exe().context("locating this executable to start the ranks")?;
    let args = rank_arguments(std::env::args_os().skip(1));
    let port = free_port()?;
    eprintln!("starting {nproc} ranks on this machine (rendezvous at 127.0.0.1:{port})");
    let mut ranks: Vec<Option<Child>> = Vec::with_capacity(nproc);
    for rank in 0..nproc {
        let mut command = Command::new(&exe);
        command
            .args(&args)
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string());
        // SAFETY: prctl is async-signal-safe; it runs in the child between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        match command.spawn() {
            Ok(child) => ranks.push(Some(child)),
            Err(e) => {
                kill_all(&mut ranks);
                return Err(e).with_context(|| format!("starting rank {rank} ({})", exe.display()));
            }
        }
    }
    supervise(ranks, timeout, interrupt, signal)
}

fn kill_all(ranks: &mut [Option<Child>]) {
    for child in ranks.iter_mut().flatten() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn supervise(
    mut ranks: Vec<Option<Child>>,
    timeout: Duration,
    interrupt: &AtomicBool,
    signal: &AtomicI32,
) -> Result<i32> {
    let mut forwarded = false;
    let mut statuses: Vec<Option<ExitStatus>> = vec![None; ranks.len()];
    let mut failed: Option<(usize, ExitStatus, Instant)> = None;
    loop {
        if interrupt.load(Ordering::SeqCst) && !forwarded {
            forwarded = true;
            let sig = signal.load(Ordering::SeqCst);
            for child in ranks.iter().flatten() {
                // SAFETY: signals a child we started and have not reaped.
                unsafe { libc::kill(child.id() as libc::pid_t, sig) };
            }
        }
        for (rank, slot) in ranks.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            if let Some(status) = child.try_wait().with_context(|| format!("waiting for rank {rank}"))? {
                statuses[rank] = Some(status);
                *slot = None;
                let stopped_by_signal = forwarded && status.code() == Some(128 + signal.load(Ordering::SeqCst));
                if !status.success() && !stopped_by_signal && failed.is_none() {
                    eprintln!("rank {rank} {}; the other ranks stop within the timeout", describe(status));
                    failed = Some((rank, status, Instant::now()));
                }
            }
        }
        if ranks.iter().all(Option::is_none) {
            break;
        }
        if let Some((_, _, since)) = failed {
            if since.elapsed() > timeout + GRACE {
                eprintln!("ranks still running {} s after the failure; ending them", (timeout + GRACE).as_secs());
                kill_all(&mut ranks);
                break;
            }
        }
        std::thread::sleep(POLL);
    }
    if let Some((rank, status, _)) = failed {
        let why = if status.code().is_some() {
            "its own message is above"
        } else {
            "stopped from outside: out of memory, or the scheduler?"
        };
        bail!("rank {rank} {}, so the job failed ({why})", describe(status));
    }
    // All ranks stopped alike: after a signal each exits 128 + its number, else 0.
    Ok(statuses.iter().flatten().filter_map(|s| s.code()).max().unwrap_or(0))
}
