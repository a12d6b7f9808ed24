//! The six networks of U-GAT-IT (Kim et al., arXiv 1907.10830, Fig. 1): two generators
//! `genA2B`, `genB2A` and, per domain, a global (`disGA`, `disGB`) and a local (`disLA`, `disLB`)
//! discriminator. They share one `VarStore` whose paths are `<net>.<reference key>`, the same
//! names UGATIT-pytorch's checkpoints nest them under.

use super::discriminator::{self, Discriminator};
use super::generator::{self, ResnetGenerator};
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// Names of the six networks, in the reference's order.
pub const NET_NAMES: [&str; 6] = ["genA2B", "genB2A", "disGA", "disGB", "disLA", "disLB"];

/// Architecture of the whole model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub generator: generator::Config,
    pub global_dis: discriminator::Config,
    pub local_dis: discriminator::Config,
}

impl Default for Config {
    fn default() -> Self {
        Self::new(generator::Config::default())
    }
}

impl Config {
    /// The reference's discriminators (global 7 layers, local 5) for the generator's width.
    pub fn new(generator: generator::Config) -> Self {
        Self {
            generator,
            global_dis: discriminator::Config::global(generator.ngf),
            local_dis: discriminator::Config::local(generator.ngf),
        }
    }
}

impl Config {
    /// Trainable parameters of each of the six networks, in [`NET_NAMES`] order.
    pub fn parameter_counts(&self) -> [f64; 6] {
        let (g, global, local) =
            (self.generator.parameter_count(), self.global_dis.parameter_count(), self.local_dis.parameter_count());
        [g, g, global, global, local, local]
    }
}

/// The six networks and their variables.
pub struct UGATIT {
    pub vs: VarStore,
    pub config: Config,
    pub gen_a2b: ResnetGenerator,
    pub gen_b2a: ResnetGenerator,
    pub dis_ga: Discriminator,
    pub dis_gb: Discriminator,
    pub dis_la: Discriminator,
    pub dis_lb: Discriminator,
}

impl UGATIT {
    pub fn new(config: Config, device: Device) -> Self {
        let vs = VarStore::new(device);
        let root = vs.root();
        let generator = |name: &str| ResnetGenerator::new(&(&root / name), config.generator);
        let dis = |name: &str, c| Discriminator::new(&(&root / name), c);
        Self {
            gen_a2b: generator("genA2B"),
            gen_b2a: generator("genB2A"),
            dis_ga: dis("disGA", config.global_dis),
            dis_gb: dis("disGB", config.global_dis),
            dis_la: dis("disLA", config.local_dis),
            dis_lb: dis("disLB", config.local_dis),
            config,
            vs,
        }
    }

    /// Trainable variables (name, tensor) of the networks whose names start with `prefix`
    /// (`"gen"` or `"dis"`), sorted by name.
    pub fn parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut vars: Vec<(String, Tensor)> =
            self.vs.variables().into_iter().filter(|(k, t)| k.starts_with(prefix) && t.requires_grad()).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    /// Clamps every `rho` of both generators to [0, 1].
    pub fn clip_rho(&self) {
        self.gen_a2b.clip_rho();
        self.gen_b2a.clip_rho();
    }
}
