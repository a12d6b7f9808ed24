//! The loss-curve chart written next to the sample grids: a PNG line chart drawn directly on
//! an RGB image with an embedded 5×7 bitmap font, so no font files or plotting stack are
//! needed on a training machine.

use super::grid::save_png;
use anyhow::{bail, Result};
use image::{Rgb, RgbImage};
use std::path::Path;

/// Default chart size.
pub const WIDTH: u32 = 1000;
/// Default chart height.
pub const HEIGHT: u32 = 600;

/// Glyph magnification: 5×7 glyphs drawn as 10×14 pixels.
const SCALE: u32 = 2;
/// Horizontal advance per character (glyph plus one column of spacing).
const ADVANCE: u32 = 6 * SCALE;
const GLYPH_H: u32 = 7 * SCALE;
/// Rows a descender (g, p, q, y) is drawn below the baseline.
const DESCENT: u32 = 2;

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const LEGEND_BORDER: Rgb<u8> = Rgb([160, 160, 160]);

/// Matplotlib's "tab10" colours, cycled over the series.
const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// Renders `series` (name, `(step, value)` points) with [`render_losses`] at
/// [`WIDTH`]×[`HEIGHT`] and writes it to `path` as PNG, atomically.
pub fn plot_losses(series: &[(&str, Vec<(f64, f64)>)], path: &Path) -> Result<()> {
    save_png(&render_losses(series, WIDTH, HEIGHT)?, path)
}

