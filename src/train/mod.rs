//! Training U-GAT-IT with the paper's recipe.

pub mod checkpoint;
pub mod config;
pub mod losses;
pub mod optim;
pub mod run;
pub mod step;
