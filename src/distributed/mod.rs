//! Data-parallel training on libtorch's c10d: the ranks meet at a TCPStore, run their collectives
//! on Gloo (CPU) or NCCL (CUDA), and each trains on its slice of every global batch.
//!
//! - [`World`]: who this process is, from torchrun's environment (`RANK`, `WORLD_SIZE`,
//!   `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`), which `srun` or
//!   [`launch`] (`ugatit train --nproc-per-node N`) can provide as well.
//! - [`Distributed`]: the joined group, with what the trainer needs of it: the settings check,
//!   the weights' broadcast from rank 0, gradient all-reduces in flat buckets ([`reduce`]), the
//!   loss average and the agreement to stop.
//! - [`faults`]: heartbeats in the store, so that a rank whose collective fails can say which rank
//!   died or stalled.
//!
//! Semantics (DDP's): `--batch-size` is per rank, and the global batch is `world × batch_size`.
//! Every loss term is a mean over the batch, so averaging the ranks' gradients gives the
//! gradient of the global batch: a run's result does not depend on how it is split, up to the
//! order of summation.

pub mod faults;
pub mod launch;
pub mod nccl;
pub mod reduce;

use crate::choice::Choice;
use crate::shim::c10d::{Group, Store};
use anyhow::{bail, Context, Result};
use faults::Heartbeat;
use std::sync::Arc;
use std::time::Duration;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// The collectives' library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DistBackend {
    /// NCCL for CUDA ranks, Gloo for CPU ranks.
    Auto,
    /// Gloo: CPU tensors over TCP.
    Gloo,
    /// NCCL: CUDA tensors over NVLink, PCIe or the network; one GPU per rank.
    Nccl,
}

impl Choice for DistBackend {
    const ALL: &'static [Self] = &[DistBackend::Auto, DistBackend::Gloo, DistBackend::Nccl];
}

/// This process's place in the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct World {
    pub rank: usize,
    pub size: usize,
    /// The rank among this machine's ranks: its GPU, on CUDA.
    pub local_rank: usize,
    pub local_size: usize,
    /// Where rank 0 serves the rendezvous store.
    pub master_addr: String,
    pub master_port: u16,
    /// Whether torchrun's agent serves the store (`TORCHELASTIC_USE_AGENT_STORE=True`), so that
    /// rank 0 joins it as a client instead of serving its own.
    pub agent_store: bool,
}

/// The variables torchrun sets for each worker.
pub const ENV: [&str; 6] = ["RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"];

impl World {
    /// The world torchrun's variables describe, `None` when neither `RANK` nor `WORLD_SIZE` is set.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`World::from_env`] over any source of variables.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let (rank, size) = (var("RANK"), var("WORLD_SIZE"));
        if rank.is_none() && size.is_none() {
            return Ok(None);
        }
        let number = |name: &str, value: Option<String>| -> Result<usize> {
            let Some(value) = value else {
                bail!(
                    "{name} is not set, but {} is: a distributed run needs all of {} (as torchrun sets them)",
                    if name == "RANK" { "WORLD_SIZE" } else { "RANK" },
                    ENV.join(", ")
                )
            };
            value.trim().parse().with_context(|| format!("{name}={value:?} is not a whole number"))
        };
        let rank = number("RANK", rank)?;
        let size = number("WORLD_SIZE", size)?;
        if size == 0 || rank >= size {
            bail!("RANK={rank} must be below WORLD_SIZE={size}");
        }
        let local_rank = var("LOCAL_RANK").map(|v| number("LOCAL_RANK", Some(v))).transpose()?.unwrap_or(rank);
        let local_size =
            var("LOCAL_WORLD_SIZE").map(|v| number("LOCAL_WORLD_SIZE", Some(v))).transpose()?.unwrap_or(size);
        if local_rank >= local_size {
            bail!("LOCAL_RANK={local_rank} must be below LOCAL_WORLD_SIZE={local_size}");
        }
        let master_addr = var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".to_string());
        let port = var("MASTER_PORT").context("MASTER_PORT is not set: the ranks need rank 0's port to meet at")?;
        let master_port = port.trim().parse().with_context(|| format!("MASTER_PORT={port:?} is not a port number"))?;
        let agent_store = var("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Some("True");
        Ok(Some(Self { rank, size, local_rank, local_size, master_addr, master_port, agent_store }))
    }

