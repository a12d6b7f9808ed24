//! Training U-GAT-IT with the paper's recipe.

pub mod checkpoint;
pub mod config;
pub mod evaluate;
pub mod graphed;
pub mod log;
pub mod losses;
pub mod mlp_grad;
pub mod optim;
pub mod outputs;
pub mod run;
pub mod run_dir;
pub mod scaler;
pub mod step;
pub mod updates;
