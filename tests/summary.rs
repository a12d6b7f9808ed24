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