    /// The device of this rank: `cuda:LOCAL_RANK` when the run is on CUDA.
    pub fn device(&self, configured: Device) -> Device {
        match configured {
            Device::Cuda(_) => Device::Cuda(self.local_rank),
            other => other,
        }
    }

    /// Intra-op threads for a CPU rank: this machine's cores shared among its ranks.
    pub fn cpu_threads(&self) -> i32 {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        (cores / self.local_size).max(1) as i32
    }
}

/// A rank of a running job, joined to the others.
pub struct Distributed {
    pub world: World,
    store: Arc<Store>,
    group: Group,
    /// Limit of every rendezvous and collective.
    pub timeout: Duration,
    heartbeat: Heartbeat,
}

/// How long the ranks wait for rank 0's checkpoints, grids and KID evaluations, which the others
/// do not share, before calling it a stall.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(3600);

impl Distributed {
    /// Joins the job: the store at `MASTER_ADDR:MASTER_PORT` (served by rank 0), then the
    /// process group of `backend` for tensors on `device`.
    pub fn join(world: World, backend: DistBackend, device: Device, timeout: Duration) -> Result<Self> {
        let backend = match (backend, device) {
            (DistBackend::Auto, Device::Cuda(_)) => DistBackend::Nccl,
            (DistBackend::Auto, _) => DistBackend::Gloo,
            (chosen, _) => chosen,
        };
        if backend == DistBackend::Nccl && !device.is_cuda() {
            bail!("--dist-backend nccl needs CUDA ranks (--device cuda); CPU ranks use gloo");
        }
        let is_server = world.rank == 0 && !world.agent_store;
        let store = Store::connect(&world.master_addr, world.master_port, is_server, world.size, timeout)
            .with_context(|| rendezvous_hint(&world, timeout))?;
        let store = Arc::new(store);
        let heartbeat = Heartbeat::start(Arc::clone(&store), world.rank)?;
        let group = match backend {
            DistBackend::Nccl => nccl::group(&store, &world, timeout)?,
            _ => Group::gloo(&store, world.rank, world.size, timeout)?,
        };
        Ok(Self { world, store, group, timeout, heartbeat })
    }

    pub fn rank(&self) -> usize {
        self.world.rank
    }

    pub fn size(&self) -> usize {
        self.world.size
    }

    /// Whether this rank writes the run's files (rank 0).
    pub fn writes(&self) -> bool {
        self.world.rank == 0
    }

    /// Fails unless every rank's `value` of `what` equals rank 0's (`describe` lists the
    /// differences between two values for the message).
    pub fn check_same(&self, what: &str, value: &str, describe: impl Fn(&str, &str) -> String) -> Result<()> {
        let key = |rank: usize| format!("ugatit/{what}/{rank}");
        self.store.set(&key(self.rank()), value.as_bytes())?;
        let first = String::from_utf8_lossy(&self.store.get(&key(0))?).into_owned();
        if first != value {
            bail!(
                "rank {} disagrees with rank 0 on its {what}: {}; start every rank with the same settings",
                self.rank(),
                describe(&first, value)
            );
        }
        Ok(())
    }

    /// Copies rank 0's variables (weights and spectral-norm vectors) into every rank's.
    pub fn broadcast_variables(&self, vs: &VarStore) -> Result<()> {
        let mut vars: Vec<_> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        tch::no_grad(|| -> Result<()> {
            for (name, var) in &vars {
                self.group
                    .broadcast(var, 0, self.timeout)
                    .map_err(|e| self.failure(&format!("broadcasting {name}"), e))?;
            }
            Ok(())
        })
    }