/// A line chart of `series` on a white `width × height` image: x = step, y auto-scaled to the
/// finite values (log₁₀ when every value is positive and they span more than two decades),
/// numeric ticks on both axes, grid lines and a legend. Non-finite points (and, on a log axis,
/// non-positive ones) break the line instead of failing. No series or no points give empty axes.
pub fn render_losses(series: &[(&str, Vec<(f64, f64)>)], width: u32, height: u32) -> Result<RgbImage> {
    if width < 300 || height < 200 {
        bail!("a {width}x{height} chart is too small (at least 300x200)");
    }
    let finite = || series.iter().flat_map(|(_, pts)| pts.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut y_lo, mut y_hi) =
        finite().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(_, y)| (lo.min(y), hi.max(y)));
    let log = y_lo > 0.0 && y_hi / y_lo > 100.0;
    if log {
        (y_lo, y_hi) = (y_lo.log10(), y_hi.log10());
    }
    let (x_lo, x_hi) = finite().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(x, _)| (lo.min(x), hi.max(x)));
    let (x_lo, x_hi) = widen(x_lo, x_hi, 0.0);
    let (y_lo, y_hi) = widen(y_lo, y_hi, 0.05);
    let y_ticks = if log { log_ticks(y_lo, y_hi) } else { linear_ticks(y_lo, y_hi, 6) };
    let x_ticks = linear_ticks(x_lo, x_hi, 8);

    // Layout: the left margin fits the widest y label.
    let label_w = y_ticks.iter().map(|(_, s)| text_width(s)).max().unwrap_or(0);
    let left = label_w + 20;
    let (right, top, bottom) = (20, GLYPH_H + 16, 2 * GLYPH_H + 24);
    if left + right + 50 > width || top + bottom + 50 > height {
        bail!("a {width}x{height} chart cannot fit its labels");
    }
    let plot = Rect { x0: left, y0: top, x1: width - right - 1, y1: height - bottom - 1 };
    let to_px = |x: f64, y: f64| -> (f64, f64) {
        let px = f64::from(plot.x0) + (x - x_lo) / (x_hi - x_lo) * f64::from(plot.x1 - plot.x0);
        let py = f64::from(plot.y1) - (y - y_lo) / (y_hi - y_lo) * f64::from(plot.y1 - plot.y0);
        (px, py)
    };

    let mut img = RgbImage::from_pixel(width, height, WHITE);
    for (v, label) in &y_ticks {
        let (_, py) = to_px(x_lo, *v);
        let py = py.round() as u32;
        hline(&mut img, plot.x0, plot.x1, py, GRID);
        hline(&mut img, plot.x0 - 5, plot.x0, py, BLACK);
        let tx = plot.x0 - 8 - text_width(label);
        draw_text(&mut img, tx, py.saturating_sub(GLYPH_H / 2), label, BLACK);
    }
    for (v, label) in &x_ticks {
        let (px, _) = to_px(*v, y_lo);
        let px = px.round() as u32;
        vline(&mut img, px, plot.y0, plot.y1, GRID);
        vline(&mut img, px, plot.y1, plot.y1 + 5, BLACK);
        let tx = px.saturating_sub(text_width(label) / 2).min(width.saturating_sub(text_width(label)));
        draw_text(&mut img, tx, plot.y1 + 9, label, BLACK);
    }
    // Frame.
    hline(&mut img, plot.x0, plot.x1, plot.y0, BLACK);
    hline(&mut img, plot.x0, plot.x1, plot.y1, BLACK);
    vline(&mut img, plot.x0, plot.y0, plot.y1, BLACK);
    vline(&mut img, plot.x1, plot.y0, plot.y1, BLACK);
    let x_title = "step";
    draw_text(&mut img, plot.x0 + (plot.x1 - plot.x0 - text_width(x_title)) / 2, height - GLYPH_H - 6, x_title, BLACK);
    draw_text(&mut img, plot.x0, 6, if log { "loss (log scale)" } else { "loss" }, BLACK);

    // Each series as pixel positions, `None` where a point cannot be drawn (breaks the line).
    let tracks: Vec<Vec<Option<(f64, f64)>>> = series
        .iter()
        .map(|(_, points)| {
            points
                .iter()
                .map(|&(x, y)| {
                    let y = match (log, y > 0.0) {
                        (true, true) => y.log10(),
                        (true, false) => f64::NAN,
                        (false, _) => y,
                    };
                    (x.is_finite() && y.is_finite()).then(|| to_px(x, y))
                })
                .collect()
        })
        .collect();
    // A series with more points than pixel columns would be a solid smear: draw its per-column
    // range as a light band and its per-column mean as the line. All bands go first so that no
    // band hides another series' line.
    let columns = (plot.x1 - plot.x0 + 1) as usize;
    let dense: Vec<Option<Vec<Option<Bucket>>>> =
        tracks.iter().map(|t| (t.iter().flatten().count() > columns).then(|| bucket(t, plot.x0, columns))).collect();
    for (k, buckets) in dense.iter().enumerate() {
        let Some(buckets) = buckets else { continue };
        let tint = tint(PALETTE[k % PALETTE.len()]);
        for (i, b) in buckets.iter().enumerate() {
            if let Some(b) = b {
                let x = f64::from(plot.x0) + i as f64;
                line(&mut img, (x, b.min), (x, b.max), tint, &plot);
            }
        }
    }
    for (k, track) in tracks.iter().enumerate() {
        let colour = Rgb(PALETTE[k % PALETTE.len()]);
        let means: Vec<Option<(f64, f64)>>;
        let path = match &dense[k] {
            Some(buckets) => {
                means = buckets
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b.as_ref().map(|b| (f64::from(plot.x0) + i as f64, b.sum / b.n as f64)))
                    .collect();
                &means
            }
            None => track,
        };
        polyline(&mut img, path, colour, &plot);
    }
    draw_legend(&mut img, series, &plot);
    Ok(img)
}

/// The pixel-space values of one series that fall in one pixel column.
struct Bucket {
    min: f64,
    max: f64,
    sum: f64,
    n: usize,
}

/// Groups a pixel-space track by pixel column (`columns` columns from `x0`).
fn bucket(track: &[Option<(f64, f64)>], x0: u32, columns: usize) -> Vec<Option<Bucket>> {
    let mut buckets: Vec<Option<Bucket>> = (0..columns).map(|_| None).collect();
    for &(x, y) in track.iter().flatten() {
        let i = (x - f64::from(x0)).round().clamp(0.0, (columns - 1) as f64) as usize;
        match &mut buckets[i] {
            Some(b) => {
                b.min = b.min.min(y);
                b.max = b.max.max(y);
                b.sum += y;
                b.n += 1;
            }
            slot @ None => *slot = Some(Bucket { min: y, max: y, sum: y, n: 1 }),
        }
    }
    buckets
}

