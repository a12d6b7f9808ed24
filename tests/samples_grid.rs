//! Sample grids: layout, value maps, heatmap colouring against OpenCV, atomic PNG writing.

use image::{Rgb, RgbImage};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};
use ugatit::pictures::grid::{heatmap_tile, image_tile, jet, render_grid, save_png, SampleColumn, ROWS};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data").join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("samples_grid_{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn filled(value: f64, size: i64) -> Tensor {
    Tensor::full([3, size, size], value, (Kind::Float, tch::Device::Cpu))
}

/// A column whose images are constant `v` (per row) and whose heatmaps are ramps.
fn column(values: [f64; 4], size: i64, heat: i64) -> SampleColumn {
    let ramp = || Tensor::arange(heat * heat, (Kind::Float, tch::Device::Cpu)).view([1, heat, heat]);
    SampleColumn {
        real: filled(values[0], size),
        heat_identity: ramp(),
        identity: filled(values[1], size),
        heat_translated: ramp() * -3.0,
        translated: filled(values[2], size),
        heat_cycle: Tensor::zeros([1, heat, heat], (Kind::Float, tch::Device::Cpu)),
        cycle: filled(values[3], size),
    }
}

fn tile_of(grid: &RgbImage, row: u32, col: u32, tile: u32) -> RgbImage {
    image::imageops::crop_imm(grid, col * tile, row * tile, tile, tile).to_image()
}

#[test]
fn grid_has_seven_rows_of_tiles_in_the_reference_order() {
    let tile = 32;
    let columns =
        vec![column([-1.0, 0.0, 1.0, 0.5], 32, 8), column([1.0, -1.0, 0.0, -0.5], 32, 8), column([0.0; 4], 32, 8)];
    let grid = render_grid(&columns, tile).unwrap();
    assert_eq!(grid.dimensions(), (3 * tile, ROWS * tile));
    let uniform = |img: &RgbImage| img.pixels().all(|p| p == img.get_pixel(0, 0));
    let expect_image_row = |row: u32, col: u32, v: u8| {
        let t = tile_of(&grid, row, col, tile);
        assert!(uniform(&t) && t.get_pixel(0, 0) == &Rgb([v; 3]), "row {row} col {col}: {:?}", t.get_pixel(0, 0));
    };
    // x·0.5+0.5 → ×255, rounded: −1 → 0, 0 → 127.5 → 128 (half to even), 1 → 255, ±0.5 → 191.25/63.75.
    expect_image_row(0, 0, 0);
    expect_image_row(2, 0, 128);
    expect_image_row(4, 0, 255);
    expect_image_row(6, 0, 191);
    expect_image_row(0, 1, 255);
    expect_image_row(2, 1, 0);
    expect_image_row(6, 1, 64);
    // Heatmap rows: a ramp spans the whole colour map, a zero map is uniformly jet(0).
    for col in 0..3 {
        for row in [1, 3] {
            assert!(!uniform(&tile_of(&grid, row, col, tile)), "row {row} col {col} should be a ramp");
        }
        let cycle_heat = tile_of(&grid, 5, col, tile);
        assert!(cycle_heat.pixels().all(|p| p.0 == jet(0)));
    }
    // The identity ramp increases to the bottom right; the translation ramp is its negation.
    let id = tile_of(&grid, 1, 0, tile);
    let tr = tile_of(&grid, 3, 0, tile);
    assert_eq!(id.get_pixel(0, 0).0, jet(0));
    assert_eq!(id.get_pixel(tile - 1, tile - 1).0, jet(255));
    assert_eq!(tr.get_pixel(0, 0).0, jet(255));
    assert_eq!(tr.get_pixel(tile - 1, tile - 1).0, jet(0));
}

#[test]
fn constant_and_non_finite_heatmaps_give_valid_tiles() {
    for value in [0.0f64, 7.5, -1e30] {
        let t = Tensor::full([1, 4, 4], value, (Kind::Float, tch::Device::Cpu));
        let img = heatmap_tile(&t, 16).unwrap();
        assert!(img.pixels().all(|p| p.0 == [0, 0, 128]), "constant {value}");
    }
    let t = Tensor::from_slice(&[f32::NAN, 1.0, f32::INFINITY, 3.0]).view([1, 2, 2]);
    let img = heatmap_tile(&t, 2).unwrap();
    assert_eq!(img.get_pixel(1, 1).0, jet(255));
    assert_eq!(img.get_pixel(1, 0).0, jet(0));
    assert_eq!(img.get_pixel(0, 0).0, jet(0));
    let all_nan = Tensor::full([1, 3, 3], f64::NAN, (Kind::Float, tch::Device::Cpu));
    assert!(heatmap_tile(&all_nan, 8).unwrap().pixels().all(|p| p.0 == jet(0)));
    // NaN in an image tile becomes black, out-of-range values saturate.
    let img = Tensor::from_slice(&[f32::NAN, 5.0, -5.0]).view([3, 1, 1]);
    assert_eq!(image_tile(&img, 1).unwrap().get_pixel(0, 0).0, [0, 255, 0]);
}

#[test]
fn jet_matches_opencv_entry_for_entry() {
    assert_eq!(jet(0), [0, 0, 128], "0 is dark blue");
    assert_eq!(jet(255), [128, 0, 0], "255 is dark red");
    let text = std::fs::read_to_string(fixture("opencv_jet_rgb.txt")).unwrap();
    let table: Vec<[u8; 3]> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let v: Vec<u8> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
            [v[0], v[1], v[2]]
        })
        .collect();
    assert_eq!(table.len(), 256);
    for (i, expected) in table.iter().enumerate() {
        assert_eq!(&jet(i as u8), expected, "entry {i}");
    }
}

