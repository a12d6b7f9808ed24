//! The page of `ugatit serve` in a real browser: Debian's `chromium` driven by `chromedriver`
//! over WebDriver. Opens the page, uploads a photo through the file input, waits for the
//! translation, checks its natural size and the model's facts, and saves a screenshot to
//! `target/serve-page.png`. Skips with a visible message where the browser or the driver is
//! missing (CI installs both).

use fantoccini::{ClientBuilder, Locator};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tch::Device;
use ugatit::io::safetensors::{named_variables, write};
use ugatit::model::generator::Config;
use ugatit::model::ugatit::{Config as ModelConfig, UGATIT};

const BROWSER: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_server(dir: &Path) -> (Killed, String) {
    let nets = UGATIT::new(ModelConfig::new(Config { ngf: 4, n_res: 1, img_size: 64, light: true }), Device::Cpu);
    let ckpt = dir.join("model.safetensors");
    write(&ckpt, &named_variables("", &nets.vs), &BTreeMap::new()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ugatit"))
        .arg("serve")
        .arg("--checkpoint")
        .arg(&ckpt)
        .args(["--port", "0", "--img-size", "64"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").unwrap().to_string();
    (Killed(child), url)
}

fn start_driver() -> (Killed, u16) {
    let port = free_port();
    let child = Command::new(DRIVER).arg(format!("--port={port}")).stdout(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Killed(child), port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_translates_an_upload_in_chromium() {
    if !Path::new(BROWSER).exists() || !Path::new(DRIVER).exists() {
        eprintln!("SKIPPED: {BROWSER} or {DRIVER} missing (apt-get install chromium chromium-driver)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("ugatit-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (_server, url) = start_server(&dir);
    let (_driver, port) = start_driver();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": BROWSER,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,800"],
        }),
    );
    // WebDriver on loopback is plain HTTP: no TLS stack needed.
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session");
    client.goto(&url).await.unwrap();
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sample/testA/female_10328.jpg");
    client.find(Locator::Css("#files")).await.unwrap().send_keys(&photo.to_string_lossy()).await.unwrap();
    client.find(Locator::Css("#go")).await.unwrap().click().await.unwrap();
    client.wait().at_most(Duration::from_secs(60)).for_element(Locator::Css("img.result")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let width = loop {
        let w = client
            .execute("const i = document.querySelector('img.result'); return i.complete ? i.naturalWidth : 0;", vec![])
            .await
            .unwrap();
        if w.as_u64().unwrap_or(0) > 0 {
            break w.as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "the result image never loaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(width, 64, "the result is the model's working size");
    let error = client.find(Locator::Css("#error")).await.unwrap().text().await.unwrap();
    assert!(error.is_empty(), "the page shows an error: {error}");
    let facts = client.find(Locator::Css("#facts")).await.unwrap().text().await.unwrap();
    assert!(facts.contains("light generator") && facts.contains("64 px"), "{facts}");
    // Wait for the CAM too, so the screenshot shows the whole row.
    client
        .wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::Css(".row figure:nth-of-type(3) img"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let png = client.screenshot().await.unwrap();
    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/serve-page.png");
    std::fs::write(&shot, png).unwrap();
    eprintln!("screenshot: {}", shot.display());
    client.close().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
