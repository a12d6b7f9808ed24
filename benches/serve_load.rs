//! Load on `ugatit serve` (a benchmark, not a test): N concurrent clients POST a photo to
//! `/api/translate` for T seconds each on loopback, at 1×, 2×, 4× and 8× the server's capacity (its
//! batch size: the requests one forward pass takes). Prints requests/s, p50/p99 latency, errors
//! by status and the server's peak RSS. The model is untrained (speed does not depend on the
//! weights): light, `UGATIT_LOAD_CH` channels (16), `UGATIT_LOAD_SIZE` px (64). A client that
//! gets 503 waits 100 ms before its next request.
//!
//! `cargo bench --bench serve_load` (`UGATIT_LOAD_SECONDS`, default 10).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tch::Device;
use ugatit::io::safetensors::{named_variables, write};
use ugatit::model::generator::Config;
use ugatit::model::ugatit::{Config as ModelConfig, UGATIT};

const BATCH: usize = 4;
const QUEUE: usize = 16;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(f64::NAN);
    kib / 1024.0
}

fn main() {
    let (ch, size, seconds) =
        (env_or("UGATIT_LOAD_CH", 16), env_or("UGATIT_LOAD_SIZE", 64), env_or("UGATIT_LOAD_SECONDS", 10));
    let dir = std::env::temp_dir().join(format!("ugatit-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let g = Config { ngf: ch as i64, n_res: 4, img_size: size as i64, light: true };
    let nets = UGATIT::new(ModelConfig::new(g), Device::Cpu);
    let ckpt = dir.join("model.safetensors");
    write(&ckpt, &named_variables("", &nets.vs), &BTreeMap::new()).unwrap();
    drop(nets);
    let mut server = Command::new(env!("CARGO_BIN_EXE_ugatit"))
        .arg("serve")
        .arg("--checkpoint")
        .arg(&ckpt)
        .args(["--port", "0", "--img-size", &size.to_string()])
        .args(["--batch-size", &BATCH.to_string(), "--queue", &QUEUE.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = format!("{}api/translate", line.trim().strip_prefix("listening on ").unwrap());
    let photo =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sample/testA/female_10328.jpg")).unwrap();
    println!("light ch {ch} {size} px, batch {BATCH}, queue {QUEUE}, {seconds} s per load");
    println!(
        "{:>8} {:>8} {:>10} {:>10} {:>10} {:>8} {:>8} {:>10}",
        "clients", "load", "req/s", "p50 ms", "p99 ms", "503", "other", "peak MiB"
    );
    for factor in [1, 2, 4, 8] {
        let clients = BATCH * factor;
        let until = Instant::now() + Duration::from_secs(seconds);
        let results: Vec<(u16, Duration)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..clients)
                .map(|_| {
                    scope.spawn(|| {
                        let agent: ureq::Agent =
                            ureq::Agent::config_builder().http_status_as_error(false).build().into();
                        let mut done = Vec::new();
                        while Instant::now() < until {
                            let t = Instant::now();
                            let status = match agent.post(&url).header("Content-Type", "image/jpeg").send(&photo[..]) {
                                Ok(mut r) => {
                                    let _ = r.body_mut().read_to_vec();
                                    r.status().as_u16()
                                }
                                Err(_) => 0,
                            };
                            done.push((status, t.elapsed()));
                            if status == 503 {
                                // A polite client backs off (the server says Retry-After: 1).
                                std::thread::sleep(Duration::from_millis(100));
                            }
                        }
                        done
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let mut ok: Vec<Duration> = results.iter().filter(|(s, _)| *s == 200).map(|(_, d)| *d).collect();
        ok.sort();
        let pct = |p: f64| {
            ok.get(((ok.len() as f64 * p) as usize).min(ok.len().saturating_sub(1)))
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
        };
        let busy = results.iter().filter(|(s, _)| *s == 503).count();
        let other = results.iter().filter(|(s, _)| *s != 200 && *s != 503).count();
        println!(
            "{clients:>8} {:>7}x {:>10.1} {:>10.1} {:>10.1} {busy:>8} {other:>8} {:>10.0}",
            factor,
            ok.len() as f64 / seconds as f64,
            pct(0.5),
            pct(0.99),
            peak_rss_mib(server.id())
        );
    }
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(dir);
}
