//! Parameter counts at the paper's configuration must equal UGATIT-pytorch's.

use std::process::Command;
use ugatit::model::generator::Config;
use ugatit::summary::parameter_counts;

const LIGHT_G: i64 = 10_589_888;
const FULL_G: i64 = 278_959_808;
const GLOBAL_D: i64 = 53_130_176;
const LOCAL_D: i64 = 3_290_560;

fn expected(g: i64) -> Vec<(&'static str, i64)> {
    vec![("genA2B", g), ("genB2A", g), ("disGA", GLOBAL_D), ("disGB", GLOBAL_D), ("disLA", LOCAL_D), ("disLB", LOCAL_D)]
}

#[test]
fn light_counts_match_reference() {
    let counts = parameter_counts(ugatit::model::ugatit::Config::new(Config { light: true, ..Config::default() }));
    assert_eq!(counts, expected(LIGHT_G));
}

#[test]
fn full_counts_match_reference() {
    assert_eq!(parameter_counts(ugatit::model::ugatit::Config::default()), expected(FULL_G));
}

#[test]
fn summary_command_prints_reference_counts() {
    let out = Command::new(env!("CARGO_BIN_EXE_ugatit")).args(["summary", "--light"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let want: Vec<String> = expected(LIGHT_G).iter().map(|(n, c)| format!("{n} {c}")).collect();
    assert_eq!(lines, want);
}

#[test]
fn summary_rejects_bad_flag_value() {
    let out = Command::new(env!("CARGO_BIN_EXE_ugatit")).args(["summary", "--n-res", "abc"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--n-res"));
}

/// The parameter counts computed from the layer shapes (used to refuse sizes that cannot fit
/// before allocating) equal the built networks' counts.
#[test]
fn shape_counts_equal_built_counts() {
    use ugatit::model::discriminator;
    for g in [
        Config { ngf: 3, n_res: 2, img_size: 32, light: true },
        Config { ngf: 5, n_res: 1, img_size: 48, light: false },
        Config { ngf: 8, n_res: 4, img_size: 64, light: false },
    ] {
        for n_layers in [5, 6, 7] {
            let config = ugatit::model::ugatit::Config {
                generator: g,
                global_dis: discriminator::Config { ndf: g.ngf, n_layers },
                local_dis: discriminator::Config { ndf: g.ngf, n_layers: n_layers - 2 },
            };
            let built: Vec<f64> = parameter_counts(config).into_iter().map(|(_, n)| n as f64).collect();
            assert_eq!(built, config.parameter_counts().to_vec(), "{config:?}");
        }
    }
}

#[test]
fn sizes_that_cannot_fit_are_refused_before_allocating() {
    let out = Command::new(env!("CARGO_BIN_EXE_ugatit")).args(["summary", "--ch", "100000"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--ch 100000") && stderr.contains("GB of memory available"), "{stderr}");
}
