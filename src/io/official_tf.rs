//! The authors' official TensorFlow checkpoints (taki0112/UGATIT) as U-GAT-IT networks: the two
//! generators of a tensor bundle ([`super::tf_bundle`]) under our names, in torch layouts, for
//! [`crate::model::TfGenerator`]. Only the generators' own variables are read from the data
//! file: the discriminators, the Adam slots (`…/Adam`, `…/Adam_1`) and the `beta*_power` scalars
//! are skipped (in the released model they are most of its 7.5 GB).
//!
//! `generator_B` (A→B) becomes `genA2B.`, `generator_A` becomes `genB2A.`; a variable
//! `generator_B/conv_0/conv2d/kernel` becomes `genA2B.conv_0.conv2d.kernel`. Layouts: convolution
//! kernels HWIO → OIHW, dense kernels `[in, out]` → `[out, in]`, and the full model's first dense
//! kernel has its input rows reordered from TF's NHWC flattening to NCHW.

use super::tf_bundle::Bundle;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use tch::Tensor;

/// Each official generator scope and the network it is.
pub const SCOPES: [(&str, &str); 2] = [("generator_B/", "genA2B"), ("generator_A/", "genB2A")];

/// The key of a variable every official generator has (how a converted file is recognised).
pub const MARKER: &str = "G_logit.conv2d.kernel";

/// The generators of `bundle`, keyed `<net>.<official name with '.'>`, in torch layouts.
pub fn generators(bundle: &Bundle) -> Result<BTreeMap<String, Tensor>> {
    let mut out = BTreeMap::new();
    for (scope, net) in SCOPES {
        let names = bundle.entries().keys().filter(|n| n.starts_with(scope));
        for name in names.filter(|n| !n.ends_with("/Adam") && !n.ends_with("/Adam_1")) {
            let key = name[scope.len()..].replace('/', ".");
            let t = bundle.tensor(name)?;
            let t = torch_layout(&key, t).with_context(|| format!("variable {name}"))?;
            out.insert(format!("{net}.{key}"), t);
        }
    }
    if out.is_empty() {
        let first: Vec<&str> = bundle.entries().keys().take(5).map(String::as_str).collect();
        bail!(
            "a TensorFlow checkpoint without generator_A/ or generator_B/ variables: not an official U-GAT-IT checkpoint (first names: {})",
            first.join(", ")
        );
    }
    Ok(out)
}

/// `t`, stored as TF stores the variable `key`, in the layout our model uses.
fn torch_layout(key: &str, t: Tensor) -> Result<Tensor> {
    let size = t.size();
    Ok(match size.len() {
        4 => t.f_permute([3, 2, 0, 1])?.f_contiguous()?,
        2 if key == "MLP.linear_0.dense.kernel" => nchw_rows(&t)?.f_tr()?.f_contiguous()?,
        2 => t.f_tr()?.f_contiguous()?,
        _ => t,
    })
}

/// The full model's first dense kernel `[H·W·C, C]`, rows reordered from NHWC to NCHW (the light
/// model's `[C, C]` is left as it is).
fn nchw_rows(kernel: &Tensor) -> Result<Tensor> {
    let (rows, c) = (kernel.size()[0], kernel.size()[1]);
    if rows == c {
        return Ok(kernel.shallow_clone());
    }
    let side = ((rows / c) as f64).sqrt().round() as i64;
    if c == 0 || side * side * c != rows {
        bail!("MLP.linear_0 kernel of shape [{rows}, {c}] is neither light ([C, C]) nor full ([H·W·C, C])");
    }
    Ok(kernel.f_view([side, side, c, c])?.f_permute([2, 0, 1, 3])?.f_reshape([rows, c])?)
}
