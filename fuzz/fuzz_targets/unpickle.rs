//! The restricted unpickler on arbitrary bytes: the first byte picks the allow-list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ugatit::io::pickle::{unpickle, unpickle_prefix, Options};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let opts = match sel % 3 {
        0 => Options::numpy(),
        1 => Options::torch(),
        _ => Options::torchscript(),
    };
    let _ = unpickle(rest, &opts);
    if let Ok((_, used)) = unpickle_prefix(rest, &opts) {
        assert!(used <= rest.len());
    }
});
