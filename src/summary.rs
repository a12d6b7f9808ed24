//! Parameter counts of the six U-GAT-IT networks, as the reference's `summary` prints them.

use crate::model::{discriminator, generator, Discriminator, ResnetGenerator};
use tch::nn::VarStore;
use tch::Device;

/// Names of the six networks in the reference's order, with whether each is a generator and, for
/// discriminators, whether it is the global one.
pub const NETWORKS: [(&str, Role); 6] = [
    ("genA2B", Role::Generator),
    ("genB2A", Role::Generator),
    ("disGA", Role::GlobalDiscriminator),
    ("disGB", Role::GlobalDiscriminator),
    ("disLA", Role::LocalDiscriminator),
    ("disLB", Role::LocalDiscriminator),
];

/// What a network is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Generator,
    GlobalDiscriminator,
    LocalDiscriminator,
}

/// Trainable parameters of a network (spectral-norm `u`, `v` are state, not parameters).
pub fn count_parameters(vs: &VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}

/// Builds one network of each role on the CPU and returns `(name, parameter count)` for all six.
pub fn parameter_counts(g: generator::Config) -> Vec<(&'static str, i64)> {
    let count = |role: Role| {
        let vs = VarStore::new(Device::Cpu);
        tch::no_grad(|| match role {
            Role::Generator => drop(ResnetGenerator::new(&vs.root(), g)),
            Role::GlobalDiscriminator => drop(Discriminator::new(&vs.root(), discriminator::Config::global(g.ngf))),
            Role::LocalDiscriminator => drop(Discriminator::new(&vs.root(), discriminator::Config::local(g.ngf))),
        });
        count_parameters(&vs)
    };
    let counts = [Role::Generator, Role::GlobalDiscriminator, Role::LocalDiscriminator].map(|r| (r, count(r)));
    NETWORKS.iter().map(|(name, role)| (*name, counts.iter().find(|(r, _)| r == role).unwrap().1)).collect()
}
