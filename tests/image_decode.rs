//! Decoding by content to RGB8: the fixture images against Pillow's decode, the odd layouts
//! (gray, gray+alpha, RGBA, 16-bit, palette) built here with the `image` crate, and clear errors
//! for files that are not usable images.

mod common;

use common::{fixture, Fixture};
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};
use std::path::PathBuf;
use ugatit::io::image::{decode_rgb8, hwc_u8_to_image, images_to_tensor, list_images, load_rgb8, Affine, RgbImage};

fn png(w: u32, h: u32, color: ExtendedColorType, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out).write_image(data, w, h, color).unwrap();
    out
}

fn err_of(bytes: &[u8]) -> String {
    format!("{:#}", decode_rgb8(bytes).expect_err("decoding should fail"))
}

/// A scratch folder under the target directory, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ugatit-image-decode-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Largest per-sample difference and the fraction of samples that differ.
fn compare(a: &RgbImage, b: &RgbImage) -> (u8, f64) {
    assert_eq!(a.dimensions(), b.dimensions());
    let (mut max, mut n) = (0u8, 0usize);
    for (x, y) in a.as_raw().iter().zip(b.as_raw()) {
        if x != y {
            n += 1;
            max = max.max(x.abs_diff(*y));
        }
    }
    (max, n as f64 / a.as_raw().len() as f64)
}

#[test]
fn fixture_images_decode_like_pillow() {
    // PNG is lossless: exact. JPEG: the `image` crate's decoder (zune-jpeg) is not bit-exact
    // with Pillow's libjpeg-turbo (IDCT, chroma upsampling and colour-conversion rounding
    // differ); over selfie2anime testA it differs by at most 5 levels on about 13% of samples.
    let f = Fixture::load("images/pil_reference.safetensors");
    let names: Vec<String> = serde_json::from_str(&f.meta["images"]).unwrap();
    let formats: std::collections::BTreeMap<String, String> = serde_json::from_str(&f.meta["formats"]).unwrap();
    for name in names {
        let ours = load_rgb8(&fixture(&format!("images/{name}"))).unwrap();
        let pil = hwc_u8_to_image(f.get(&format!("decoded.{name}"))).unwrap();
        let (max, frac) = compare(&ours, &pil);
        match formats[&name].as_str() {
            "PNG" => assert_eq!(max, 0, "{name}: PNG decode must be exact"),
            "JPEG" => assert!(max <= 6 && frac < 0.25, "{name}: max diff {max}, {:.1}% differ", frac * 100.0),
            other => panic!("unexpected fixture format {other}"),
        }
    }
}

#[test]
fn png_named_jpg_decodes_by_content() {
    // selfie2anime's testB files are PNG bytes named .jpg.
    let path = fixture("images/testB_0081.jpg");
    assert_eq!(&std::fs::read(&path).unwrap()[..4], b"\x89PNG");
    assert_eq!(load_rgb8(&path).unwrap().dimensions(), (256, 256));
}

#[test]
fn gray_and_gray_alpha_are_replicated() {
    let gray = png(3, 1, ExtendedColorType::L8, &[0, 100, 255]);
    let img = decode_rgb8(&gray).unwrap();
    assert_eq!(img.as_raw(), &[0, 0, 0, 100, 100, 100, 255, 255, 255]);
    let gray_alpha = png(2, 1, ExtendedColorType::La8, &[10, 0, 200, 77]);
    let img = decode_rgb8(&gray_alpha).unwrap();
    assert_eq!(img.as_raw(), &[10, 10, 10, 200, 200, 200]);
}

#[test]
fn rgba_drops_alpha_without_compositing() {
    // PIL's convert('RGB') ignores alpha: a fully transparent red pixel stays red.
    let rgba = png(2, 1, ExtendedColorType::Rgba8, &[255, 0, 0, 0, 1, 2, 3, 128]);
    assert_eq!(decode_rgb8(&rgba).unwrap().as_raw(), &[255, 0, 0, 1, 2, 3]);
}

#[test]
fn sixteen_bit_keeps_the_high_byte() {
    // The PNG encoder takes native-endian 16-bit samples.
    let ne = |v: &[u16]| v.iter().flat_map(|x| x.to_ne_bytes()).collect::<Vec<u8>>();
    let rgb16 = png(2, 1, ExtendedColorType::Rgb16, &ne(&[0, 255, 256, 1000, 65535, 33000]));
    assert_eq!(decode_rgb8(&rgb16).unwrap().as_raw(), &[0, 0, 1, 3, 255, 128]);
    let rgba16 = png(1, 1, ExtendedColorType::Rgba16, &ne(&[512, 1024, 65535, 0]));
    assert_eq!(decode_rgb8(&rgba16).unwrap().as_raw(), &[2, 4, 255]);
    let gray16 = png(2, 1, ExtendedColorType::L16, &ne(&[40000, 255]));
    assert_eq!(decode_rgb8(&gray16).unwrap().as_raw(), &[156, 156, 156, 0, 0, 0]);
}

