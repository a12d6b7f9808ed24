//! Data-parallel training through the binary, on CPU ranks over Gloo: two ranks of batch 1 train
//! what one process of batch 2 trains (every loss term and every checkpoint tensor), under
//! `--nproc-per-node` and under torchrun; a killed or interrupted job resumes bit for bit; a dead
//! rank is named and the job stops; mismatched ranks and bad environments are refused clearly.
//! The bucketed gradient average is checked in-process on a world of one.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};
use tch::Tensor;
use ugatit::distributed::{launch::rank_arguments, DistBackend, Distributed, World};
use ugatit::io::safetensors::read;

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sample")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ugatit-dist-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The tiny networks of the other end-to-end tests; no decay, so every step has the same lr.
fn train_args(result_dir: &Path, iteration: i64, extra: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["train".into(), "--dataset".into(), sample().into()];
    args.extend(["--result-dir".into(), result_dir.into()]);
    let iteration = iteration.to_string();
    let tiny = ["--iteration", &iteration, "--img-size", "32", "--ch", "4", "--n-res", "1", "--n-dis", "4"];
    let more = ["--light", "--seed", "7", "--decay-flag", "false", "--print-freq", "1000", "--save-freq", "1000"];
    args.extend(tiny.iter().chain(&more).chain(extra).map(OsString::from));
    args
}

fn train(result_dir: &Path, iteration: i64, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ugatit"));
    cmd.args(train_args(result_dir, iteration, extra));
    for name in ugatit::distributed::ENV {
        cmd.env_remove(name);
    }
    cmd
}