/// `colour` blended 30 % over white, for range bands.
fn tint(colour: [u8; 3]) -> Rgb<u8> {
    Rgb(colour.map(|c| (0.3 * f64::from(c) + 0.7 * 255.0).round() as u8))
}

/// Connects consecutive points; `None` breaks the line, and an isolated point is one pixel.
fn polyline(img: &mut RgbImage, points: &[Option<(f64, f64)>], colour: Rgb<u8>, clip: &Rect) {
    let mut prev = None;
    for &p in points {
        if let Some(p) = p {
            line(img, prev.unwrap_or(p), p, colour, clip);
        }
        prev = p;
    }
}

/// The plotting area, inclusive pixel bounds.
struct Rect {
    x0: u32,
    y0: u32,
    x1: u32,
    y1: u32,
}

/// A non-empty range around `[lo, hi]` with `pad` of its length added on each side; empty or
/// degenerate input gets a unit range.
fn widen(lo: f64, hi: f64, pad: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    if !(hi - lo).is_finite() {
        // Only near ±f64::MAX: halve both ends so the span is representable.
        return widen(lo * 0.5, hi * 0.5, 0.0);
    }
    if hi - lo <= f64::EPSILON * lo.abs().max(1.0) {
        let half = if lo == 0.0 { 1.0 } else { lo.abs() * 0.5 };
        return (lo - half, hi + half);
    }
    let d = (hi - lo) * pad;
    (lo - d, hi + d)
}

/// Ticks at multiples of a 1/2/5·10ᵏ step inside `[lo, hi]`, about `target` of them, with labels
/// of just enough decimals (scientific notation for very large or very small numbers).
fn linear_ticks(lo: f64, hi: f64, target: u32) -> Vec<(f64, String)> {
    let raw = (hi - lo) / f64::from(target);
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    if !step.is_finite() || step <= 0.0 || last.saturating_sub(first) > 100 {
        // Only at the limits of f64 precision; an axis without ticks beats a hang.
        return Vec::new();
    }
    let biggest = lo.abs().max(hi.abs());
    let sci = biggest >= 1e7 || step < 1e-3;
    let step_exp = step.log10().floor() as i32;
    (first..=last)
        .map(|k| {
            let v = k as f64 * step;
            let label = if sci {
                let digits = (biggest.log10().floor() as i32 - step_exp).max(0) as usize;
                format!("{:.*e}", digits, v)
            } else {
                format!("{:.*}", (-step_exp).max(0) as usize, v + 0.0)
            };
            // "-0" and "-0.00" come from rounding tiny negatives.
            let label = if label.trim_start_matches('-').chars().all(|c| c == '0' || c == '.') {
                label.trim_start_matches('-').to_string()
            } else {
                label
            };
            (v, label)
        })
        .collect()
}