#[test]
fn palette_png_is_expanded() {
    // A hand-built 2x1 PNG with a 2-colour palette (colour type 3, bit depth 8).
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
    // Stored (uncompressed) zlib stream of the filtered scanline [filter 0, index 1, index 0].
    fn zlib_stored(data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x78, 0x01, 0x01];
        out.extend_from_slice(&(data.len() as u16).to_le_bytes());
        out.extend_from_slice(&(!(data.len() as u16)).to_le_bytes());
        out.extend_from_slice(data);
        let (mut a, mut b) = (1u32, 0u32);
        for &x in data {
            a = (a + u32::from(x)) % 65521;
            b = (b + a) % 65521;
        }
        out.extend_from_slice(&((b << 16) | a).to_be_bytes());
        out
    }
    let mut file = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&2u32.to_be_bytes());
    ihdr.extend_from_slice(&1u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 3, 0, 0, 0]);
    chunk(&mut file, b"IHDR", &ihdr);
    chunk(&mut file, b"PLTE", &[10, 20, 30, 200, 150, 100]);
    // A tRNS entry makes the decoder produce RGBA; the alpha must still be dropped.
    chunk(&mut file, b"tRNS", &[0]);
    chunk(&mut file, b"IDAT", &zlib_stored(&[0, 1, 0]));
    chunk(&mut file, b"IEND", &[]);
    assert_eq!(decode_rgb8(&file).unwrap().as_raw(), &[200, 150, 100, 10, 20, 30]);
}

#[test]
fn bmp_and_webp_decode() {
    let img = RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 40, y as u8 * 80, 7]));
    for format in [image::ImageFormat::Bmp, image::ImageFormat::WebP] {
        let mut bytes = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(img.clone()).write_to(&mut bytes, format).unwrap();
        // Both encoders are lossless here.
        assert_eq!(decode_rgb8(bytes.get_ref()).unwrap(), img, "{format:?}");
    }
}

#[test]
fn zero_byte_file_is_named_and_explained() {
    let dir = scratch("empty");
    let path = dir.join("empty.png");
    std::fs::write(&path, b"").unwrap();
    let msg = format!("{:#}", load_rgb8(&path).unwrap_err());
    assert!(msg.contains("empty.png") && msg.contains("empty (0 bytes)"), "{msg}");
}

#[test]
fn not_an_image_is_rejected() {
    let msg = err_of(b"hello, this is a text file and not an image");
    assert!(msg.contains("not an image"), "{msg}");
    let dir = scratch("text");
    let path = dir.join("notes.jpg");
    std::fs::write(&path, "just text").unwrap();
    let msg = format!("{:#}", load_rgb8(&path).unwrap_err());
    assert!(msg.contains("notes.jpg") && msg.contains("not an image"), "{msg}");
    // A recognised but unsupported container (GIF) names its format.
    let msg = err_of(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;");
    assert!(msg.contains("unsupported image format"), "{msg}");
}

#[test]
fn truncated_files_are_errors() {
    let png_bytes = std::fs::read(fixture("images/testB_0081.jpg")).unwrap();
    for cut in [20, 100, png_bytes.len() / 2, png_bytes.len() - 13] {
        let msg = err_of(&png_bytes[..cut]);
        assert!(msg.contains("Png"), "cut {cut}: {msg}");
    }
    let jpeg = std::fs::read(fixture("images/testA_female_10328.jpg")).unwrap();
    for cut in [4, 30, 600, jpeg.len() / 2, jpeg.len() - 2] {
        let msg = err_of(&jpeg[..cut]);
        assert!(msg.contains("Jpeg"), "cut {cut}: {msg}");
    }
}

#[test]
fn enormous_dimensions_are_refused_before_decoding() {
    // A valid PNG header announcing 100000 x 100000 pixels and no data.
    let mut file = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let crc = {
        let mut crc = 0xffff_ffffu32;
        for &b in &ihdr {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
        }
        !crc
    };
    file.extend_from_slice(&13u32.to_be_bytes());
    file.extend_from_slice(&ihdr);
    file.extend_from_slice(&crc.to_be_bytes());
    let msg = err_of(&file);
    assert!(msg.contains("exceed the decoder limit"), "{msg}");
}

#[test]
fn list_images_sorts_by_name_and_takes_every_visible_file() {
    let dir = scratch("list");
    for name in ["b.png", "a.JPG", "c.txt", "10.webp", "2.bmp", ".hidden.png"] {
        std::fs::write(dir.join(name), b"x").unwrap();
    }
    std::fs::create_dir(dir.join("d.png")).unwrap();
    let names: Vec<String> =
        list_images(&dir).unwrap().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["10.webp", "2.bmp", "a.JPG", "b.png", "c.txt"]);
    let msg = format!("{:#}", list_images(&dir.join("missing")).unwrap_err());
    assert!(msg.contains("missing"), "{msg}");
}

#[test]
fn tensors_are_nchw_with_the_affine_map() {
    let a = RgbImage::from_fn(2, 1, |x, _| image::Rgb([x as u8, 255, 0]));
    let b = RgbImage::from_pixel(2, 1, image::Rgb([51, 102, 204]));
    let t = images_to_tensor(&[a.clone(), b], Affine::MINUS_ONE_TO_ONE, tch::Device::Cpu).unwrap();
    assert_eq!(t.size(), [2, 3, 1, 2]);
    let v = |i: i64, c: i64, x: i64| t.double_value(&[i, c, 0, x]);
    assert_eq!(v(0, 0, 1), (1.0f64 / 127.5 - 1.0) as f32 as f64);
    assert_eq!(v(0, 1, 0), 1.0);
    assert_eq!(v(0, 2, 0), -1.0);
    assert_eq!(v(1, 2, 1), (204.0f64 / 127.5 - 1.0) as f32 as f64);
    let t = images_to_tensor(std::slice::from_ref(&a), Affine::TF_INCEPTION_GRAPH, tch::Device::Cpu).unwrap();
    assert_eq!(t.double_value(&[0, 1, 0, 0]), 0.9921875);
    let other = RgbImage::new(3, 1);
    let msg = format!("{:#}", images_to_tensor(&[a, other], Affine::IDENTITY, tch::Device::Cpu).unwrap_err());
    assert!(msg.contains("image 1 is 3x1"), "{msg}");
}
