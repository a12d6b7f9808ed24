//! Every `ugatit train` flag reaches the run's effective configuration (what `config.toml` holds).
//! The flags are enumerated from clap's own description of the command, so a setting added
//! without a flag, or a flag that is parsed but never applied, fails here.

use clap::CommandFactory;
use clap::Parser;
use std::path::Path;
use std::process::Command;
use ugatit::cli::{Cli, Command as Sub};
use ugatit::train::config::TrainConfig;

/// Flags of `train` that are not settings of the run.
const NOT_SETTINGS: &[&str] = &["config", "resume", "resume_from", "overwrite", "help"];

/// A value other than `default` for the flag `arg`, as the command line gives it, and as TOML
/// then holds it.
fn other_value(arg: &clap::Arg, default: &toml::Value) -> (String, toml::Value) {
    use toml::Value as V;
    let choices: Vec<String> = arg.get_possible_values().iter().map(|v| v.get_name().to_string()).collect();
    match default {
        V::Boolean(b) => ((!b).to_string(), V::Boolean(!b)),
        V::Integer(i) => ((i + 4).to_string(), V::Integer(i + 4)),
        V::Float(f) => ((f * 2.0 + 0.5).to_string(), V::Float(f * 2.0 + 0.5)),
        V::String(s) => {
            let other = choices.into_iter().find(|c| c != s).unwrap_or_else(|| format!("{s}-other"));
            (other.clone(), V::String(other))
        }
        other => panic!("flag --{}: no rule for a default of {other:?}", arg.get_id()),
    }
}

fn resolve(args: &[&str]) -> toml::Table {
    let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let Sub::Train(train) = cli.command else { panic!("not the train command") };
    let config = train.resolve().unwrap_or_else(|e| panic!("{args:?}: {e:#}"));
    toml::from_str(&config.to_toml()).unwrap()
}

#[test]
fn every_train_flag_reaches_the_configuration() {
    let command = Cli::command();
    let train = command.find_subcommand("train").expect("a train subcommand");
    let defaults: toml::Table = toml::from_str(&TrainConfig::default().to_toml()).unwrap();
    let mut seen = Vec::new();
    for arg in train.get_arguments() {
        let key = arg.get_id().as_str();
        if NOT_SETTINGS.contains(&key) {
            continue;
        }
        let default = defaults.get(key).unwrap_or_else(|| panic!("flag --{key} is not a key of config.toml"));
        let (value, expected) = other_value(arg, default);
        let flag = format!("--{}", arg.get_long().expect("settings are long flags"));
        let mut args = vec!["ugatit", "train", &flag, &value];
        if key != "dataset" {
            args.extend(["--dataset", "elsewhere"]);
        }
        let config = resolve(&args);
        assert_eq!(config[key], expected, "{flag} {value} did not reach the configuration");
        seen.push(key.to_string());
    }
    let mut keys: Vec<String> = TrainConfig::KEYS.iter().map(|k| k.to_string()).collect();
    keys.sort();
    seen.sort();
    assert_eq!(seen, keys, "every setting has a train flag and every flag a setting");
}

#[test]
fn flags_override_the_config_file() {
    let dir = std::env::temp_dir().join(format!("ugatit-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("run.toml");
    std::fs::write(&file, "lr = 0.5\nch = 8\ntf32 = true\n").unwrap();
    let file = file.to_string_lossy().into_owned();
    let config = resolve(&["ugatit", "train", "--config", &file, "--ch", "16", "--tf32", "false"]);
    assert_eq!(config["lr"], toml::Value::Float(0.5), "the file's value stays");
    assert_eq!(config["ch"], toml::Value::Integer(16), "the flag wins");
    assert_eq!(config["tf32"], toml::Value::Boolean(false));
    let _ = std::fs::remove_dir_all(dir);
}

/// The CUDA switches through the binary on CPU: a one-step run writes them into config.toml.
#[test]
fn cuda_switches_reach_config_toml() {
    let results = std::env::temp_dir().join(format!("ugatit-flags-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&results);
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sample");
    let out = Command::new(env!("CARGO_BIN_EXE_ugatit"))
        .arg("train")
        .arg("--dataset")
        .arg(&sample)
        .arg("--result-dir")
        .arg(&results)
        .args(["--iteration", "1", "--img-size", "32", "--ch", "2", "--n-res", "1", "--n-dis", "4", "--light"])
        .args(["--tf32", "--cudnn-benchmark", "true", "--lr", "0.0003"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(results.join("sample/config.toml")).unwrap();
    let config: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(config["tf32"], toml::Value::Boolean(true), "{text}");
    assert_eq!(config["cudnn_benchmark"], toml::Value::Boolean(true), "{text}");
    assert_eq!(config["lr"], toml::Value::Float(0.0003), "{text}");
    let _ = std::fs::remove_dir_all(results);
}

/// Flag names and TOML strings of the loss types are one set of names.
#[test]
fn gan_type_names_match_their_toml_strings() {
    use ugatit::choice::Choice;
    use ugatit::train::losses::GanType;
    for &gan in GanType::ALL {
        let config = TrainConfig { gan_type: gan, ..TrainConfig::default() };
        let table: toml::Table = toml::from_str(&config.to_toml()).unwrap();
        assert_eq!(table["gan_type"].as_str(), Some(gan.name().as_str()));
        assert_eq!(GanType::from_name(&gan.name()), Some(gan));
    }
}
