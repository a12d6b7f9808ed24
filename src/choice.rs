//! Closed sets of named values: `--gan-type wgan-gp`, `--direction b2a`, `--preprocess tf-graph`.
//! A value's name is its variant's name in kebab case (`WganGp` → `wgan-gp`), as serde's
//! `rename_all = "kebab-case"` writes it in TOML, so flags, files and messages agree. The command
//! line builds its parsers (with the possible values in `--help`) from [`Choice::ALL`].

/// An enum whose values are named after their variants.
pub trait Choice: Copy + PartialEq + std::fmt::Debug + Send + Sync + 'static {
    /// Every value, in the order help texts list them.
    const ALL: &'static [Self];

    /// The value's name on the command line and in files: the variant in kebab case.
    fn name(self) -> String {
        let mut name = String::new();
        for (i, c) in format!("{self:?}").chars().enumerate() {
            if c.is_uppercase() && i > 0 {
                name.push('-');
            }
            name.push(c.to_ascii_lowercase());
        }
        name
    }

    /// The value called `name`, if any.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.name() == name)
    }

    /// All names, comma separated, for messages.
    fn names() -> String {
        Self::ALL.iter().map(|v| v.name()).collect::<Vec<_>>().join(", ")
    }
}
