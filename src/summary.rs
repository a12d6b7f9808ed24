//! Parameter counts of the six U-GAT-IT networks, as the reference's `summary` prints them.

use crate::model::discriminator::{self, Discriminator};
use crate::model::generator::ResnetGenerator;
use crate::model::ugatit::{Config, NET_NAMES};
use tch::nn::VarStore;
use tch::Device;

/// Trainable parameters of a network (spectral-norm `u`, `v` are state, not parameters).
pub fn count_parameters(vs: &VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}

/// Builds one generator and one discriminator of each kind on the CPU and returns
/// `(name, parameter count)` for all six networks, in the reference's order.
pub fn parameter_counts(config: Config) -> Vec<(&'static str, i64)> {
    let g = config.generator;
    let discriminator = |d: discriminator::Config| {
        let vs = VarStore::new(Device::Cpu);
        tch::no_grad(|| drop(Discriminator::new(&vs.root(), d)));
        count_parameters(&vs)
    };
    let vs = VarStore::new(Device::Cpu);
    tch::no_grad(|| drop(ResnetGenerator::new(&vs.root(), g)));
    let (gen, global, local) =
        (count_parameters(&vs), discriminator(config.global_dis), discriminator(config.local_dis));
    let count = |name: &str| {
        if name.starts_with("gen") {
            gen
        } else if name.starts_with("disG") {
            global
        } else {
            local
        }
    };
    NET_NAMES.iter().map(|&name| (name, count(name))).collect()
}