#[test]
fn heatmap_tile_follows_the_reference_cam_within_one_level() {
    // The reference's cam(x, 64) computed by numpy + OpenCV (see tests/fixtures/data/README.md).
    let raw = std::fs::read(fixture("heatmap_16x16.f32")).unwrap();
    let values: Vec<f32> = raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let expected = std::fs::read(fixture("heatmap_16x16_cv2_jet_64.rgb")).unwrap();
    // A leading batch dimension and a double tensor are accepted too.
    for t in [
        Tensor::from_slice(&values).view([1, 16, 16]),
        Tensor::from_slice(&values).view([1, 1, 16, 16]).to_kind(Kind::Double),
    ] {
        let got = heatmap_tile(&t, 64).unwrap();
        let mut differing = 0;
        for (g, e) in got.as_raw().chunks(3).zip(expected.chunks(3)) {
            let d = g.iter().zip(e).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
            // One level of the 8-bit map moves a JET channel by at most 5.
            assert!(d <= 5, "{g:?} vs {e:?}");
            differing += usize::from(d > 0);
        }
        assert!(differing * 100 <= 64 * 64 * 3, "{differing} of 4096 pixels differ from OpenCV");
    }
}

#[test]
fn image_tiles_are_resized_when_their_size_differs() {
    let t = Tensor::rand([3, 20, 30], (Kind::Float, tch::Device::Cpu)) * 2.0 - 1.0;
    let small = image_tile(&t, 20).unwrap();
    assert_eq!(small.dimensions(), (20, 20));
    let native = image_tile(&t.unsqueeze(0), 1).unwrap();
    assert_eq!(native.dimensions(), (1, 1));
    let heat = heatmap_tile(&Tensor::rand([5, 7], (Kind::Float, tch::Device::Cpu)), 33).unwrap();
    assert_eq!(heat.dimensions(), (33, 33));
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let ok = || column([0.0; 4], 8, 4);
    assert!(render_grid(&[], 8).is_err());
    assert!(render_grid(&[ok()], 0).is_err());
    let mut c = ok();
    c.translated = Tensor::zeros([4, 8, 8], (Kind::Float, tch::Device::Cpu));
    let err = format!("{:#}", render_grid(&[ok(), c], 8).unwrap_err());
    assert!(err.contains("column 1") && err.contains("translation"), "{err}");
    let mut c = ok();
    c.heat_cycle = Tensor::zeros([2, 4, 4], (Kind::Float, tch::Device::Cpu));
    assert!(render_grid(&[c], 8).is_err());
    let mut c = ok();
    c.real = Tensor::zeros([3, 0, 8], (Kind::Float, tch::Device::Cpu));
    assert!(render_grid(&[c], 8).is_err());
    let mut c = ok();
    c.real = Tensor::zeros([3, 8, 8], (Kind::Int64, tch::Device::Cpu));
    assert!(render_grid(&[c], 8).is_err());
}

#[test]
fn save_png_round_trips_and_leaves_no_temporary_files() {
    let dir = scratch("save");
    let grid = render_grid(&[column([0.25, -0.25, 0.75, -0.75], 16, 4)], 16).unwrap();
    let path = dir.join("nested/A2B_0000001.png");
    save_png(&grid, &path).unwrap();
    save_png(&grid, &path).unwrap(); // overwriting is fine
    let back = image::open(&path).unwrap().to_rgb8();
    assert_eq!(back, grid);
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["A2B_0000001.png"]);
    // A path whose folder cannot be created is an error naming it.
    let blocker = dir.join("file");
    std::fs::write(&blocker, b"x").unwrap();
    assert!(save_png(&grid, &blocker.join("x.png")).is_err());
}

#[test]
fn reference_size_grid_of_ten_columns() {
    // The reference's layout: 10 columns of 256-pixel tiles, 64×64 heatmaps.
    let columns: Vec<SampleColumn> = (0..10)
        .map(|i| {
            let img = || Tensor::rand([3, 256, 256], (Kind::Float, tch::Device::Cpu)) * 2.0 - 1.0;
            let heat = || Tensor::randn([1, 64, 64], (Kind::Float, tch::Device::Cpu)) * (i as f64 + 1.0);
            SampleColumn {
                real: img(),
                heat_identity: heat(),
                identity: img(),
                heat_translated: heat(),
                translated: img(),
                heat_cycle: heat(),
                cycle: img(),
            }
        })
        .collect();
    let grid = render_grid(&columns, 256).unwrap();
    assert_eq!(grid.dimensions(), (2560, 1792));
}
