//! One U-GAT-IT training iteration (Kim et al., arXiv 1907.10830, section 2.3), computing what
//! UGATIT-pytorch's `train()` loop body computes:
//!
//! 1. the discriminator step on all four discriminators (real before fake, so each spectral norm
//!    sees its power iterations in the reference's order), then
//! 2. the generator step with adversarial (patch and CAM logits), cycle, identity and CAM losses,
//!    followed by the `rho` clamp.
//!
//! The arithmetic is the reference's; the order of work is arranged for memory and time:
//!
//! - the discriminator step does not back-propagate into the generators (the reference discards
//!   those gradients anyway), and the generators' first translations are computed once and reused
//!   by the generator step, which sees the same weights;
//! - the four discriminators' losses are independent, so each is built, differentiated and
//!   applied in turn: one discriminator's graph and gradients are alive at a time (distributed,
//!   and in fp16 with its loss scaler, the updates wait a little longer: `updates.rs`);
//! - the generator step never computes the discriminators' weight gradients, and runs its backward
//!   in three passes that cut the graph at the first translations, so that four of the six
//!   generator forwards' activations are alive at once instead of six;
//! - the full generators' 1 GiB `FC.0` weight gradient waits as its factors until the update
//!   (`mlp_grad.rs`).

use super::losses::{
    cam_loss, cycle_loss, discriminator_loss, generator_loss, gradient_penalty, identity_loss, penalty_point, GanType,
};
use super::mlp_grad::{backward, MlpGrad};
use super::optim::{Adam, AdamConfig};
use super::scaler::LossScaler;
use super::updates::Updates;
use crate::distributed::Distributed;
use crate::model::{Discriminator, GeneratorOutput, UGATIT};
use crate::precision::{Compute, Precision};
use anyhow::{Context, Result};
use std::rc::Rc;
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
        Self::draw_part(gan, real, 0, 1)
    }

    /// Part `index` of `count` of the draws for a batch `count` times the size of `real`
    /// (`real` being that part): what one rank of a data-parallel step uses, so that the ranks
    /// together use exactly the draws of one process with the whole batch.
    pub fn draw_part(gan: GanType, real: &Tensor, index: usize, count: usize) -> Self {
        if !gan.has_gradient_penalty() {
            return Self::default();
        }
        let mut shape = real.size();
        let b = shape[0];
        shape[0] = b * count as i64;
        let part = |t: Tensor| Some(t.narrow(0, b * index as i64, b));
        let alpha = || part(Tensor::rand([shape[0], 1, 1, 1], (Kind::Float, real.device())));
        let noise = || (gan == GanType::Dragan).then(|| Tensor::rand(shape.as_slice(), (real.kind(), real.device())));
        let (alpha_a, alpha_b) = (alpha(), alpha());
        Self { alpha_a, alpha_b, noise_a: noise().and_then(part), noise_b: noise().and_then(part) }
    }
}

