//! Choosing where tensors live: `--device cpu` (default), `cuda` or `cuda:N`.

use anyhow::{bail, Result};
use tch::Device;

/// Parses a `--device` value, failing clearly when CUDA is asked for but libtorch sees no GPU.
pub fn parse(name: &str) -> Result<Device> {
    let device = match name {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        _ => match name.strip_prefix("cuda:").and_then(|i| i.parse::<usize>().ok()) {
            Some(i) => Device::Cuda(i),
            None => bail!("unknown device {name:?}: use cpu, cuda or cuda:N"),
        },
    };
    if let Device::Cuda(i) = device {
        let n = tch::Cuda::device_count() as usize;
        if n == 0 {
            bail!("--device {name}: libtorch finds no CUDA GPU (needs a CUDA build of torch/lib on LD_LIBRARY_PATH and a visible GPU)");
        }
        if i >= n {
            bail!("--device {name}: only {n} CUDA device(s) visible");
        }
    }
    Ok(device)
}
