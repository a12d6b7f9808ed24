//! The U-GAT-IT networks and their building blocks.

pub mod discriminator;
pub mod generator;
pub mod layers;
pub mod norm;
pub mod spectral_norm;
pub mod ugatit;

pub use discriminator::{Discriminator, DiscriminatorOutput};
pub use generator::{GeneratorOutput, ResnetGenerator};
pub use ugatit::UGATIT;
