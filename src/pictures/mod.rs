//! The pictures a run and its tools show a person: the reference's sample grids (images with
//! their CAM heatmaps in OpenCV's JET colours) and the loss-curve chart. Training writes both;
//! `ugatit test` writes the grids, `ugatit translate --with-cam` the heatmaps.
//!
//! * [`grid`]: tiles, heatmaps, [`grid::sample_columns`] (the real / identity / translation /
//!   cycle column, computed once for train and test) and [`grid::render_grid`].
//! * [`plot`]: the loss chart, drawn without fonts or a plotting stack.

pub mod grid;
pub mod plot;

pub use grid::{heatmap_tile, image_tile, png_bytes, render_grid, sample_columns, save_png, SampleColumn};
pub use plot::plot_losses;
