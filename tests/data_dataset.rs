//! `Dataset::scan`: layout checks, decoding by content, and the bad-file report.

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};
use std::path::{Path, PathBuf};
use ugatit::data::dataset::{Dataset, SPLITS};
use ugatit::io::image::list_images as candidate_files;

/// A fresh, empty folder under cargo's per-test temporary directory.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("data_dataset_{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn pixels(n: usize, salt: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(37).wrapping_add(salt)).collect()
}

fn png(w: u32, h: u32, color: ExtendedColorType, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out).write_image(data, w, h, color).unwrap();
    out
}

fn rgb_png(w: u32, h: u32, salt: u8) -> Vec<u8> {
    png(w, h, ExtendedColorType::Rgb8, &pixels((w * h * 3) as usize, salt))
}

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(&pixels((w * h * 3) as usize, 9), w, h, ExtendedColorType::Rgb8)
        .unwrap();
    out
}

/// A 3×2 palette PNG (colour type 3) assembled by hand: the `image` crate cannot encode one.
fn palette_png() -> Vec<u8> {
    fn crc(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 == 1 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
            }
        }
        !c
    }
    fn push_chunk(png: &mut Vec<u8>, tag: &[u8], body: &[u8]) {
        png.extend((body.len() as u32).to_be_bytes());
        let start = png.len();
        png.extend(tag);
        png.extend(body);
        let sum = crc(&png[start..]);
        png.extend(sum.to_be_bytes());
    }
    // Scanlines: filter byte 0, then palette indices.
    let raw = [0u8, 0, 1, 2, 0, 2, 1, 0];
    // zlib: header, one final stored deflate block, Adler-32.
    let mut z = vec![0x78, 0x01, 0x01];
    z.extend((raw.len() as u16).to_le_bytes());
    z.extend((!(raw.len() as u16)).to_le_bytes());
    z.extend(raw);
    let (a, b) =
        raw.iter().fold((1u32, 0u32), |(a, b), &v| ((a + u32::from(v)) % 65521, (b + a + u32::from(v)) % 65521));
    z.extend(((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(3u32.to_be_bytes());
    ihdr.extend(2u32.to_be_bytes());
    ihdr.extend([8, 3, 0, 0, 0]);
    push_chunk(&mut out, b"IHDR", &ihdr);
    push_chunk(&mut out, b"PLTE", &[255, 0, 0, 0, 255, 0, 0, 0, 255]);
    push_chunk(&mut out, b"IDAT", &z);
    push_chunk(&mut out, b"IEND", &[]);
    out
}

/// Writes `root/{trainA,trainB,testA,testB}`; trainA holds every kind of file.
fn build_dataset(root: &Path) -> (Vec<&'static str>, Vec<&'static str>) {
    for split in SPLITS {
        std::fs::create_dir_all(root.join(split)).unwrap();
    }
    let a = root.join("trainA");
    let good_png = rgb_png(20, 12, 1);
    let sixteen: Vec<u8> = pixels(10 * 8 * 6, 3);
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("a_rgb.png", good_png.clone()),
        ("b_gray.png", png(9, 7, ExtendedColorType::L8, &pixels(63, 2))),
        ("c_rgba.png", png(8, 8, ExtendedColorType::Rgba8, &pixels(256, 4))),
        ("d_16bit.png", png(10, 8, ExtendedColorType::Rgb16, &sixteen)),
        ("e_palette.png", palette_png()),
        ("f_png_named.jpg", rgb_png(16, 16, 5)),
        ("g_photo.jpg", jpeg(24, 16)),
        ("h_truncated.png", good_png[..good_png.len() / 2].to_vec()),
        ("i_zero.jpg", Vec::new()),
        ("j_notes.txt", b"this is not an image\n".to_vec()),
        ("k_no_extension", rgb_png(6, 6, 6)),
        // Hidden files (e.g. macOS metadata) are not candidates at all.
        (".DS_Store", b"\0\0\0\x01Bud1".to_vec()),
    ];
    for (name, bytes) in &files {
        std::fs::write(a.join(name), bytes).unwrap();
    }
    // Sub-folders are not descended into.
    std::fs::create_dir_all(a.join("nested")).unwrap();
    std::fs::write(a.join("nested/broken.png"), b"junk").unwrap();
    std::fs::write(root.join("trainB/x.png"), rgb_png(12, 12, 7)).unwrap();
    std::fs::write(root.join("trainB/y.jpg"), jpeg(8, 8)).unwrap();
    std::fs::write(root.join("testA/t.png"), rgb_png(12, 12, 8)).unwrap();
    std::fs::write(root.join("testB/u.png"), rgb_png(12, 12, 9)).unwrap();
    let good = vec![
        "a_rgb.png",
        "b_gray.png",
        "c_rgba.png",
        "d_16bit.png",
        "e_palette.png",
        "f_png_named.jpg",
        "g_photo.jpg",
        "k_no_extension",
    ];
    let bad = vec!["h_truncated.png", "i_zero.jpg", "j_notes.txt"];
    (good, bad)
}

fn names(paths: &[PathBuf]) -> Vec<String> {
    paths.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
}

#[test]
fn bad_files_fail_the_scan_with_every_path_and_reason() {
    let root = scratch("strict");
    let (good, bad) = build_dataset(&root);
    let err = format!("{:#}", Dataset::scan(&root, false).unwrap_err());
    assert!(err.contains("3 file(s)"), "{err}");
    for name in &bad {
        let path = root.join("trainA").join(name);
        assert!(err.contains(&format!("{}: ", path.display())), "{name} missing from:\n{err}");
    }
    for name in &good {
        assert!(!err.contains(name), "good file {name} reported:\n{err}");
    }
    assert!(!err.contains("broken.png") && !err.contains("DS_Store"), "{err}");
    // Each line carries the reason.
    let line = |name: &str| err.lines().find(|l| l.contains(name)).unwrap().to_lowercase();
    assert!(line("i_zero.jpg").contains("empty"), "{err}");
    assert!(line("j_notes.txt").contains("not an image"), "{err}");
    assert!(line("h_truncated.png").contains("truncated"), "{err}");
}

#[test]
fn skip_bad_keeps_the_good_files_sorted_and_reports_the_rest() {
    let root = scratch("skip");
    let (good, bad) = build_dataset(&root);
    for threads in [1, 2, 5] {
        let report = Dataset::scan_with_threads(&root, true, threads).unwrap();
        assert_eq!(names(&report.dataset.train_a), good);
        assert_eq!(names(&report.dataset.train_b), ["x.png", "y.jpg"]);
        assert_eq!(names(&report.dataset.test_a), ["t.png"]);
        assert_eq!(names(&report.dataset.test_b), ["u.png"]);
        let skipped: Vec<String> =
            report.skipped.iter().map(|b| b.path.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(skipped, bad);
        for b in &report.skipped {
            assert!(!b.reason.is_empty());
            assert_eq!(b.to_string(), format!("{}: {}", b.path.display(), b.reason));
        }
    }
    // Every kept file decodes through the shared loader.
    let report = Dataset::scan(&root, true).unwrap();
    for p in &report.dataset.train_a {
        ugatit::io::image::load_rgb8(p).unwrap();
    }
}

#[test]
fn clean_dataset_scans_without_skipping() {
    let root = scratch("clean");
    build_dataset(&root);
    for name in ["h_truncated.png", "i_zero.jpg", "j_notes.txt"] {
        std::fs::remove_file(root.join("trainA").join(name)).unwrap();
    }
    let report = Dataset::scan(&root, false).unwrap();
    assert!(report.skipped.is_empty());
    assert_eq!(report.dataset.train_a.len(), 8);
    assert_eq!(report.dataset.split("trainB").unwrap().len(), 2);
    assert!(report.dataset.split("nope").is_none());
}

#[test]
fn missing_root_and_folders_are_named() {
    let root = scratch("missing");
    let absent = root.join("no_such_dataset");
    let err = format!("{:#}", Dataset::scan(&absent, true).unwrap_err());
    assert!(err.contains(&absent.display().to_string()) && err.contains("does not exist"), "{err}");

    std::fs::create_dir_all(root.join("trainA")).unwrap();
    std::fs::create_dir_all(root.join("trainB")).unwrap();
    let err = format!("{:#}", Dataset::scan(&root, true).unwrap_err());
    for split in ["testA", "testB"] {
        assert!(err.contains(&root.join(split).display().to_string()), "{split} not named: {err}");
    }
    assert!(!err.contains(&root.join("trainA").display().to_string()), "{err}");

    let file_root = root.join("a_file");
    std::fs::write(&file_root, b"x").unwrap();
    let err = format!("{:#}", Dataset::scan(&file_root, true).unwrap_err());
    assert!(err.contains("not a folder"), "{err}");
}

#[test]
fn empty_folders_are_named_even_after_skipping() {
    let root = scratch("empty");
    for split in SPLITS {
        std::fs::create_dir_all(root.join(split)).unwrap();
    }
    std::fs::write(root.join("trainA/a.png"), rgb_png(8, 8, 1)).unwrap();
    std::fs::write(root.join("trainB/b.png"), rgb_png(8, 8, 2)).unwrap();
    std::fs::write(root.join("testA/c.png"), rgb_png(8, 8, 3)).unwrap();
    // testB has only a hidden file and a bad one.
    std::fs::write(root.join("testB/.hidden.png"), rgb_png(8, 8, 4)).unwrap();
    let err = format!("{:#}", Dataset::scan(&root, true).unwrap_err());
    assert!(err.contains(&root.join("testB").display().to_string()), "{err}");
    assert!(!err.contains(&root.join("testA").display().to_string()), "{err}");

    std::fs::write(root.join("testB/broken.jpg"), b"nope").unwrap();
    let err = format!("{:#}", Dataset::scan(&root, true).unwrap_err());
    assert!(err.contains(&root.join("testB").display().to_string()) && err.contains("bad"), "{err}");
    // Without skipping, the bad file itself is the error.
    let err = format!("{:#}", Dataset::scan(&root, false).unwrap_err());
    assert!(err.contains("broken.jpg"), "{err}");

    std::fs::write(root.join("testB/good.png"), rgb_png(8, 8, 5)).unwrap();
    let report = Dataset::scan(&root, true).unwrap();
    assert_eq!(names(&report.dataset.test_b), ["good.png"]);
    assert_eq!(report.skipped.len(), 1);
}

#[test]
fn candidates_are_sorted_by_name_and_skip_hidden_files_and_folders() {
    let dir = scratch("candidates");
    for name in ["b.png", "a.JPG", "C.bmp", ".hidden", "z"] {
        std::fs::write(dir.join(name), b"").unwrap();
    }
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    assert_eq!(names(&candidate_files(&dir).unwrap()), ["C.bmp", "a.JPG", "b.png", "z"]);
}

#[test]
fn real_selfie2anime_scan_if_present() {
    // The shared 1k-image dataset is only on development machines.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/selfie2anime-1k");
    if !root.is_dir() {
        eprintln!("SKIPPED: {} not found", root.display());
        return;
    }
    let report = Dataset::scan(&root, false).unwrap();
    for split in SPLITS {
        assert!(!report.dataset.split(split).unwrap().is_empty(), "{split}");
    }
}
