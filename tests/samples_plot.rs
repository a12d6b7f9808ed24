//! The loss-curve chart.

use image::Rgb;
use std::path::Path;
use ugatit::pictures::plot::{plot_losses, render_losses, HEIGHT, WIDTH};

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("samples_plot_{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

type Series<'a> = Vec<(&'a str, Vec<(f64, f64)>)>;

fn curve(n: usize, mut f: impl FnMut(f64) -> f64) -> Vec<(f64, f64)> {
    (1..=n).map(|s| (s as f64, f(s as f64))).collect()
}

#[test]
fn writes_a_png_of_the_right_size_with_drawn_pixels() {
    let dir = scratch("basic");
    let series = vec![
        ("d_loss", curve(500, |s| 0.5 + 0.2 * (s / 20.0).sin())),
        ("g_loss", curve(500, |s| 3.0 + (s / 50.0).cos())),
        ("G_recon_A", curve(500, |s| 1.0 / (1.0 + s / 100.0))),
    ];
    let path = dir.join("losses.png");
    plot_losses(&series, &path).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
    let white = Rgb([255, 255, 255]);
    let drawn = img.pixels().filter(|p| **p != white).count();
    assert!(drawn > 5_000, "only {drawn} non-background pixels");
    assert_eq!(*img.get_pixel(WIDTH - 1, HEIGHT - 1), white, "background is white");
    // Each series' colour (tab10 blue, orange, green) appears.
    for colour in [[31, 119, 180], [255, 127, 14], [44, 160, 44]] {
        let n = img.pixels().filter(|p| p.0 == colour).count();
        assert!(n > 100, "colour {colour:?} drawn {n} times");
    }
    // Text (black) is drawn: ticks, labels, legend.
    assert!(img.pixels().filter(|p| p.0 == [0, 0, 0]).count() > 2_000);
}

#[test]
fn dense_series_draw_a_range_band_under_a_mean_line() {
    // 100k noisy points over ~900 pixel columns.
    let mut state = 1u64;
    let noisy = curve(100_000, |s| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        1.0 + s * 1e-5 + ((state >> 40) as f64 / (1u64 << 24) as f64 - 0.5)
    });
    let img = render_losses(&[("noisy", noisy)], WIDTH, HEIGHT).unwrap();
    let blue = [31u8, 119, 180];
    let band = blue.map(|c| (0.3 * f64::from(c) + 0.7 * 255.0).round() as u8);
    let count = |c: [u8; 3]| img.pixels().filter(|p| p.0 == c).count();
    assert!(count(band) > 20_000, "band pixels: {}", count(band));
    assert!(count(blue) > 800, "mean line pixels: {}", count(blue));
}

#[test]
fn log_scale_degenerate_and_hostile_inputs_render() {
    // Spanning six decades switches to a log axis.
    let wide = vec![("cam", curve(300, |s| 10f64.powf(-s / 50.0)))];
    let img = render_losses(&wide, WIDTH, HEIGHT).unwrap();
    assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
    // Nothing to plot, a single point, constant values, NaN and infinities, zeros on a would-be
    // log axis, huge and tiny magnitudes, and many series.
    let nan_mix = vec![(1.0, f64::NAN), (2.0, 1.0), (3.0, f64::INFINITY), (4.0, 2.0), (f64::NAN, 3.0)];
    let many: Vec<(String, Vec<(f64, f64)>)> =
        (0..14).map(|k| (format!("series_{k}"), curve(50, |s| s * k as f64))).collect();
    let many_ref: Series = many.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
    let cases: Vec<Series> = vec![
        vec![],
        vec![("empty", vec![])],
        vec![("one", vec![(5.0, 1.5)])],
        vec![("flat", curve(10, |_| 2.0))],
        vec![("zero", curve(10, |_| 0.0))],
        vec![("nan", nan_mix)],
        vec![("with zero", vec![(1.0, 0.0), (2.0, 1e-6), (3.0, 1e3)])],
        vec![("huge", curve(10, |s| s * 1e12)), ("tiny", curve(10, |s| s * 1e-9))],
        vec![("negative", curve(100, |s| -s))],
        vec![("steps", (0..1_000_000).step_by(997).map(|s| (s as f64, (s % 7) as f64)).collect())],
        vec![("extremes", vec![(-1e308, -1e308), (1e308, 1e308)])],
        vec![("close", vec![(1.0, 1e300), (2.0, 1e300 * (1.0 + 4.0 * f64::EPSILON))])],
        vec![("unicode ✓ λ", curve(5, |s| s))],
        many_ref,
    ];
    for series in &cases {
        let img = render_losses(series, WIDTH, HEIGHT).unwrap();
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
    }
    assert!(render_losses(&wide, 100, 50).is_err());
}