fn succeeded(out: Output) -> Output {
    assert!(out.status.success(), "training failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn latest(result_dir: &Path) -> PathBuf {
    result_dir.join("sample/model/latest.safetensors")
}

/// `losses.csv` as columns (without `step`), and the steps.
fn losses(result_dir: &Path) -> (Vec<i64>, BTreeMap<String, Vec<f64>>) {
    let text = std::fs::read_to_string(result_dir.join("sample/losses.csv")).unwrap();
    let mut lines = text.lines();
    let names: Vec<&str> = lines.next().unwrap().split(',').collect();
    let mut columns: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut steps = Vec::new();
    for line in lines {
        for (name, value) in names.iter().zip(line.split(',')) {
            if *name == "step" {
                steps.push(value.parse().unwrap());
            } else {
                columns.entry(name.to_string()).or_default().push(value.parse().unwrap());
            }
        }
    }
    (steps, columns)
}

fn assert_same_losses(a: &Path, b: &Path, rel: f64) {
    let ((steps_a, a), (steps_b, b)) = (losses(a), losses(b));
    assert_eq!(steps_a, steps_b);
    assert!(a.len() > 10, "only {} loss columns", a.len());
    for (name, xs) in &a {
        for (step, (x, y)) in xs.iter().zip(&b[name]).enumerate() {
            // The log has 8 decimals: 1e-7 absolute covers its rounding of near-zero terms.
            assert!((x - y).abs() <= rel * x.abs() + 1e-7, "{name} at step {}: {x} vs {y}", step + 1);
        }
    }
}

/// Every tensor of two checkpoints: parameters within `rel` of the tensor's largest magnitude,
/// optimiser state within 10 × `rel`, integer ones (Adam's step) equal.
fn assert_same_checkpoint(a: &Path, b: &Path, rel: f64) {
    let (a, b) = (read(a).unwrap(), read(b).unwrap());
    assert_eq!(a.metadata["step"], b.metadata["step"]);
    assert_eq!(a.tensors.len(), b.tensors.len());
    assert!(a.tensors.keys().any(|k| k.starts_with("optimD.")) && a.tensors.keys().any(|k| k.starts_with("genA2B.")));
    for (name, x) in &a.tensors {
        let y = &b.tensors[name];
        assert_eq!(x.size(), y.size(), "{name}");
        if x.is_floating_point() {
            // The bound for parameters; Adam's moments amplify the summation order's
            // differences through three steps (1.4e-5 at worst measured), so get ten times more.
            let rel = if name.starts_with("optim") { 10.0 * rel } else { rel };
            let scale = x.abs().max().double_value(&[]).max(1e-6);
            let diff = (x - y).abs().max().double_value(&[]);
            assert!(diff <= rel * scale, "{name}: max difference {diff:e} against magnitude {scale:e}");
        } else {
            assert!(x.equal(y), "{name} differs");
        }
    }
}

fn assert_bitwise_checkpoint(a: &Path, b: &Path) {
    let (a, b) = (read(a).unwrap(), read(b).unwrap());
    assert_eq!(a.metadata["step"], b.metadata["step"]);
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (name, t) in &a.tensors {
        assert!(t.equal(&b.tensors[name]), "{name} differs from the uninterrupted run");
    }
}

/// Two ranks of batch 1 against one process of batch 2, for the paper's loss and for the
/// gradient penalty (whose noise each rank draws as its slice of the global draw).
#[test]
fn two_ranks_train_what_one_process_of_twice_the_batch_trains() {
    for gan in ["lsgan", "wgan-gp"] {
        let single = tmp(&format!("single-{gan}"));
        succeeded(train(&single, 3, &["--gan-type", gan, "--batch-size", "2"]).output().unwrap());
        let ranks = tmp(&format!("ranks-{gan}"));
        let out = succeeded(train(&ranks, 3, &["--gan-type", gan, "--nproc-per-node", "2"]).output().unwrap());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("starting 2 ranks"), "{err}");
        assert_same_losses(&single, &ranks, 1e-5);
        assert_same_checkpoint(&latest(&single), &latest(&ranks), 1e-5);
        let info = ugatit::train::checkpoint::info(&latest(&ranks)).unwrap();
        assert_eq!((info.step, info.world_size), (3, 2));
        for dir in [single, ranks] {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// torchrun (from the torch wheel that supplies libtorch) starts the ranks itself and serves the
/// store from its agent.
#[test]
fn torchrun_starts_the_ranks() {
    let torchrun = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/torchrun");
    if !torchrun.exists() {
        // Written past the test harness's capture, so that the skip shows in a passing run.
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED: no {} (scripts/setup.sh installs it)", torchrun.display());
        return;
    }
    let single = tmp("torchrun-single");
    succeeded(train(&single, 3, &["--batch-size", "2"]).output().unwrap());
    let ranks = tmp("torchrun-ranks");
    let port = free_port().to_string();
    let mut cmd = Command::new(&torchrun);
    cmd.args(["--no-python", "--nproc-per-node", "2", "--master-port", &port, env!("CARGO_BIN_EXE_ugatit")]);
    cmd.args(train_args(&ranks, 3, &[]));
    succeeded(cmd.output().unwrap());
    assert_same_losses(&single, &ranks, 1e-5);
    assert_same_checkpoint(&latest(&single), &latest(&ranks), 1e-5);
    for dir in [single, ranks] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn children(pid: u32) -> Vec<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(path).unwrap_or_default().split_whitespace().map(|p| p.parse().unwrap()).collect()
}

/// Whether `pid` still runs (a zombie has ended).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} after {} s", limit.as_secs());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The step of the first latest checkpoint, waiting for it while `child` runs.
fn wait_for_checkpoint(child: &mut Child, path: &Path) -> i64 {
    let mut step = None;
    wait_until("no checkpoint", Duration::from_secs(300), || {
        assert!(child.try_wait().unwrap().is_none(), "training exited before its first checkpoint");
        step = ugatit::train::checkpoint::info(path).ok().map(|info| info.step);
        step.is_some()
    });
    step.unwrap()
}

#[test]
fn a_killed_or_interrupted_job_resumes_bit_for_bit() {
    const STEPS: i64 = 16;
    let job = |dir: &Path, extra: &[&str]| {
        let mut all = vec!["--nproc-per-node", "2", "--save-latest-freq", "4"];
        all.extend(extra);
        train(dir, STEPS, &all)
    };
    let straight = tmp("resume-straight");
    succeeded(job(&straight, &[]).output().unwrap());

    // SIGKILL to the launcher takes its ranks with it (PR_SET_PDEATHSIG).
    let killed = tmp("resume-killed");
    let mut launcher = job(&killed, &[]).spawn().unwrap();
    let step = wait_for_checkpoint(&mut launcher, &latest(&killed));
    let ranks = children(launcher.id());
    assert_eq!(ranks.len(), 2, "the launcher's children: {ranks:?}");
    launcher.kill().unwrap();
    launcher.wait().unwrap();
    wait_until("ranks still running", Duration::from_secs(20), || !ranks.iter().any(|&pid| running(pid)));
    assert!(step < STEPS, "the job finished before it could be killed");
    succeeded(job(&killed, &["--resume"]).output().unwrap());
    assert_bitwise_checkpoint(&latest(&straight), &latest(&killed));
    assert_eq!(losses(&killed).0, (1..=STEPS).collect::<Vec<_>>(), "loss log after resume");

    // SIGINT to the launcher reaches every rank: rank 0 saves where they stopped, all exit 130.
    let interrupted = tmp("resume-sigint");
    let mut launcher = job(&interrupted, &[]).spawn().unwrap();
    wait_for_checkpoint(&mut launcher, &latest(&interrupted));
    unsafe { libc::kill(launcher.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(launcher.wait().unwrap().code(), Some(130), "SIGINT exit status");
    let saved = ugatit::train::checkpoint::info(&latest(&interrupted)).unwrap().step;
    assert_eq!(*losses(&interrupted).0.last().unwrap(), saved, "checkpoint is at the last logged step");
    succeeded(job(&interrupted, &["--resume"]).output().unwrap());
    assert_bitwise_checkpoint(&latest(&straight), &latest(&interrupted));

    // The global batch decides the data order, so a different number of ranks is refused.
    let out = train(&interrupted, STEPS + 2, &["--resume"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("2 rank(s)"), "{err}");
    for dir in [straight, killed, interrupted] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Starts a long 2-rank job with `--dist-timeout timeout`, sends `signal` to rank 1 after the
/// first checkpoint, and waits for the launcher: its stderr, how long it took to stop after the
/// signal, and rank 1's pid.
fn signal_rank_1(name: &str, timeout: &str, signal: libc::c_int) -> (String, Duration, u32) {
    let dir = tmp(name);
    let args = ["--nproc-per-node", "2", "--save-latest-freq", "2", "--dist-timeout", timeout];
    let mut launcher = train(&dir, 100_000, &args).stderr(std::process::Stdio::piped()).spawn().unwrap();
    wait_for_checkpoint(&mut launcher, &latest(&dir));
    let rank1 = rank_pid(launcher.id(), 1);
    let mut stderr = launcher.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).map(|_| text)
    });
    let signalled_at = Instant::now();
    let ranks = children(launcher.id());
    unsafe { libc::kill(rank1 as libc::pid_t, signal) };
    // A job that hangs fails this test instead of holding CI until its limit.
    let mut status = None;
    while status.is_none() && signalled_at.elapsed() < Duration::from_secs(120) {
        status = launcher.try_wait().unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = signalled_at.elapsed();
    let Some(status) = status else {
        for pid in ranks {
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        let _ = launcher.kill();
        panic!("the job still ran {} s after rank 1 got signal {signal}", elapsed.as_secs());
    };
    let err = reader.join().unwrap().unwrap();
    assert!(!status.success(), "{err}");
    let _ = std::fs::remove_dir_all(dir);
    (err, elapsed, rank1)
}

#[test]
fn a_dead_rank_is_named_and_the_job_stops() {
    let (err, elapsed, _) = signal_rank_1("dead-rank", "20", libc::SIGKILL);
    assert!(elapsed < Duration::from_secs(45), "the job took {} s to stop", elapsed.as_secs());
    // The launcher names the rank, and rank 0's collective failure says it died.
    assert!(err.contains("rank 1 was killed by signal 9") && err.contains("stopped from outside"), "{err}");
    assert!(err.contains("rank 1 died"), "{err}");
}

/// A rank that stops answering (SIGSTOP: no heartbeat, no collective) makes the others' collective
/// time out after `--dist-timeout`; they name it and the launcher ends it.
#[test]
fn a_stalled_rank_times_out_and_is_named() {
    let (err, elapsed, rank1) = signal_rank_1("stalled-rank", "8", libc::SIGSTOP);
    // The collective's timeout, then the launcher's grace of 10 s for the stalled rank.
    assert!(elapsed > Duration::from_secs(8) && elapsed < Duration::from_secs(45), "stopped after {elapsed:?}: {err}");
    assert!(err.contains("rank 0 exited with status 1") && err.contains("rank 1 died (no heartbeat"), "{err}");
    assert!(!running(rank1), "the launcher left the stalled rank behind");
}

/// The pid of `rank` among the launcher's children.
fn rank_pid(launcher: u32, rank: usize) -> u32 {
    let var = format!("RANK={rank}");
    children(launcher)
        .into_iter()
        .find(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            environ.split(|&b| b == 0).any(|v| v == var.as_bytes())
        })
        .unwrap_or_else(|| panic!("no rank {rank} among the launcher's children"))
}

/// One rank of a job started by hand (as srun or a script would), with torchrun's variables.
fn rank(dir: &Path, rank: usize, size: usize, port: u16, extra: &[&str]) -> Command {
    let mut cmd = train(dir, 3, extra);
    cmd.env("RANK", rank.to_string()).env("WORLD_SIZE", size.to_string()).env("MASTER_PORT", port.to_string());
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn ranks_with_different_settings_are_refused() {
    let dir = tmp("mismatch");
    let port = free_port();
    let piped = |mut cmd: Command| cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let first = piped(rank(&dir, 0, 2, port, &["--dist-timeout", "10"]));
    let second = piped(rank(&dir, 1, 2, port, &["--dist-timeout", "10", "--adv-weight", "2"]));
    let (first, second) = (first.wait_with_output().unwrap(), second.wait_with_output().unwrap());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!first.status.success(), "rank 0 went on: {}", String::from_utf8_lossy(&first.stderr));
    assert!(!second.status.success() && err.contains("rank 1 disagrees with rank 0 on its settings"), "{err}");
    assert!(err.contains("adv_weight = 2") && err.contains("adv_weight = 1"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn incomplete_environments_and_busy_ports_are_explained() {
    let dir = tmp("env");
    let out = train(&dir, 3, &[]).env("WORLD_SIZE", "2").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("RANK is not set, but WORLD_SIZE is"), "{err}");

    let out = rank(&dir, 2, 2, 29500, &[]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("RANK=2 must be below WORLD_SIZE=2"), "{err}");

    let busy = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let out = rank(&dir, 0, 1, port, &["--dist-timeout", "5"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&format!("port {port}")), "{err}");
    assert!(!dir.join("sample/model").exists(), "a failed rendezvous wrote outputs");
    let _ = std::fs::remove_dir_all(dir);
}

fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| pairs.iter().find(|p| p.0 == name).map(|p| p.1.to_string())
}

#[test]
fn torchrun_variables_are_read_with_defaults_and_checked() {
    assert_eq!(World::from_vars(vars(&[])).unwrap(), None);
    let world =
        World::from_vars(vars(&[("RANK", "3"), ("WORLD_SIZE", "4"), ("MASTER_PORT", "29500")])).unwrap().unwrap();
    assert_eq!((world.rank, world.size, world.local_rank, world.local_size), (3, 4, 3, 4));
    assert_eq!((world.master_addr.as_str(), world.master_port, world.agent_store), ("127.0.0.1", 29500, false));
    let torchrun = [
        ("RANK", "5"),
        ("WORLD_SIZE", "16"),
        ("LOCAL_RANK", "5"),
        ("LOCAL_WORLD_SIZE", "8"),
        ("MASTER_ADDR", "node0"),
        ("MASTER_PORT", "1234"),
        ("TORCHELASTIC_USE_AGENT_STORE", "True"),
    ];
    let world = World::from_vars(vars(&torchrun)).unwrap().unwrap();
    assert_eq!((world.local_rank, world.local_size, world.agent_store), (5, 8, true));
    assert_eq!(world.device(tch::Device::Cuda(0)), tch::Device::Cuda(5));
    let error = |pairs: &[(&str, &str)]| World::from_vars(vars(pairs)).unwrap_err().to_string();
    assert!(error(&[("RANK", "0"), ("WORLD_SIZE", "2")]).contains("MASTER_PORT is not set"));
    assert!(
        error(&[("RANK", "x"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "1")]).contains("RANK=\"x\" is not a whole number")
    );
    let local =
        [("RANK", "1"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "2"), ("LOCAL_WORLD_SIZE", "2"), ("MASTER_PORT", "1")];
    assert!(error(&local).contains("LOCAL_RANK=2 must be below LOCAL_WORLD_SIZE=2"));
    assert!(error(&[("RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_PORT", "99999")]).contains("not a port number"));
}

#[test]
fn the_launcher_passes_every_argument_but_its_own() {
    let args = |s: &str| s.split(' ').map(OsString::from).collect::<Vec<_>>();
    assert_eq!(
        rank_arguments(args("train --nproc-per-node 4 --batch-size 2 --nproc-per-node=8 --light")),
        args("train --batch-size 2 --light")
    );
}

/// A world of one over Gloo: averaging is the identity, so every gradient must come back with
/// its values and shape, through buckets split at 25 MiB (one gradient larger than a bucket,
/// several small ones, undefined ones in between).
#[test]
fn bucketed_reduction_returns_every_gradient_in_place() {
    let world = World {
        rank: 0,
        size: 1,
        local_rank: 0,
        local_size: 1,
        master_addr: "127.0.0.1".into(),
        master_port: free_port(),
        agent_store: false,
    };
    let dist = Distributed::join(world, DistBackend::Gloo, tch::Device::Cpu, Duration::from_secs(30)).unwrap();
    tch::manual_seed(3);
    let grads = vec![
        Tensor::randn([3, 4], (tch::Kind::Float, tch::Device::Cpu)),
        Tensor::new(),
        Tensor::randn([7 << 20], (tch::Kind::Float, tch::Device::Cpu)),
        Tensor::randn([2, 3, 5], (tch::Kind::Float, tch::Device::Cpu)),
        Tensor::randn([3 << 20], (tch::Kind::Float, tch::Device::Cpu)),
        Tensor::new(),
        Tensor::randn([1], (tch::Kind::Float, tch::Device::Cpu)),
    ];
    let originals: Vec<Tensor> = grads.iter().map(|g| if g.defined() { g.copy() } else { Tensor::new() }).collect();
    let reduction = dist.start_reduction("the test gradients", grads).unwrap();
    let back = dist.finish(reduction).unwrap();
    assert_eq!(back.len(), originals.len());
    for (i, (b, o)) in back.iter().zip(&originals).enumerate() {
        assert_eq!(b.defined(), o.defined(), "gradient {i}");
        if o.defined() {
            assert_eq!(b.size(), o.size(), "gradient {i}");
            assert!(b.equal(o), "gradient {i} changed on its way");
        }
    }
    // A sum over one rank of 1 is 1: the all-reduce really ran on the group.
    let t = Tensor::from_slice(&[2.0f32]);
    dist.mean_in_place(&t, "the test value").unwrap();
    assert_eq!(t.double_value(&[0]), 2.0);
}

/// Two ranks in two threads of this process: rank 0's variables reach rank 1, the bitwise check
/// after each save passes on equal weights and names a drifted variable (as a spectral norm's
/// `u` would be, if the ranks' power iterations ever differed), and a flag raised on one rank
/// (a stop signal) is seen by both.
#[test]
fn ranks_share_rank_0s_variables_and_notice_drift() {
    let port = free_port();
    let rank = move |rank: usize| {
        std::thread::spawn(move || -> anyhow::Result<(Vec<f64>, bool, Option<String>)> {
            let world = World {
                rank,
                size: 2,
                local_rank: rank,
                local_size: 2,
                master_addr: "127.0.0.1".into(),
                master_port: port,
                agent_store: false,
            };
            let dist = Distributed::join(world, DistBackend::Gloo, tch::Device::Cpu, Duration::from_secs(30))?;
            let vs = tch::nn::VarStore::new(tch::Device::Cpu);
            let conv = vs.root() / "disGA" / "conv";
            let weight = conv.var("weight_orig", &[2, 3], tch::nn::Init::Const(rank as f64 + 1.0));
            let u = conv.var("weight_u", &[4], tch::nn::Init::Const(0.5 * rank as f64));
            dist.broadcast_variables(&vs)?;
            let received = Vec::<f64>::try_from(Tensor::cat(&[weight.reshape([-1]), u.shallow_clone()], 0))?;
            dist.check_identical(&vs, 1)?;
            if rank == 1 {
                let _ = tch::no_grad(|| u.shallow_clone().get(2).fill_(0.25));
            }
            let drift = dist.check_identical(&vs, 2).err().map(|e| e.to_string());
            let stop = dist.any(rank == 1, Duration::from_secs(30), "the stop agreement")?;
            Ok((received, stop, drift))
        })
    };
    let (first, second) = (rank(0), rank(1));
    let (first, second) = (first.join().unwrap().unwrap(), second.join().unwrap().unwrap());
    assert_eq!(first.0, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!(second.0, first.0, "rank 1 did not receive rank 0's variables");
    assert!(first.1 && second.1, "a flag raised on rank 1 was not seen by both");
    assert_eq!(first.2, None, "rank 0 compares with itself");
    let drift = second.2.expect("rank 1's drifted u was not noticed");
    assert!(drift.contains("step 2: rank 1's variables drifted") && drift.contains("disGA.conv.weight_u"), "{drift}");
    assert!(!drift.contains("weight_orig"), "{drift}");
}