/// Ticks at powers of ten for a log₁₀ axis spanning `[lo, hi]` (in exponents), thinned to at
/// most about eight.
fn log_ticks(lo: f64, hi: f64) -> Vec<(f64, String)> {
    let (first, last) = (lo.ceil() as i32, hi.floor() as i32);
    let every = ((last - first) / 8 + 1).max(1);
    (first..=last)
        .filter(|k| (k - first) % every == 0)
        .map(|k| {
            let label = if (-4..=6).contains(&k) {
                format!("{:.*}", (-k).max(0) as usize, 10f64.powi(k))
            } else {
                format!("1e{k}")
            };
            (f64::from(k), label)
        })
        .collect()
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && x < i64::from(img.width()) && y < i64::from(img.height()) {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn hline(img: &mut RgbImage, x0: u32, x1: u32, y: u32, c: Rgb<u8>) {
    for x in x0..=x1 {
        put(img, i64::from(x), i64::from(y), c);
    }
}

fn vline(img: &mut RgbImage, x: u32, y0: u32, y1: u32, c: Rgb<u8>) {
    for y in y0..=y1 {
        put(img, i64::from(x), i64::from(y), c);
    }
}

/// A 1-pixel Bresenham segment, clipped to the plotting area.
fn line(img: &mut RgbImage, (ax, ay): (f64, f64), (bx, by): (f64, f64), c: Rgb<u8>, clip: &Rect) {
    let (mut x, mut y) = (ax.round() as i64, ay.round() as i64);
    let (x1, y1) = (bx.round() as i64, by.round() as i64);
    let (dx, dy) = ((x1 - x).abs(), -(y1 - y).abs());
    let (sx, sy) = (if x < x1 { 1 } else { -1 }, if y < y1 { 1 } else { -1 });
    let mut err = dx + dy;
    let inside = |x: i64, y: i64| {
        x >= i64::from(clip.x0) && x <= i64::from(clip.x1) && y >= i64::from(clip.y0) && y <= i64::from(clip.y1)
    };
    loop {
        if inside(x, y) {
            put(img, x, y, c);
        }
        if x == x1 && y == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

/// A boxed legend in the top-right corner of the plot: a colour swatch and the name per series.
fn draw_legend(img: &mut RgbImage, series: &[(&str, Vec<(f64, f64)>)], plot: &Rect) {
    if series.is_empty() {
        return;
    }
    let row_h = GLYPH_H + 6;
    let swatch = 24;
    let text_w = series.iter().map(|(name, _)| text_width(name)).max().unwrap_or(0);
    let box_w = swatch + text_w + 24;
    let box_h = series.len() as u32 * row_h + 8;
    let x0 = plot.x1.saturating_sub(box_w + 8).max(plot.x0 + 1);
    let y0 = plot.y0 + 8;
    for y in y0..y0 + box_h {
        hline(img, x0, x0 + box_w, y, WHITE);
    }
    hline(img, x0, x0 + box_w, y0, LEGEND_BORDER);
    hline(img, x0, x0 + box_w, y0 + box_h, LEGEND_BORDER);
    vline(img, x0, y0, y0 + box_h, LEGEND_BORDER);
    vline(img, x0 + box_w, y0, y0 + box_h, LEGEND_BORDER);
    for (k, (name, _)) in series.iter().enumerate() {
        let colour = Rgb(PALETTE[k % PALETTE.len()]);
        let ty = y0 + 6 + k as u32 * row_h;
        let mid = ty + GLYPH_H / 2;
        for dy in 0..3 {
            hline(img, x0 + 8, x0 + 8 + swatch, mid + dy - 1, colour);
        }
        draw_text(img, x0 + 16 + swatch, ty, name, BLACK);
    }
}

/// Pixel width of `text` in the embedded font.
fn text_width(text: &str) -> u32 {
    (text.chars().count() as u32 * ADVANCE).saturating_sub(SCALE)
}

/// Draws `text` with its top-left corner at `(x, y)`; pixels outside the image are dropped.
fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, c: Rgb<u8>) {
    for (i, ch) in text.chars().enumerate() {
        let gx = i64::from(x) + i as i64 * i64::from(ADVANCE);
        let (rows, drop) = glyph(ch);
        for (row, bits) in rows.iter().enumerate() {
            for col in 0..5 {
                if bits & (0x10 >> col) != 0 {
                    for dy in 0..SCALE {
                        for dx in 0..SCALE {
                            let px = gx + i64::from(col * SCALE + dx);
                            let py = i64::from(y) + (row as i64 + i64::from(drop)) * i64::from(SCALE) + i64::from(dy);
                            put(img, px, py, c);
                        }
                    }
                }
            }
        }
    }
}

/// The 5×7 bitmap of `c` (seven rows, bit 4 the leftmost column) and how many rows below the
/// cap line to draw it: [`DESCENT`] for letters with descenders, whose bitmap starts at the
/// x-height. Characters without a glyph are drawn as a hollow box.
fn glyph(c: char) -> ([u8; 7], u32) {
    match descender(c) {
        Some(rows) => (rows, DESCENT),
        None => (cap_glyph(c), 0),
    }
}

#[rustfmt::skip]
fn descender(c: char) -> Option<[u8; 7]> {
    Some(match c {
        'g' => [0b01111, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110],
        'p' => [0b11110, 0b10001, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000],
        'q' => [0b01111, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b00001],
        'y' => [0b10001, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110],
        _ => return None,
    })
}

#[rustfmt::skip]
fn cap_glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110],
        '1' => [0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        '2' => [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111],
        '3' => [0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110],
        '4' => [0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010],
        '5' => [0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110],
        '6' => [0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110],
        '7' => [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000],
        '8' => [0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110],
        '9' => [0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100],
        'A' => [0b01110, 0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001],
        'B' => [0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110],
        'C' => [0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110],
        'D' => [0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100],
        'E' => [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111],
        'F' => [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000],
        'G' => [0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111],
        'H' => [0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001],
        'I' => [0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        'J' => [0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100],
        'K' => [0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001],
        'L' => [0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111],
        'M' => [0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001],
        'N' => [0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001],
        'O' => [0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110],
        'P' => [0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000],
        'Q' => [0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101],
        'R' => [0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001],
        'S' => [0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110],
        'T' => [0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100],
        'U' => [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110],
        'V' => [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100],
        'W' => [0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010],
        'X' => [0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001],
        'Y' => [0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100],
        'Z' => [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111],
        'a' => [0b00000, 0b00000, 0b01110, 0b00001, 0b01111, 0b10001, 0b01111],
        'b' => [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b11110],
        'c' => [0b00000, 0b00000, 0b01110, 0b10000, 0b10000, 0b10001, 0b01110],
        'd' => [0b00001, 0b00001, 0b01101, 0b10011, 0b10001, 0b10001, 0b01111],
        'e' => [0b00000, 0b00000, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110],
        'f' => [0b00110, 0b01001, 0b01000, 0b11100, 0b01000, 0b01000, 0b01000],
        'h' => [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001],
        'i' => [0b00100, 0b00000, 0b01100, 0b00100, 0b00100, 0b00100, 0b01110],
        'j' => [0b00010, 0b00000, 0b00110, 0b00010, 0b00010, 0b10010, 0b01100],
        'k' => [0b10000, 0b10000, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010],
        'l' => [0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        'm' => [0b00000, 0b00000, 0b11010, 0b10101, 0b10101, 0b10001, 0b10001],
        'n' => [0b00000, 0b00000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001],
        'o' => [0b00000, 0b00000, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110],
        'r' => [0b00000, 0b00000, 0b10110, 0b11001, 0b10000, 0b10000, 0b10000],
        's' => [0b00000, 0b00000, 0b01110, 0b10000, 0b01110, 0b00001, 0b11110],
        't' => [0b01000, 0b01000, 0b11100, 0b01000, 0b01000, 0b01001, 0b00110],
        'u' => [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b10011, 0b01101],
        'v' => [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100],
        'w' => [0b00000, 0b00000, 0b10001, 0b10001, 0b10101, 0b10101, 0b01010],
        'x' => [0b00000, 0b00000, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001],
        'z' => [0b00000, 0b00000, 0b11111, 0b00010, 0b00100, 0b01000, 0b11111],
        '.' => [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100],
        ',' => [0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b00100, 0b01000],
        ':' => [0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000],
        '-' => [0b00000, 0b00000, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000],
        '+' => [0b00000, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000],
        '_' => [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b11111],
        '=' => [0b00000, 0b00000, 0b11111, 0b00000, 0b11111, 0b00000, 0b00000],
        '/' => [0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000],
        '(' => [0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010],
        ')' => [0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000],
        '%' => [0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011],
        ' ' => [0; 7],
        _ => [0b11111, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b11111],
    }
}
