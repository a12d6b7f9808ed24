//! KID, mean KID and FID against the numpy oracle of tools/oracle/make_metric_fixtures.py
//! (written from tfgan's formulas), on fixed random pool3-like feature matrices. Needs no
//! Inception weights.

mod common;

use common::Fixture;
use tch::{Kind, Tensor};
use ugatit::metrics::fid::fid;
use ugatit::metrics::kid::{block_bounds, kid, mean_kid, Kid, GM_MAX_BLOCK_SIZE};

const TOL: f64 = 1e-6;

fn fixture() -> Fixture {
    Fixture::load("metrics/kid_fid.safetensors")
}

fn close(name: &str, ours: f64, want: f64) {
    let err = (ours - want).abs() / want.abs().max(1.0);
    assert!(err <= TOL, "{name}: ours {ours:.12e} vs oracle {want:.12e} (scaled error {err:.2e})");
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.to_kind(Kind::Double)).unwrap()
}

#[test]
fn kid_matches_oracle() {
    let f = fixture();
    let cases: Vec<String> = serde_json::from_str(&f.meta["cases"]).unwrap();
    let mut n = 0;
    for case in cases.iter().filter(|c| c.starts_with("kid.")) {
        let parts: Vec<&str> = case.split('.').collect();
        let (real, fake, block) = (parts[1], parts[2], parts[3].parse::<usize>().unwrap());
        let want = values(f.get(case));
        let got = kid(f.get(&format!("feat.{real}")), f.get(&format!("feat.{fake}")), block).unwrap();
        close(&format!("{case} mean"), got.mean, want[0]);
        if want[1].is_nan() {
            assert!(got.std.is_nan(), "{case}: one block gives a NaN std, got {}", got.std);
        } else {
            close(&format!("{case} std"), got.std, want[1]);
        }
        n += 1;
    }
    assert_eq!(n, 9);
}

#[test]
fn mean_kid_matches_oracle() {
    let f = fixture();
    let want = values(f.get("mean_kid.b.a.c"));
    let fake = f.get("feat.c");
    let target = kid(f.get("feat.b"), fake, GM_MAX_BLOCK_SIZE).unwrap();
    let source = kid(f.get("feat.a"), fake, GM_MAX_BLOCK_SIZE).unwrap();
    let got = mean_kid(target, source);
    close("mean_kid mean", got.mean, want[0]);
    close("mean_kid std", got.std, want[1]);
}

#[test]
fn fid_matches_oracle() {
    let f = fixture();
    for case in ["fid.a.b", "fid.b.a", "fid.a.c", "fid.c.b", "fid.a.a"] {
        let parts: Vec<&str> = case.split('.').collect();
        let want = values(f.get(case))[0];
        let got = fid(f.get(&format!("feat.{}", parts[1])), f.get(&format!("feat.{}", parts[2]))).unwrap();
        close(case, got, want);
    }
}

#[test]
fn fid_of_a_set_with_itself_is_zero() {
    let f = fixture();
    let a = f.get("feat.c");
    let value = fid(a, a).unwrap();
    assert!(value.abs() < 1e-8, "FID(c, c) = {value:e}");
}

#[test]
fn blocks_split_like_tfgan() {
    assert_eq!(block_bounds(100, 10), (0..=100).step_by(10).collect::<Vec<_>>());
    // 95 in 10 blocks: five of 9 first, then five of 10.
    assert_eq!(block_bounds(95, 10), [0, 9, 18, 27, 36, 45, 55, 65, 75, 85, 95]);
    assert_eq!(block_bounds(37, 10), [0, 3, 6, 9, 13, 17, 21, 25, 29, 33, 37]);
    assert_eq!(block_bounds(5, 1), [0, 5]);
}

#[test]
fn too_few_samples_per_block_is_an_error() {
    let a = Tensor::rand([100, 8], (Kind::Float, tch::Device::Cpu));
    let b = Tensor::rand([15, 8], (Kind::Float, tch::Device::Cpu));
    let msg = format!("{:#}", kid(&a, &b, 10).unwrap_err());
    assert!(msg.contains("at least 2 images of each set in every block"), "{msg}");
    assert!(msg.contains("100 real and 15 generated images make 10 blocks of at most 10"), "{msg}");
    assert!(kid(&a, &b, 100).is_ok());
    let c = Tensor::rand([1, 8], (Kind::Float, tch::Device::Cpu));
    assert!(fid(&a, &c).is_err());
}

#[test]
fn mismatched_widths_are_an_error() {
    let a = Tensor::rand([20, 8], (Kind::Float, tch::Device::Cpu));
    let b = Tensor::rand([20, 9], (Kind::Float, tch::Device::Cpu));
    assert!(format!("{:#}", kid(&a, &b, 10).unwrap_err()).contains("widths differ"));
    assert!(fid(&a, &b).is_err());
    assert!(kid(&a.view([20, 8, 1]), &a, 10).is_err());
}

#[test]
fn mean_kid_weights_source_by_098() {
    let got = mean_kid(Kid { mean: 1.0, std: 0.5 }, Kid { mean: 3.0, std: 1.5 });
    close("mean", got.mean, (0.02 + 0.98 * 3.0) / 2.0);
    close("std", got.std, (0.02 * 0.5 + 0.98 * 1.5) / 2.0);
}

#[test]
fn covariance_and_sample_space_routes_agree() {
    // `fid` works in sample space when n < d; the covariance route (d×d eigen-decompositions)
    // must give the same value. 256 of the 2048 features keep this quick.
    use ugatit::metrics::fid::{frechet_distance, mean_cov};
    let f = fixture();
    for (x, y) in [("a", "b"), ("c", "a")] {
        let a = f.get(&format!("feat.{x}")).narrow(1, 0, 256).to_kind(Kind::Double);
        let b = f.get(&format!("feat.{y}")).narrow(1, 0, 256).to_kind(Kind::Double);
        let (m1, s1) = mean_cov(&a).unwrap();
        let (m2, s2) = mean_cov(&b).unwrap();
        let cov_route = frechet_distance(&m1, &s1, &m2, &s2).unwrap();
        close(&format!("{x}.{y}"), fid(&a, &b).unwrap(), cov_route);
    }
}
