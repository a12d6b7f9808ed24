//! `ugatit serve` over real HTTP on an ephemeral loopback port: the served pixels equal
//! `ugatit translate`'s, every error code, a decompression bomb refused from its header, a queue
//! that overflows into 503s only, and a graceful stop.

mod common;

use common::{sample, scratch};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A server process, stopped when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(ckpt: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ugatit"))
            .arg("serve")
            .arg("--checkpoint")
            .arg(ckpt)
            .args(["--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Self { url: url.trim_end_matches('/').to_string(), child }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// POSTs `body` to `path`; returns status, content type, body and the Retry-After header.
fn post(url: &str, path: &str, body: &[u8], content_type: &str) -> (u16, String, Vec<u8>, Option<String>) {
    let mut response = agent().post(format!("{url}{path}")).header("Content-Type", content_type).send(body).unwrap();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (kind, retry) = (header("content-type").unwrap_or_default(), header("retry-after"));
    let status = response.status().as_u16();
    let bytes = response.body_mut().with_config().limit(64 << 20).read_to_vec().unwrap();
    (status, kind, bytes, retry)
}

fn error_of(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
    v["error"].as_str().unwrap().to_string()
}

fn pixels(png: &[u8]) -> image::RgbImage {
    image::load_from_memory(png).unwrap().to_rgb8()
}

#[test]
fn served_pictures_equal_translate_output() {
    let dir = scratch("serve-same");
    let ckpt = common::tiny_checkpoint(&dir, 4);
    let input = sample("testA/female_10328.jpg");
    let out = dir.join("out");
    let status = Command::new(env!("CARGO_BIN_EXE_ugatit"))
        .arg("translate")
        .arg("--checkpoint")
        .arg(&ckpt)
        .args(["--img-size", "32", "--with-cam", "--out"])
        .arg(&out)
        .arg(&input)
        .status()
        .unwrap();
    assert!(status.success());
    let kept = dir.join("kept");
    let status = Command::new(env!("CARGO_BIN_EXE_ugatit"))
        .arg("translate")
        .arg("--checkpoint")
        .arg(&ckpt)
        .args(["--img-size", "32", "--keep-size", "--direction", "b2a", "--out"])
        .arg(&kept)
        .arg(&input)
        .status()
        .unwrap();
    assert!(status.success());

    let server = Server::start(&ckpt, &["--img-size", "32"]);
    let photo = std::fs::read(&input).unwrap();
    let (status, kind, png, _) = post(&server.url, "/api/translate?direction=a2b", &photo, "image/jpeg");
    assert_eq!((status, kind.as_str()), (200, "image/png"));
    let expected = image::open(out.join("female_10328.png")).unwrap().to_rgb8();
    assert!(pixels(&png) == expected, "served A→B differs from translate's");
    let (_, _, cam, _) = post(&server.url, "/api/cam?direction=a2b", &photo, "image/jpeg");
    assert!(pixels(&cam) == image::open(out.join("female_10328_cam.png")).unwrap().to_rgb8(), "CAM differs");
    let (_, _, png, _) = post(&server.url, "/api/translate?direction=b2a&keep_size=true", &photo, "image/jpeg");
    assert!(pixels(&png) == image::open(kept.join("female_10328.png")).unwrap().to_rgb8(), "keep_size differs");

    // The same photo as a multipart form field.
    let boundary = "ugatit-test-boundary";
    let mut form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    form.extend(&photo);
    form.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (status, _, png, _) =
        post(&server.url, "/api/translate", &form, &format!("multipart/form-data; boundary={boundary}"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&png));
    assert!(pixels(&png) == expected, "multipart upload differs");

    let mut model = agent().get(format!("{}/api/model", server.url)).call().unwrap();
    let facts: serde_json::Value = serde_json::from_slice(&model.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(facts["architecture"]["img_size"], 32);
    assert_eq!(facts["architecture"]["ch"], 4);
    assert_eq!(facts["format"], "safetensors");
    let page = agent().get(&server.url).call().unwrap().body_mut().read_to_string().unwrap();
    assert!(page.contains("<title>U-GAT-IT</title>") && !page.contains("http://") && !page.contains("https://"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bf16_serving_stays_close_to_fp32_and_fp16_is_refused_on_cpu() {
    let dir = scratch("serve-bf16");
    let ckpt = common::tiny_checkpoint(&dir, 4);
    let photo = std::fs::read(sample("testA/female_10328.jpg")).unwrap();
    let translate = |extra: &[&str]| {
        let server = Server::start(&ckpt, &[&["--img-size", "32"], extra].concat());
        let (status, _, png, _) = post(&server.url, "/api/translate", &photo, "image/jpeg");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&png));
        let mut model = agent().get(format!("{}/api/model", server.url)).call().unwrap();
        let facts: serde_json::Value = serde_json::from_slice(&model.body_mut().read_to_vec().unwrap()).unwrap();
        (pixels(&png), facts["precision"].as_str().unwrap().to_string())
    };
    let (fp32, named) = translate(&[]);
    assert_eq!(named, "fp32");
    let (bf16, named) = translate(&["--precision", "bf16"]);
    assert_eq!(named, "bf16");
    let worst = fp32.as_raw().iter().zip(bf16.as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
    // Measured: up to 3/255 for this tiny random generator; 0 would mean bf16 was not applied.
    assert!((1..=12).contains(&worst), "bf16 pixels differ from fp32 by up to {worst}/255");

    let out = Command::new(env!("CARGO_BIN_EXE_ugatit"))
        .arg("serve")
        .arg("--checkpoint")
        .arg(&ckpt)
        .args(["--port", "0", "--precision", "fp16"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--precision fp16 runs on CUDA only"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A PNG whose header declares `w`×`h` pixels, followed by no real image data.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        png.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend(data);
        png.extend(&body);
        png.extend(crc32fast::hash(&body).to_be_bytes());
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00]);
    chunk(b"IEND", &[]);
    png
}

/// Sends a request line, headers and the start of a body; returns the response as text.
fn raw_request(url: &str, line: &str, headers: &str, body: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    write!(stream, "{line} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n\r\n").unwrap();
    stream.write_all(body).unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn every_error_is_json_with_its_status() {
    let dir = scratch("serve-errors");
    let ckpt = common::tiny_checkpoint(&dir, 4);
    let server = Server::start(&ckpt, &["--max-upload-mb", "1", "--img-size", "32"]);
    let url = &server.url;

    let (status, kind, body, _) = post(url, "/api/translate", b"<!doctype html><p>hi</p>", "text/html");
    assert_eq!((status, kind.as_str()), (415, "application/json"));
    assert!(error_of(&body).contains("looks like HTML or XML text"), "{}", error_of(&body));

    let photo = std::fs::read(sample("testB/0000.jpg")).unwrap();
    let (status, _, body, _) = post(url, "/api/translate?direction=sideways", &photo, "image/png");
    assert_eq!(status, 400);
    assert!(error_of(&body).contains("unknown direction \"sideways\""));
    let (status, _, body, _) = post(url, "/api/translate", &photo[..photo.len() / 2], "image/png");
    assert_eq!(status, 400, "{}", error_of(&body));
    let (status, _, body, _) = post(url, "/api/translate", b"", "image/png");
    assert_eq!(status, 400, "{}", error_of(&body));

    // Refused from the declared length, before the 2 MB body is read (so raw HTTP: a client that
    // insists on sending the whole body first would see the connection close under it).
    let reply =
        raw_request(url, "POST /api/translate", "Content-Type: image/png\r\nContent-Length: 2097152", &[0; 1000]);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("limit of 1 MB"), "{reply}");

    let before = server.rss_kib();
    for _ in 0..5 {
        let (status, _, body, _) = post(url, "/api/cam", &png_header_only(40_000, 40_000), "image/png");
        assert_eq!(status, 422);
        assert!(error_of(&body).contains("40000×40000"), "{}", error_of(&body));
    }
    let grown = server.rss_kib().saturating_sub(before);
    assert!(grown < 50 * 1024, "the server grew by {grown} KiB on header-only bombs");

    let mut health = agent().get(format!("{url}/api/health")).call().unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(health.body_mut().read_to_string().unwrap(), "ok");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_overflowing_queue_answers_503_and_the_server_stays_healthy() {
    let dir = scratch("serve-queue");
    let ckpt = common::tiny_checkpoint(&dir, 4);
    let server = Server::start(&ckpt, &["--queue", "2", "--batch-size", "1", "--img-size", "256"]);
    let photo = std::fs::read(sample("testA/female_10500.jpg")).unwrap();
    let statuses: Vec<(u16, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                scope.spawn(|| {
                    let (status, _, _, retry) = post(&server.url, "/api/translate", &photo, "image/jpeg");
                    (status, retry)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|(s, _)| *s == 200 || *s == 503), "{statuses:?}");
    assert!(statuses.iter().any(|(s, _)| *s == 200), "{statuses:?}");
    assert!(statuses.iter().filter(|(s, _)| *s == 503).all(|(_, r)| r.as_deref() == Some("1")), "{statuses:?}");
    eprintln!(
        "16 parallel clients on a queue of 2: {} answered 503",
        statuses.iter().filter(|(s, _)| *s == 503).count()
    );
    let (status, _, _, _) = post(&server.url, "/api/translate", &photo, "image/jpeg");
    assert_eq!(status, 200, "not healthy after the burst");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let dir = scratch("serve-stop");
    let ckpt = common::tiny_checkpoint(&dir, 4);
    let mut server = Server::start(&ckpt, &["--img-size", "32"]);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}
