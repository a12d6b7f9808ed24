//! One U-GAT-IT training iteration (Kim et al., arXiv 1907.10830, section 2.3), computing what
//! UGATIT-pytorch's `train()` loop body computes:
//!
//! 1. the discriminator step on all four discriminators (real before fake, so each spectral norm
//!    sees its power iterations in the reference's order), then
//! 2. the generator step with adversarial (patch and CAM logits), cycle, identity and CAM losses,
//!    followed by the `rho` clamp.
//!
//! Unlike the reference, the discriminator step does not back-propagate into the generators
//! (the reference discards those gradients anyway), and the generators' first translations are
//! computed once and reused by the generator step, which sees the same weights.

use super::losses::{cam_loss, discriminator_loss, generator_loss, gradient_penalty, penalty_point, GanType};
use super::optim::{Adam, AdamConfig};
use crate::model::{Discriminator, UGATIT};
use tch::{Kind, Tensor};

/// Weights of the loss terms (the paper's λ: 1, 10, 10, 1000).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossWeights {
    pub adv: f64,
    pub cycle: f64,
    pub identity: f64,
    pub cam: f64,
}

impl Default for LossWeights {
    fn default() -> Self {
        Self { adv: 1.0, cycle: 10.0, identity: 10.0, cam: 1000.0 }
    }
}

/// The random draws a step needs beyond its batches: the gradient penalty's interpolation
/// weights (`[B, 1, 1, 1]`, one per domain) and, for DRAGAN, its perturbation noise.
#[derive(Debug, Default)]
pub struct PenaltyNoise {
    pub alpha_a: Option<Tensor>,
    pub alpha_b: Option<Tensor>,
    pub noise_a: Option<Tensor>,
    pub noise_b: Option<Tensor>,
}

impl PenaltyNoise {
    /// Draws what `gan` needs for batches shaped like `real` from libtorch's generator.
    pub fn draw(gan: GanType, real: &Tensor) -> Self {
        if !gan.has_gradient_penalty() {
            return Self::default();
        }
        let b = real.size()[0];
        let alpha = || Some(Tensor::rand([b, 1, 1, 1], (Kind::Float, real.device())));
        let noise = || (gan == GanType::Dragan).then(|| real.rand_like());
        Self { alpha_a: alpha(), alpha_b: alpha(), noise_a: noise(), noise_b: noise() }
    }
}

/// Names of the loss terms a step reports, in [`StepLosses::values`] order.
pub const LOSS_NAMES: [&str; 30] = [
    "d_loss",
    "g_loss",
    "d_loss_A",
    "d_loss_B",
    "g_loss_A",
    "g_loss_B",
    "D_ad_GA",
    "D_ad_cam_GA",
    "D_ad_LA",
    "D_ad_cam_LA",
    "D_ad_GB",
    "D_ad_cam_GB",
    "D_ad_LB",
    "D_ad_cam_LB",
    "GP_A",
    "GP_B",
    "G_ad_GA",
    "G_ad_cam_GA",
    "G_ad_LA",
    "G_ad_cam_LA",
    "G_ad_GB",
    "G_ad_cam_GB",
    "G_ad_LB",
    "G_ad_cam_LB",
    "G_recon_A",
    "G_recon_B",
    "G_identity_A",
    "G_identity_B",
    "G_cam_A",
    "G_cam_B",
];

/// Every loss term of one step, kept on the device until read.
pub struct StepLosses(Tensor);

impl StepLosses {
    /// The terms as numbers, named by [`LOSS_NAMES`] (one device synchronisation).
    pub fn values(&self) -> Vec<f64> {
        Vec::<f64>::try_from(self.0.to_kind(Kind::Double).to_device(tch::Device::Cpu)).unwrap_or_default()
    }
}

/// The six networks with their two optimisers and the loss configuration.
pub struct Trainer {
    pub nets: UGATIT,
    pub opt_g: Adam,
    pub opt_d: Adam,
    pub gan: GanType,
    pub weights: LossWeights,
}

/// Σ of the patch and CAM losses of one discriminator output pair.
struct DTerms {
    patch: Tensor,
    cam: Tensor,
}

impl Trainer {
    pub fn new(nets: UGATIT, gan: GanType, weights: LossWeights, adam: AdamConfig) -> Self {
        let opt_g = Adam::new(nets.parameters("gen"), adam);
        let opt_d = Adam::new(nets.parameters("dis"), adam);
        Self { nets, opt_g, opt_d, gan, weights }
    }

    /// The discriminator terms for `d` on a real and a fake batch (real scored first).
    fn d_terms(&self, d: &Discriminator, real: &Tensor, fake: &Tensor) -> DTerms {
        let r = d.forward_t(real, true);
        let f = d.forward_t(fake, true);
        DTerms {
            patch: discriminator_loss(self.gan, &r.logit, &f.logit),
            cam: discriminator_loss(self.gan, &r.cam_logit, &f.cam_logit),
        }
    }

