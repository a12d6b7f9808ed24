//! Dynamic loss scaling (`--precision fp16`'s), checked on the CPU in fp32, where scaling by a
//! power of two is exact (fp16 itself runs on CUDA only: `tests/precision.rs`):
//!
//! - the scaler's rules, as `torch.cuda.amp.GradScaler`'s defaults define them;
//! - a trainer with scalers computes what one without computes: scaling, unscaling and the
//!   deferred all-or-nothing updates change no number;
//! - a scale that overflows skips both updates (weights, moments and step counts unchanged) and
//!   halves the scales;
//! - the scales survive a checkpoint.

use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};
use ugatit::model::UGATIT;
use ugatit::train::checkpoint;
use ugatit::train::config::TrainConfig;
use ugatit::train::optim::AdamConfig;
use ugatit::train::scaler::{LossScaler, BACKOFF, GROWTH, GROWTH_INTERVAL, INIT_SCALE};
use ugatit::train::step::{LossWeights, PenaltyNoise, Trainer};

#[test]
fn the_scale_backs_off_on_overflow_and_grows_after_2000_finite_updates() {
    assert_eq!((INIT_SCALE, GROWTH, BACKOFF, GROWTH_INTERVAL), (65536.0, 2.0, 0.5, 2000));
    let mut s = LossScaler::default();
    s.update(false);
    assert_eq!(s, LossScaler { scale: 32768.0, good_steps: 0 });
    for _ in 0..GROWTH_INTERVAL - 1 {
        s.update(true);
    }
    assert_eq!(s, LossScaler { scale: 32768.0, good_steps: 1999 });
    s.update(true);
    assert_eq!(s, LossScaler { scale: 65536.0, good_steps: 0 });
    s.update(true);
    s.update(false);
    assert_eq!(s, LossScaler { scale: 32768.0, good_steps: 0 }, "an overflow restarts the count");
}

#[test]
fn unscaling_divides_and_finds_infinities_and_nans() {
    let s = LossScaler { scale: 4.0, good_steps: 0 };
    let mut grads = vec![Tensor::from_slice(&[4.0f32, -8.0]), Tensor::new(), Tensor::from_slice(&[2.0f32])];
    assert!(s.unscale(&mut grads));
    assert_eq!(Vec::<f32>::try_from(&grads[0]).unwrap(), [1.0, -2.0]);
    assert_eq!(Vec::<f32>::try_from(&grads[2]).unwrap(), [0.5]);
    for bad in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
        let mut grads = vec![Tensor::from_slice(&[1.0f32]), Tensor::from_slice(&[0.0f32, bad])];
        assert!(!s.unscale(&mut grads), "{bad} was not noticed");
    }
    assert!(s.unscale(&mut []), "no gradients are all finite");
}

#[test]
fn scales_are_read_back_from_metadata_and_bad_ones_named() {
    let s = LossScaler { scale: 1024.0, good_steps: 17 };
    let meta: BTreeMap<String, String> = s.metadata("optimG").into_iter().collect();
    assert_eq!(LossScaler::from_metadata(&meta, "optimG").unwrap(), s);
    assert_eq!(LossScaler::from_metadata(&meta, "optimD").unwrap(), LossScaler::default(), "absent: fresh");
    for (scale, good) in [("x", "1"), ("0", "1"), ("inf", "1"), ("2", "-1")] {
        let meta = BTreeMap::from([
            ("optimG_loss_scale".to_string(), scale.to_string()),
            ("optimG_loss_scale_good_steps".to_string(), good.to_string()),
        ]);
        let err = LossScaler::from_metadata(&meta, "optimG").unwrap_err().to_string();
        assert!(err.contains("optimG_loss_scale"), "{scale}, {good}: {err}");
    }
}

fn tiny() -> TrainConfig {
    TrainConfig { light: true, img_size: 32, ch: 4, n_res: 1, n_dis: 4, ..TrainConfig::default() }
}

fn trainer(init: &UGATIT, scalers: Option<[LossScaler; 2]>) -> Trainer {
    let mut nets = UGATIT::new(tiny().model_config().unwrap(), Device::Cpu);
    nets.vs.copy(&init.vs).unwrap();
    let mut trainer = Trainer::new(nets, tiny().gan_type, LossWeights::default(), AdamConfig::default());
    trainer.scalers = scalers;
    trainer
}

