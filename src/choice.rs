//! Closed sets of named values: `--gan-type lsgan`, `--direction b2a`, `--preprocess gm`. Each
//! library enum lists its values and names once here; the command line builds its parsers (with
//! the possible values in `--help`) and TOML its strings from the same names.

/// An enum whose values have fixed lower-case names.
pub trait Choice: Copy + PartialEq + Send + Sync + 'static {
    /// Every value, in the order help texts list them.
    const ALL: &'static [Self];

    /// The value's name on the command line and in files.
    fn name(self) -> &'static str;

    /// The value called `name`, if any.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.name() == name)
    }

    /// All names, comma separated, for messages.
    fn names() -> String {
        Self::ALL.iter().map(|v| v.name()).collect::<Vec<_>>().join(", ")
    }
}