    /// The generator's adversarial terms for `d` on a fake batch.
    fn g_terms(&self, d: &Discriminator, fake: &Tensor) -> DTerms {
        let f = d.forward_t(fake, true);
        DTerms { patch: generator_loss(self.gan, &f.logit), cam: generator_loss(self.gan, &f.cam_logit) }
    }

    /// Runs one iteration at learning rate `lr` on the batches `real_a`, `real_b`.
    pub fn step(&mut self, real_a: &Tensor, real_b: &Tensor, noise: &PenaltyNoise, lr: f64) -> StepLosses {
        let nets = &self.nets;
        let w = self.weights;
        // First translations, with the generators' graphs kept for the generator step.
        let a2b = nets.gen_a2b.forward(real_a);
        let b2a = nets.gen_b2a.forward(real_b);

        // Discriminator step.
        self.opt_d.zero_grad();
        let (fake_a2b, fake_b2a) = (a2b.image.detach(), b2a.image.detach());
        let ga = self.d_terms(&nets.dis_ga, real_a, &fake_b2a);
        let la = self.d_terms(&nets.dis_la, real_a, &fake_b2a);
        let gb = self.d_terms(&nets.dis_gb, real_b, &fake_a2b);
        let lb = self.d_terms(&nets.dis_lb, real_b, &fake_a2b);
        let penalty =
            |ds: [&Discriminator; 2], real: &Tensor, fake: &Tensor, alpha: &Option<Tensor>, n: &Option<Tensor>| {
                match alpha {
                    Some(alpha) => {
                        let x = penalty_point(self.gan, real, fake, alpha, n.as_ref()).detach().set_requires_grad(true);
                        gradient_penalty(self.gan, ds, &x)
                    }
                    None => Tensor::zeros([], (Kind::Float, real.device())),
                }
            };
        let gp_a = penalty([&nets.dis_ga, &nets.dis_la], real_a, &fake_b2a, &noise.alpha_a, &noise.noise_a);
        let gp_b = penalty([&nets.dis_gb, &nets.dis_lb], real_b, &fake_a2b, &noise.alpha_b, &noise.noise_b);
        let d_loss_a = (&ga.patch + &ga.cam + &la.patch + &la.cam + &gp_a) * w.adv;
        let d_loss_b = (&gb.patch + &gb.cam + &lb.patch + &lb.cam + &gp_b) * w.adv;
        let d_loss = &d_loss_a + &d_loss_b;
        d_loss.backward();
        self.opt_d.step(lr);

        // Generator step.
        self.opt_g.zero_grad();
        let nets = &self.nets;
        let a2b2a = nets.gen_b2a.forward(&a2b.image);
        let b2a2b = nets.gen_a2b.forward(&b2a.image);
        let a2a = nets.gen_b2a.forward(real_a);
        let b2b = nets.gen_a2b.forward(real_b);
        let g_ga = self.g_terms(&nets.dis_ga, &b2a.image);
        let g_la = self.g_terms(&nets.dis_la, &b2a.image);
        let g_gb = self.g_terms(&nets.dis_gb, &a2b.image);
        let g_lb = self.g_terms(&nets.dis_lb, &a2b.image);
        let recon_a = a2b2a.image.l1_loss(real_a, tch::Reduction::Mean);
        let recon_b = b2a2b.image.l1_loss(real_b, tch::Reduction::Mean);
        let ident_a = a2a.image.l1_loss(real_a, tch::Reduction::Mean);
        let ident_b = b2b.image.l1_loss(real_b, tch::Reduction::Mean);
        // A generator's CAM must tell its source domain (B for genB2A) from its target domain.
        let cam_a = cam_loss(&b2a.cam_logit, &a2a.cam_logit);
        let cam_b = cam_loss(&a2b.cam_logit, &b2b.cam_logit);
        let g_loss_a = (&g_ga.patch + &g_ga.cam + &g_la.patch + &g_la.cam) * w.adv
            + &recon_a * w.cycle
            + &ident_a * w.identity
            + &cam_a * w.cam;
        let g_loss_b = (&g_gb.patch + &g_gb.cam + &g_lb.patch + &g_lb.cam) * w.adv
            + &recon_b * w.cycle
            + &ident_b * w.identity
            + &cam_b * w.cam;
        let g_loss = &g_loss_a + &g_loss_b;
        g_loss.backward();
        self.opt_g.step(lr);
        self.nets.clip_rho();

        let terms = [
            d_loss, g_loss, d_loss_a, d_loss_b, g_loss_a, g_loss_b, ga.patch, ga.cam, la.patch, la.cam, gb.patch,
            gb.cam, lb.patch, lb.cam, gp_a, gp_b, g_ga.patch, g_ga.cam, g_la.patch, g_la.cam, g_gb.patch, g_gb.cam,
            g_lb.patch, g_lb.cam, recon_a, recon_b, ident_a, ident_b, cam_a, cam_b,
        ];
        let terms: Vec<Tensor> = terms.iter().map(|t| t.detach().to_kind(Kind::Double).reshape([1])).collect();
        StepLosses(Tensor::cat(&terms, 0))
    }
}
