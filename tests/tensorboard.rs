//! TensorBoard event files: records and CRCs read back, every loss term and the learning rate
//! of a real (tiny) run as scalars equal to its losses.csv, and the sample grids as images.
//! `tools/oracle/check_tensorboard.py` reads the same files with TensorBoard's own loader.

mod common;

use std::process::Command;
use ugatit::observe::tensorboard::{parse_event, read_records, EventWriter, Value};

#[test]
fn records_read_back_and_corruption_is_caught() {
    let dir = common::scratch("tb-records");
    let mut w = EventWriter::create(&dir).unwrap();
    let png = ugatit::pictures::png_bytes(&image::RgbImage::new(3, 2)).unwrap();
    w.write(7, &[("loss", Value::Scalar(0.25)), ("grid", Value::Image { png: png.clone(), width: 3, height: 2 })])
        .unwrap();
    w.flush().unwrap();
    let bytes = std::fs::read(w.path()).unwrap();
    let records = read_records(&bytes).unwrap();
    assert_eq!(records.len(), 2);
    let first = parse_event(records[0]).unwrap();
    assert_eq!(first.file_version.as_deref(), Some("brain.Event:2"));
    let event = parse_event(records[1]).unwrap();
    assert_eq!(event.step, 7);
    assert_eq!(event.values[0], ("loss".to_string(), Value::Scalar(0.25)));
    assert_eq!(event.values[1], ("grid".to_string(), Value::Image { png, width: 3, height: 2 }));
    let mut bad = bytes.clone();
    let last = bad.len() - 10;
    bad[last] ^= 1;
    assert!(format!("{:#}", read_records(&bad).unwrap_err()).contains("CRC mismatch"));
    assert!(read_records(&bytes[..bytes.len() - 3]).is_err());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_run_logs_every_term_and_its_grids() {
    let dir = common::scratch("tb-run");
    let out = Command::new(env!("CARGO_BIN_EXE_ugatit"))
        .arg("train")
        .arg("--dataset")
        .arg(common::sample(""))
        .arg("--result-dir")
        .arg(&dir)
        .args(["--iteration", "4", "--img-size", "32", "--ch", "4", "--n-res", "1", "--n-dis", "4", "--light"])
        .args(["--print-freq", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tb = dir.join("sample/tb");
    let files: Vec<_> = std::fs::read_dir(&tb).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].file_name().unwrap().to_string_lossy().starts_with("events.out.tfevents."));
    let bytes = std::fs::read(&files[0]).unwrap();
    let events: Vec<_> = read_records(&bytes).unwrap().into_iter().map(|r| parse_event(r).unwrap()).collect();

    let csv = std::fs::read_to_string(dir.join("sample/losses.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    for line in lines {
        let row: Vec<&str> = line.split(',').collect();
        let step: i64 = row[0].parse().unwrap();
        let scalars = events
            .iter()
            .find(|e| e.step == step && e.values.iter().any(|(t, _)| t == "d_loss"))
            .unwrap_or_else(|| panic!("no scalars for step {step}"));
        assert_eq!(scalars.values.len(), header.len() - 1, "lr and every loss term");
        for (name, text) in header.iter().zip(&row).skip(1) {
            let logged = scalars.values.iter().find(|(t, _)| t == name).unwrap_or_else(|| panic!("no {name}"));
            let Value::Scalar(v) = logged.1 else { panic!("{name} is not a scalar") };
            let expected: f64 = text.parse().unwrap();
            assert!(
                (f64::from(v) - expected).abs() <= 1e-6 * expected.abs().max(1.0),
                "{name} at {step}: {v} vs {text}"
            );
        }
    }
    for step in [2, 4] {
        let grids = events.iter().find(|e| e.step == step && e.values.iter().any(|(t, _)| t == "samples/A2B")).unwrap();
        for (tag, value) in &grids.values {
            let Value::Image { png, width, height } = value else { panic!("{tag} is not an image") };
            let decoded = image::load_from_memory(png).unwrap();
            assert_eq!((decoded.width(), decoded.height()), (*width, *height));
            // 5 train columns and the sample's 4 test images, 7 tiles each.
            assert_eq!((*width, *height), (9 * 32, 7 * 32), "{tag}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
