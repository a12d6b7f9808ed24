//! The U-GAT-IT networks and their building blocks.

pub mod discriminator;
pub mod flops;
pub mod generator;
pub mod layers;
pub mod norm;
pub mod spectral_norm;
pub mod tf_generator;
pub mod ugatit;
pub mod winograd;

pub use discriminator::{Discriminator, DiscriminatorOutput};
pub use generator::{GeneratorOutput, ResnetGenerator};
pub use tf_generator::TfGenerator;
pub use ugatit::UGATIT;

/// A network that translates a batch of images: the reference's generator or the official TF one.
pub trait Generate {
    /// `xs`: `[B, 3, S, S]` in [−1, 1].
    fn generate(&self, xs: &tch::Tensor) -> GeneratorOutput;
}

impl Generate for ResnetGenerator {
    fn generate(&self, xs: &tch::Tensor) -> GeneratorOutput {
        self.forward(xs)
    }
}

impl Generate for TfGenerator {
    fn generate(&self, xs: &tch::Tensor) -> GeneratorOutput {
        self.forward(xs)
    }
}