    /// Replaces `t` by its mean over the ranks (waiting for it).
    pub fn mean_in_place(&self, t: &Tensor, what: &str) -> Result<()> {
        self.group
            .all_reduce_sum(t, self.timeout)
            .and_then(|w| w.wait(self.timeout))
            .map_err(|e| self.failure(what, e))?;
        tch::no_grad(|| {
            let _ = t.shallow_clone().g_div_scalar_(self.size() as f64);
        });
        Ok(())
    }

    /// Whether any rank's `flag` is set (every rank learns the same answer), waiting up to
    /// `timeout` for the slowest.
    pub fn any(&self, flag: bool, timeout: Duration, what: &str) -> Result<bool> {
        let t = Tensor::from_slice(&[f32::from(u8::from(flag))]);
        let t = if self.group_is_cuda() { t.to_device(Device::Cuda(self.world.local_rank)) } else { t };
        self.group.all_reduce_sum(&t, timeout).and_then(|w| w.wait(timeout)).map_err(|e| self.failure(what, e))?;
        Ok(t.double_value(&[0]) > 0.0)
    }

    /// The barrier after rank 0 wrote the files of a step: the other ranks, there first, wait up
    /// to [`WRITE_TIMEOUT`] for rank 0; rank 0, there last, waits only the collective timeout,
    /// so that a rank which stalled meanwhile is still found within `--dist-timeout`.
    pub fn wait_for_rank_0_files(&self) -> Result<()> {
        let timeout = if self.writes() { self.timeout } else { WRITE_TIMEOUT + self.timeout };
        self.any(false, timeout, "waiting for rank 0's files").map(drop)
    }

    /// Fails unless every rank holds exactly rank 0's variables: one checksum per variable,
    /// broadcast from rank 0 and compared bit for bit.
    pub fn check_identical(&self, vs: &VarStore, step: i64) -> Result<()> {
        let mut vars: Vec<_> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let sums: Vec<Tensor> =
            vars.iter().map(|(_, v)| v.to_kind(Kind::Double).square().sum(Kind::Double).reshape([1])).collect();
        let mine = Tensor::cat(&sums, 0);
        let theirs = mine.copy();
        self.group.broadcast(&theirs, 0, self.timeout).map_err(|e| self.failure("comparing the weights", e))?;
        let differ: Vec<&str> = vars
            .iter()
            .enumerate()
            .filter(|(i, _)| mine.double_value(&[*i as i64]).to_bits() != theirs.double_value(&[*i as i64]).to_bits())
            .map(|(_, (name, _))| name.as_str())
            .collect();
        if !differ.is_empty() {
            bail!("step {step}: rank {}'s variables drifted from rank 0's ({})", self.rank(), differ.join(", "));
        }
        Ok(())
    }

    fn group_is_cuda(&self) -> bool {
        self.group.is_nccl()
    }

    /// The group, for the gradient reductions.
    pub fn group(&self) -> &Group {
        &self.group
    }

    /// The error of a failed collective: what failed, which rank stopped or stalled (from the
    /// heartbeats), and the backend's own message.
    pub fn failure(&self, what: &str, error: anyhow::Error) -> anyhow::Error {
        let diagnosis = self.heartbeat.diagnose(self.size());
        error.context(format!("rank {}: {what} failed: {diagnosis}", self.rank()))
    }

    /// Publishes the step this rank is starting (read by the fault diagnosis of the others).
    pub fn starting(&self, step: i64) {
        self.heartbeat.starting(step);
    }
}

fn rendezvous_hint(world: &World, timeout: Duration) -> String {
    if world.rank == 0 && !world.agent_store {
        format!(
            "rank 0 could not serve the rendezvous at port {} or not every one of the {} ranks joined within {} s (is the port in use? pick another MASTER_PORT)",
            world.master_port,
            world.size,
            timeout.as_secs()
        )
    } else {
        format!(
            "rank {} could not join rank 0 at {}:{} within {} s (is rank 0 running, and MASTER_ADDR/MASTER_PORT the same on every rank?)",
            world.rank,
            world.master_addr,
            world.master_port,
            timeout.as_secs()
        )
    }
}