/// One step on batches made from `seed` without the global generator, which the tests running
/// beside this one draw from.
fn step(trainer: &mut Trainer, seed: i64) -> Vec<f64> {
    let image = |phase: f64| {
        let t = Tensor::arange(3 * 32 * 32, (Kind::Float, Device::Cpu));
        (t * 0.731 + phase).sin().view([1, 3, 32, 32])
    };
    let (a, b) = (image(seed as f64), image(seed as f64 + 0.5));
    trainer.step(&a, &b, &PenaltyNoise::default(), 1e-4).unwrap().values().unwrap().into_values()
}

/// Every variable and optimiser moment, by name.
fn state(trainer: &Trainer) -> BTreeMap<String, Tensor> {
    let mut all: BTreeMap<String, Tensor> =
        trainer.nets.vs.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect();
    for (k, v) in trainer.opt_g.state("optimG.").into_iter().chain(trainer.opt_d.state("optimD.")) {
        all.insert(k, v.copy());
    }
    all
}

#[test]
fn a_scaled_trainer_computes_what_an_unscaled_one_does() {
    tch::manual_seed(7);
    let init = UGATIT::new(tiny().model_config().unwrap(), Device::Cpu);
    let mut plain = trainer(&init, None);
    let mut scaled = trainer(&init, Some(Default::default()));
    for seed in 100..103 {
        assert_eq!(step(&mut plain, seed), step(&mut scaled, seed), "loss terms of step {seed}");
    }
    let (a, b) = (state(&plain), state(&scaled));
    for (name, t) in &a {
        assert!(t.equal(&b[name]), "{name} differs with loss scaling");
    }
    assert_eq!((scaled.opt_g.step, scaled.opt_d.step), (3, 3));
    assert_eq!(scaled.scalers.unwrap(), [LossScaler { scale: INIT_SCALE, good_steps: 3 }; 2]);
}

#[test]
fn an_overflowing_scale_skips_both_updates_and_backs_off() {
    tch::manual_seed(7);
    let init = UGATIT::new(tiny().model_config().unwrap(), Device::Cpu);
    // Beyond fp32's range: every scaled loss, and so every gradient, is infinite or NaN on any
    // machine (1e38 left the discriminators' small loss finite on CI's CPU).
    let huge = LossScaler { scale: 1e39, good_steps: 5 };
    let mut trainer = trainer(&init, Some([huge; 2]));
    let before = state(&trainer);
    let losses = step(&mut trainer, 100);
    assert!(losses.iter().all(|v| v.is_finite()), "the reported (unscaled) losses stay finite");
    let after = state(&trainer);
    for (name, t) in &before {
        // The spectral norms' power iteration runs in the forward passes, update or not.
        if !name.ends_with("_u") && !name.ends_with("_v") {
            assert!(t.equal(&after[name]), "{name} moved in a skipped step");
        }
    }
    assert_eq!((trainer.opt_g.step, trainer.opt_d.step), (0, 0), "skipped updates are not counted");
    assert_eq!(trainer.scalers.unwrap(), [LossScaler { scale: 5e38, good_steps: 0 }; 2]);
}

#[test]
fn the_scales_survive_a_checkpoint() {
    tch::manual_seed(7);
    let init = UGATIT::new(tiny().model_config().unwrap(), Device::Cpu);
    let saved = [LossScaler { scale: 512.0, good_steps: 3 }, LossScaler { scale: 16.0, good_steps: 1999 }];
    let source = trainer(&init, Some(saved));
    let path = std::env::temp_dir().join(format!("ugatit-loss-scale-{}.safetensors", std::process::id()));
    checkpoint::save(&path, &source, 4, &tiny()).unwrap();
    let mut resumed = trainer(&init, Some(Default::default()));
    assert_eq!(checkpoint::load(&path, &mut resumed).unwrap(), 4);
    assert_eq!(resumed.scalers.unwrap(), saved);
    // An fp32 checkpoint resumed in fp16 starts from the initial scales.
    checkpoint::save(&path, &trainer(&init, None), 4, &tiny()).unwrap();
    let mut resumed = trainer(&init, Some(saved));
    checkpoint::load(&path, &mut resumed).unwrap();
    assert_eq!(resumed.scalers.unwrap(), [LossScaler::default(); 2]);
    let _ = std::fs::remove_file(path);
}
