//! `resize_bilinear_pil` against Pillow's `Image.resize(..., BILINEAR)`, byte for byte
//! (fixtures from tools/oracle/make_metric_fixtures.py, group `images`).

mod common;

use common::{fixture, Fixture};
use ugatit::io::image::{hwc_u8_to_image, load_rgb8, resize_bilinear_pil, RgbImage};

fn reference() -> Fixture {
    Fixture::load("images/pil_reference.safetensors")
}

/// The synthetic pattern of the oracle script: `((37x + 11y + 71c) ^ (xy + c)) & 255`.
fn synthetic(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let (x, y) = (x as i64, y as i64);
        let v = |c: i64| (((x * 37 + y * 11 + c * 71) ^ (x * y + c)) & 255) as u8;
        image::Rgb([v(0), v(1), v(2)])
    })
}

/// Asserts byte equality, reporting the number of differing samples and the first one.
fn assert_same(name: &str, ours: &RgbImage, pil: &RgbImage) {
    assert_eq!(ours.dimensions(), pil.dimensions(), "{name}: size");
    let diffs: Vec<usize> =
        ours.as_raw().iter().zip(pil.as_raw()).enumerate().filter(|(_, (a, b))| a != b).map(|(i, _)| i).collect();
    if let Some(&first) = diffs.first() {
        let w = ours.width() as usize;
        panic!(
            "{name}: {} of {} samples differ from Pillow; first at (x {}, y {}, c {}): ours {} vs {}",
            diffs.len(),
            ours.as_raw().len(),
            first / 3 % w,
            first / 3 / w,
            first % 3,
            ours.as_raw()[first],
            pil.as_raw()[first]
        );
    }
}

/// `(name, (input width, height), (output width, height))`.
type SyntheticCase = (String, (u32, u32), (u32, u32));

fn image_names(f: &Fixture) -> Vec<String> {
    serde_json::from_str(&f.meta["images"]).unwrap()
}

#[test]
fn synthetic_patterns_match_pillow() {
    let f = reference();
    let cases: Vec<SyntheticCase> = serde_json::from_str(&f.meta["synthetic_cases"]).unwrap();
    assert!(cases.len() >= 5);
    for (name, (iw, ih), (ow, oh)) in cases {
        let pil = hwc_u8_to_image(f.get(&format!("synthetic.{name}"))).unwrap();
        let ours = resize_bilinear_pil(&synthetic(iw, ih), ow, oh);
        assert_same(&name, &ours, &pil);
    }
}

#[test]
fn dataset_images_to_299_and_286_match_pillow() {
    let f = reference();
    let mut checked = 0;
    for name in image_names(&f) {
        // Start from Pillow's own decode so that only the resize is under test here.
        let src = hwc_u8_to_image(f.get(&format!("decoded.{name}"))).unwrap();
        for size in [299, 286] {
            let key = format!("resize{size}.{name}");
            if let Some(t) = f.tensors.get(&key) {
                let pil = hwc_u8_to_image(t).unwrap();
                assert_same(&key, &resize_bilinear_pil(&src, size, size), &pil);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 6);
}

#[test]
fn decode_then_resize_matches_pillow_end_to_end() {
    // Our decoder followed by our resize, against Pillow's decode and resize: what the
    // evaluation feeds the network. Exact for the PNG files; for JPEG the decoders differ
    // slightly (see image_decode.rs), and the resize must not amplify that.
    let f = reference();
    let formats: std::collections::BTreeMap<String, String> = serde_json::from_str(&f.meta["formats"]).unwrap();
    for name in image_names(&f) {
        let img = load_rgb8(&fixture(&format!("images/{name}"))).unwrap();
        let pil = hwc_u8_to_image(f.get(&format!("resize299.{name}"))).unwrap();
        let ours = resize_bilinear_pil(&img, 299, 299);
        if formats[&name] == "PNG" {
            assert_same(&name, &ours, &pil);
        } else {
            let max = ours.as_raw().iter().zip(pil.as_raw()).map(|(a, b)| a.abs_diff(*b)).max();
            assert!(max <= Some(6), "{name}: max diff {max:?}");
        }
    }
}

#[test]
fn same_size_is_a_copy_and_zero_size_is_empty() {
    let img = synthetic(13, 7);
    assert_eq!(resize_bilinear_pil(&img, 13, 7), img);
    assert_eq!(resize_bilinear_pil(&img, 0, 5).dimensions(), (0, 5));
}

#[test]
fn constant_image_stays_constant() {
    // Normalised fixed-point weights must sum to one: no drift on flat areas, either way.
    let img = RgbImage::from_pixel(50, 31, image::Rgb([0, 128, 255]));
    for (w, h) in [(299, 299), (7, 3), (50, 100), (17, 31)] {
        let out = resize_bilinear_pil(&img, w, h);
        assert!(out.pixels().all(|p| p.0 == [0, 128, 255]), "{w}x{h}");
    }
}
