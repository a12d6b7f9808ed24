//! Training U-GAT-IT with the paper's recipe.

pub mod checkpoint;
pub mod config;
pub mod losses;
pub mod optim;
pub mod plot;
pub mod run;
pub mod samples;
pub mod step;