/// Declares [`LossTerms`]: one field per reported term, the field's name being the term's name
/// (UGATIT-pytorch's, in the columns of `losses.csv`), so a name and its value cannot drift apart.
macro_rules! loss_terms {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// Every loss term of one step, named as the reference names them.
        #[allow(non_snake_case)]
        #[derive(Debug, Clone, PartialEq)]
        pub struct LossTerms<T> {
            $($(#[doc = $doc])* pub $name: T,)*
        }

        impl<T> LossTerms<T> {
            /// The terms' names, in column order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($name),)*];

            /// The values in [`LossTerms::NAMES`] order.
            pub fn into_values(self) -> Vec<T> {
                vec![$(self.$name,)*]
            }

            /// The terms from values in [`LossTerms::NAMES`] order (`None` for too few).
            pub fn from_values(values: impl IntoIterator<Item = T>) -> Option<Self> {
                let mut values = values.into_iter();
                Some(Self { $($name: values.next()?,)* })
            }
        }
    };
}

loss_terms! {
    /// Both discriminators' total (`d_loss_A + d_loss_B`).
    d_loss,
    /// Both generators' total.
    g_loss,
    /// Domain A's discriminators, weighted.
    d_loss_A,
    d_loss_B,
    /// genB2A's total (it generates domain A).
    g_loss_A,
    g_loss_B,
    D_ad_GA,
    D_ad_cam_GA,
    D_ad_LA,
    D_ad_cam_LA,
    D_ad_GB,
    D_ad_cam_GB,
    D_ad_LB,
    D_ad_cam_LB,
    /// Gradient penalties (zero without one).
    GP_A,
    GP_B,
    G_ad_GA,
    G_ad_cam_GA,
    G_ad_LA,
    G_ad_cam_LA,
    G_ad_GB,
    G_ad_cam_GB,
    G_ad_LB,
    G_ad_cam_LB,
    /// Cycle losses, unweighted.
    G_recon_A,
    G_recon_B,
    /// Identity losses, unweighted.
    G_identity_A,
    G_identity_B,
    /// CAM losses, unweighted.
    G_cam_A,
    G_cam_B,
}

/// Names of the loss terms a step reports, in column order.
pub const LOSS_NAMES: &[&str] = LossTerms::<()>::NAMES;

/// Every loss term of one step, kept on the device until read.
pub struct StepLosses(Tensor);

impl StepLosses {
    /// The terms as numbers (one device synchronisation).
    pub fn values(&self) -> Result<LossTerms<f64>> {
        let values = Vec::<f64>::try_from(self.0.to_kind(Kind::Double).to_device(tch::Device::Cpu))
            .context("copying the loss terms to the host")?;
        LossTerms::from_values(values).context("the step reported too few loss terms")
    }
}

/// The six networks with their two optimisers and the loss configuration.
pub struct Trainer {
    pub nets: UGATIT,
    pub opt_g: Adam,
    pub opt_d: Adam,
    pub gan: GanType,
    pub weights: LossWeights,
    /// Precision and layout of the step's arithmetic ([`Compute::reference`] unless set).
    pub compute: Compute,
    /// The job this trainer is one rank of: gradients and reported losses are averaged over
    /// its ranks (`None`: a single process).
    pub dist: Option<Rc<Distributed>>,
    /// The discriminators' and the generators' loss scales, in fp16 only.
    pub scalers: Option<[LossScaler; 2]>,
}

/// The patch and CAM terms of one discriminator's loss.
struct DTerms {
    patch: Tensor,
    cam: Tensor,
}

impl DTerms {
    fn sum(&self) -> Tensor {
        &self.patch + &self.cam
    }

    /// The values, without their graph (for the step's report).
    fn detach(&self) -> DTerms {
        DTerms { patch: self.patch.detach(), cam: self.cam.detach() }
    }
}

/// The discriminator terms for `d` on a real and a fake batch (real scored first).
fn d_terms(gan: GanType, d: &Discriminator, real: &Tensor, fake: &Tensor) -> DTerms {
    let r = d.forward_t(real, true);
    let f = d.forward_t(fake, true);
    DTerms {
        patch: discriminator_loss(gan, &r.logit, &f.logit),
        cam: discriminator_loss(gan, &r.cam_logit, &f.cam_logit),
    }
}

/// The generator's adversarial terms for `d` on a fake batch.
fn g_terms(gan: GanType, d: &Discriminator, fake: &Tensor) -> DTerms {
    let f = d.forward_t(fake, true);
    DTerms { patch: generator_loss(gan, &f.logit), cam: generator_loss(gan, &f.cam_logit) }
}

/// `Σ t·grad` with `grad` constant: its gradient with respect to `t` is `grad`, which carries a
/// gradient computed downstream of a cut (a detached copy of `t`) back into `t`'s own graph.
fn carry(t: &Tensor, grad: &Tensor) -> Tensor {
    (t * grad).sum(Kind::Float)
}

/// Adds `more` into `sum`, gradient by gradient (an undefined one is absent).
fn accumulate(sum: &mut [Tensor], more: Vec<Tensor>) {
    for (acc, g) in sum.iter_mut().zip(more) {
        if !g.defined() {
            continue;
        }
        if acc.defined() {
            let _ = acc.g_add_(&g);
        } else {
            *acc = g;
        }
    }
}

/// A detached copy of `t` that is a leaf of the graphs built on it.
fn cut(t: &Tensor) -> Tensor {
    t.detach().set_requires_grad(true)
}

impl Trainer {
    pub fn new(nets: UGATIT, gan: GanType, weights: LossWeights, adam: AdamConfig) -> Self {
        let opt_g = Adam::new(nets.parameters("gen"), adam);
        let opt_d = Adam::new(nets.parameters("dis"), adam);
        let compute = Compute::reference(nets.vs.device());
        Self { nets, opt_g, opt_d, gan, weights, compute, dist: None, scalers: None }
    }

    /// The same trainer computing as `compute` says (fp16 with fresh loss scales).
    pub fn computing(self, compute: Compute) -> Self {
        let scalers = (compute.precision == Precision::Fp16).then(<[LossScaler; 2]>::default);
        Self { compute, scalers, ..self }
    }

    /// The same trainer as one rank of `dist`.
    pub fn distributed(self, dist: Option<Rc<Distributed>>) -> Self {
        Self { dist, ..self }
    }

    /// Runs one iteration at learning rate `lr` on the batches `real_a`, `real_b`: [`Trainer::begin`]
    /// then [`Trainer::compute`].
    pub fn step(&mut self, real_a: &Tensor, real_b: &Tensor, noise: &PenaltyNoise, lr: f64) -> Result<StepLosses> {
        self.begin(lr);
        self.compute(real_a, real_b, noise)
    }

    /// What an iteration at learning rate `lr` sets on the host before its work on the device
    /// (the optimisers' step counts and coefficients): a CUDA graph of [`Trainer::compute`]
    /// replays every iteration after this.
    pub fn begin(&mut self, lr: f64) {
        self.opt_d.begin_update(lr);
        self.opt_g.begin_update(lr);
    }

    /// The iteration's work after [`Trainer::begin`].
    ///
    /// In low precision the iteration's forwards run in one autocast region and its backward
    /// passes with autocast off ([`crate::precision::gradients`]), so that each backward kernel
    /// follows the dtype of the forward it differentiates; the optimisers' element-wise
    /// arithmetic is float32 either way.
    ///
    /// Distributed, the gradients and the reported terms are averaged over the ranks; a failed
    /// collective is the error.
    pub fn compute(&mut self, real_a: &Tensor, real_b: &Tensor, noise: &PenaltyNoise) -> Result<StepLosses> {
        let (real_a, real_b) = (&self.compute.input(real_a), &self.compute.input(real_b));
        let _region = self.compute.region();
        // First translations, with the generators' graphs kept for the generator step.
        let a2b = self.nets.gen_a2b.forward(real_a);
        let b2a = self.nets.gen_b2a.forward(real_b);
        let d = self.discriminator_step(real_a, real_b, &a2b.image.detach(), &b2a.image.detach(), noise)?;
        let g = self.generator_step(real_a, real_b, a2b, b2a)?;
        self.nets.clip_rho();
        let w = self.weights;

        let d_loss_a = (&d.ga.patch + &d.ga.cam + &d.la.patch + &d.la.cam + &d.gp_a) * w.adv;
        let d_loss_b = (&d.gb.patch + &d.gb.cam + &d.lb.patch + &d.lb.cam + &d.gp_b) * w.adv;
        let d_loss = &d_loss_a + &d_loss_b;
        let g_loss_a = (&g.ga.patch + &g.ga.cam + &g.la.patch + &g.la.cam) * w.adv
            + &g.recon_a * w.cycle
            + &g.ident_a * w.identity
            + &g.cam_a * w.cam;
        let g_loss_b = (&g.gb.patch + &g.gb.cam + &g.lb.patch + &g.lb.cam) * w.adv
            + &g.recon_b * w.cycle
            + &g.ident_b * w.identity
            + &g.cam_b * w.cam;
        let g_loss = &g_loss_a + &g_loss_b;
        let terms = LossTerms {
            d_loss,
            g_loss,
            d_loss_A: d_loss_a,
            d_loss_B: d_loss_b,
            g_loss_A: g_loss_a,
            g_loss_B: g_loss_b,
            D_ad_GA: d.ga.patch,
            D_ad_cam_GA: d.ga.cam,
            D_ad_LA: d.la.patch,
            D_ad_cam_LA: d.la.cam,
            D_ad_GB: d.gb.patch,
            D_ad_cam_GB: d.gb.cam,
            D_ad_LB: d.lb.patch,
            D_ad_cam_LB: d.lb.cam,
            GP_A: d.gp_a,
            GP_B: d.gp_b,
            G_ad_GA: g.ga.patch,
            G_ad_cam_GA: g.ga.cam,
            G_ad_LA: g.la.patch,
            G_ad_cam_LA: g.la.cam,
            G_ad_GB: g.gb.patch,
            G_ad_cam_GB: g.gb.cam,
            G_ad_LB: g.lb.patch,
            G_ad_cam_LB: g.lb.cam,
            G_recon_A: g.recon_a,
            G_recon_B: g.recon_b,
            G_identity_A: g.ident_a,
            G_identity_B: g.ident_b,
            G_cam_A: g.cam_a,
            G_cam_B: g.cam_b,
        };
        let terms: Vec<Tensor> = terms.into_values().iter().map(|t| t.to_kind(Kind::Double).reshape([1])).collect();
        let terms = Tensor::cat(&terms, 0);
        if let Some(dist) = &self.dist {
            dist.mean_in_place(&terms, "averaging the loss terms")?;
        }
        Ok(StepLosses(terms))
    }

    /// Updates the four discriminators on the real batches and the generators' (detached) fakes.
    fn discriminator_step(
        &mut self,
        real_a: &Tensor,
        real_b: &Tensor,
        fake_a2b: &Tensor,
        fake_b2a: &Tensor,
        noise: &PenaltyNoise,
    ) -> Result<DLosses> {
        let Self { nets, opt_d, gan, weights, dist, scalers, .. } = self;
        let gan = *gan;
        // The penalty's point, one per domain, shared by its global and local discriminator.
        let point = |real: &Tensor, fake: &Tensor, alpha: &Option<Tensor>, n: &Option<Tensor>| {
            alpha.as_ref().map(|alpha| cut(&penalty_point(gan, real, fake, alpha, n.as_ref())))
        };
        let x_a = point(real_a, fake_b2a, &noise.alpha_a, &noise.noise_a);
        let x_b = point(real_b, fake_a2b, &noise.alpha_b, &noise.noise_b);
        // Each discriminator is updated once its gradients are complete (their losses do not read
        // each other's weights): see `updates.rs` for when, single, distributed and in fp16.
        let scaler = scalers.as_mut().map(|[d, _]| d);
        let mut updates = Updates::begin(opt_d, dist, scaler, "discriminators'");
        let mut one = |name: &'static str, d: &Discriminator, real: &Tensor, fake: &Tensor, x: &Option<Tensor>| {
            let terms = d_terms(gan, d, real, fake);
            let gp = match x {
                Some(x) => gradient_penalty(gan, d, x),
                None => Tensor::zeros([], (Kind::Float, real.device())),
            };
            let loss = updates.scale((terms.sum() + &gp) * weights.adv);
            let grads = crate::precision::gradients(&[loss], &updates.parameters(name), false, false);
            updates.push(name, grads)?;
            Ok::<_, anyhow::Error>((terms.detach(), gp.detach()))
        };
        let (ga, gp_ga) = one("disGA.", &nets.dis_ga, real_a, fake_b2a, &x_a)?;
        let (la, gp_la) = one("disLA.", &nets.dis_la, real_a, fake_b2a, &x_a)?;
        let (gb, gp_gb) = one("disGB.", &nets.dis_gb, real_b, fake_a2b, &x_b)?;
        let (lb, gp_lb) = one("disLB.", &nets.dis_lb, real_b, fake_a2b, &x_b)?;
        updates.finish()?;
        Ok(DLosses { ga, la, gb, lb, gp_a: gp_ga + gp_la, gp_b: gp_gb + gp_lb })
    }

    /// Updates the generators, given their first translations `a2b`, `b2a` (with graphs).
    ///
    /// The backward runs in three passes, cut at the first translations' images: (1) everything
    /// downstream of the fakes plus genB2A's identity, giving genB2A's gradients and each fake's
    /// gradient from its discriminators and cycle; (2) genA2B's cycle and identity and, through
    /// the cut, its first translation: genA2B is complete and updated; (3) genB2A's first
    /// translation, completing genB2A.
    fn generator_step(
        &mut self,
        real_a: &Tensor,
        real_b: &Tensor,
        a2b: GeneratorOutput,
        b2a: GeneratorOutput,
    ) -> Result<GLosses> {
        let Self { nets, opt_g, gan, weights: w, dist, scalers, .. } = self;
        let gan = *gan;
        let scaler = scalers.as_mut().map(|[_, g]| g);
        let mut updates = Updates::begin(opt_g, dist, scaler, "generators'");
        let (fake_a2b, fake_b2a) = (cut(&a2b.image), cut(&b2a.image));

        let (ga, la) = (g_terms(gan, &nets.dis_ga, &fake_b2a), g_terms(gan, &nets.dis_la, &fake_b2a));
        let (gb, lb) = (g_terms(gan, &nets.dis_gb, &fake_a2b), g_terms(gan, &nets.dis_lb, &fake_a2b));
        let a2b2a = nets.gen_b2a.forward(&fake_a2b);
        let a2a = nets.gen_b2a.forward(real_a);
        let recon_a = cycle_loss(&a2b2a.image, real_a);
        let ident_a = identity_loss(&a2a.image, real_a);
        let cam_a2a = cam_loss(&a2a.cam_logit, false);
        let loss = (ga.sum() + la.sum() + gb.sum() + lb.sum()) * w.adv
            + &recon_a * w.cycle
            + &ident_a * w.identity
            + &cam_a2a * w.cam;
        let loss = updates.scale(loss);
        let full = !nets.gen_a2b.config().light;
        let params_b2a = updates.parameters("genB2A.");
        let mut mlp_b2a = MlpGrad::new(&params_b2a, nets.gen_b2a.mlp_weight(), full);
        let (mut grads_b2a, grad_fakes) =
            backward(loss, &params_b2a, &[&fake_a2b, &fake_b2a], &mut mlp_b2a, &[&a2b2a, &a2a]);
        let [grad_fake_a2b, grad_fake_b2a] = <[Tensor; 2]>::try_from(grad_fakes).expect("two fakes' gradients");
        drop((a2b2a, a2a));

        let b2a2b = nets.gen_a2b.forward(&fake_b2a);
        let b2b = nets.gen_a2b.forward(real_b);
        let recon_b = cycle_loss(&b2a2b.image, real_b);
        let ident_b = identity_loss(&b2b.image, real_b);
        let (cam_a2b, cam_b2b) = (cam_loss(&a2b.cam_logit, true), cam_loss(&b2b.cam_logit, false));
        // The carried gradients come from a scaled loss already.
        let loss = updates.scale(&recon_b * w.cycle + &ident_b * w.identity + (&cam_a2b + &cam_b2b) * w.cam)
            + carry(&a2b.image, &grad_fake_a2b);
        let params_a2b = updates.parameters("genA2B.");
        let mut mlp_a2b = MlpGrad::new(&params_a2b, nets.gen_a2b.mlp_weight(), full);
        let (mut grads_a2b, more) = backward(loss, &params_a2b, &[&fake_b2a], &mut mlp_a2b, &[&b2a2b, &b2b, &a2b]);
        let grad_fake_b2a = grad_fake_b2a + &more[0];
        if let Some(mlp) = mlp_a2b {
            mlp.complete(&mut grads_a2b);
        }
        // genA2B is complete; the last pass does not read its weights, so it may move now.
        updates.push("genA2B.", grads_a2b)?;
        drop((b2a2b, b2b, a2b));

        let cam_b2a = cam_loss(&b2a.cam_logit, true);
        let loss = updates.scale(&cam_b2a * w.cam) + carry(&b2a.image, &grad_fake_b2a);
        let params_b2a = updates.parameters("genB2A.");
        accumulate(&mut grads_b2a, backward(loss, &params_b2a, &[], &mut mlp_b2a, &[&b2a]).0);
        if let Some(mlp) = mlp_b2a {
            mlp.complete(&mut grads_b2a);
        }
        updates.push("genB2A.", grads_b2a)?;
        updates.finish()?;

        Ok(GLosses {
            ga: ga.detach(),
            la: la.detach(),
            gb: gb.detach(),
            lb: lb.detach(),
            recon_a: recon_a.detach(),
            recon_b: recon_b.detach(),
            ident_a: ident_a.detach(),
            ident_b: ident_b.detach(),
            cam_a: (cam_b2a + cam_a2a).detach(),
            cam_b: (cam_a2b + cam_b2b).detach(),
        })
    }
}

/// The discriminator step's terms (detached).
struct DLosses {
    ga: DTerms,
    la: DTerms,
    gb: DTerms,
    lb: DTerms,
    gp_a: Tensor,
    gp_b: Tensor,
}

/// The generator step's terms (detached).
struct GLosses {
    ga: DTerms,
    la: DTerms,
    gb: DTerms,
    lb: DTerms,
    recon_a: Tensor,
    recon_b: Tensor,
    ident_a: Tensor,
    ident_b: Tensor,
    cam_a: Tensor,
    cam_b: Tensor,
}
