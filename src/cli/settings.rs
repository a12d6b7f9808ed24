//! The command-line flags of the training settings, generated from
//! [`crate::train_settings!`]: one group of flags per group of settings (`arch`, `step`, `device`,
//! `dist`, `run`), each a `Flags` struct that subcommands flatten. A flag's name, help text and default
//! (shown in `--help`) come from the setting's declaration; a flag left out is `None` and leaves
//! the configuration as the defaults and the `--config` file made it.

use crate::choice::Choice;
use crate::distributed::DistBackend;
use crate::precision::{MemoryFormat, Precision};
use crate::train::config::TrainConfig;
use crate::train::losses::GanType;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{value_parser, Arg};
use serde::Serialize;
use std::path::PathBuf;

/// How a setting's type is read from the command line.
pub trait FlagValue: Clone + Send + Sync + 'static {
    /// `arg` with this type's parser and value name.
    fn arg(arg: Arg) -> Arg;
}

impl FlagValue for i64 {
    fn arg(arg: Arg) -> Arg {
        arg.value_parser(value_parser!(i64)).value_name("N").allow_negative_numbers(true)
    }
}

impl FlagValue for u64 {
    fn arg(arg: Arg) -> Arg {
        arg.value_parser(value_parser!(u64)).value_name("N")
    }
}

impl FlagValue for f64 {
    fn arg(arg: Arg) -> Arg {
        arg.value_parser(value_parser!(f64)).value_name("X").allow_negative_numbers(true)
    }
}

/// `--flag` alone means true; `--flag true` and `--flag false` also work.
impl FlagValue for bool {
    fn arg(arg: Arg) -> Arg {
        arg.value_parser(value_parser!(bool)).value_name("BOOL").num_args(0..=1).default_missing_value("true")
    }
}

impl FlagValue for String {
    fn arg(arg: Arg) -> Arg {
        arg.value_parser(value_parser!(String))
    }
}

impl FlagValue for PathBuf {
    fn arg(arg: Arg) -> Arg {
        arg.value_parser(value_parser!(PathBuf)).value_name("PATH")
    }
}

/// Settings whose values are a [`Choice`].
macro_rules! choice_flag_values {
    ($($t:ty),*) => {$(
        impl FlagValue for $t {
            fn arg(arg: Arg) -> Arg {
                choice_arg::<$t>(arg)
            }
        }
    )*};
}

choice_flag_values!(GanType, Precision, MemoryFormat, DistBackend);

/// A parser of `T`'s names (listed in `--help`).
pub fn choice<T: Choice>() -> impl TypedValueParser<Value = T> {
    let names = PossibleValuesParser::new(T::ALL.iter().map(|v| v.name()));
    names.try_map(|name| T::from_name(&name).ok_or_else(|| format!("unknown value {name:?}")))
}

/// `arg` taking one of `T`'s names.
pub fn choice_arg<T: Choice>(arg: Arg) -> Arg {
    arg.value_parser(choice::<T>())
}

/// A setting's help: its doc comment on one line, then its default as TOML writes it.
fn help_text<T: Serialize>(doc: &[&str], default: &T) -> String {
    let text = doc.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ");
    let text = text.strip_suffix('.').unwrap_or(&text);
    let shown = match toml::Value::try_from(default) {
        Ok(toml::Value::String(s)) => s,
        Ok(v) => v.to_string(),
        Err(_) => return text.to_string(),
    };
    format!("{text} [default: {shown}]")
}

macro_rules! define_flag_groups {
    ($($group:ident { $($(#[doc = $doc:literal])* $field:ident: $ty:ty = $default:expr, $check:ident;)* })*) => {$(
        /// Flags of one group of [`crate::train_settings!`].
        pub mod $group {
            use super::*;
            use clap::{ArgMatches, Command, FromArgMatches};

            /// The flags given on the command line (`None`: not given).
            #[derive(Debug, Clone, Default)]
            pub struct Flags {
                $(pub $field: Option<$ty>,)*
            }

            impl Flags {
                /// The settings' keys, in declaration order.
                pub const KEYS: &'static [&'static str] = &[$(stringify!($field),)*];

                /// Overrides the settings of `config` that were given.
                pub fn apply(&self, config: &mut TrainConfig) {
                    $(if let Some(v) = &self.$field {
                        config.$field = v.clone();
                    })*
                }
            }

            impl FromArgMatches for Flags {
                fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
                    let mut flags = Self::default();
                    flags.update_from_arg_matches(matches)?;
                    Ok(flags)
                }

                fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
                    $(if let Some(v) = matches.try_get_one::<$ty>(stringify!($field)).map_err(|e| {
                        clap::Error::raw(clap::error::ErrorKind::ArgumentConflict, e.to_string())
                    })? {
                        self.$field = Some(v.clone());
                    })*
                    Ok(())
                }
            }

            impl clap::Args for Flags {
                fn augment_args(cmd: Command) -> Command {
                    let defaults = TrainConfig::default();
                    cmd $(.arg(<$ty as FlagValue>::arg(
                        Arg::new(stringify!($field))
                            .long(stringify!($field).replace('_', "-"))
                            .value_name(stringify!($field).to_uppercase())
                            .help(help_text(&[$($doc),*], &defaults.$field)),
                    )))*
                }

                fn augment_args_for_update(cmd: Command) -> Command {
                    Self::augment_args(cmd)
                }
            }
        }
    )*};
}

crate::train_settings!(define_flag_groups);
