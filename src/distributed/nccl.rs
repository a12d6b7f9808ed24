//! NCCL process groups, from the CUDA half of the shim ([`crate::shim::cuda`]).

use super::World;
use crate::shim::c10d::{Group, Store};
use crate::shim::cuda;
use anyhow::{Context, Result};
use std::ffi::{c_char, c_int, c_void};
use std::time::Duration;

type NcclNew = unsafe extern "C" fn(*mut c_void, c_int, c_int, c_int, i64, *mut *mut c_void) -> *mut c_char;

/// An NCCL group of the world's ranks, this rank on `cuda:LOCAL_RANK`.
pub fn group(store: &Store, world: &World, timeout: Duration) -> Result<Group> {
    let symbol = cuda::symbol(c"ugatit_nccl_new").context("--dist-backend nccl (gloo needs no CUDA shim)")?;
    // SAFETY: the symbol has csrc/cuda.cpp's signature.
    let create: NcclNew = unsafe { std::mem::transmute::<*mut c_void, NcclNew>(symbol) };
    let mut handle = std::ptr::null_mut();
    let millis = timeout.as_millis().min(i64::MAX as u128) as i64;
    // SAFETY: a live store handle, plain values, an out-pointer to a local.
    let message = unsafe {
        create(
            Group::store_handle(store),
            world.rank as c_int,
            world.size as c_int,
            world.local_rank as c_int,
            millis,
            &mut handle,
        )
    };
    crate::shim::check(message, &format!("starting NCCL on cuda:{}", world.local_rank))?;
    // SAFETY: a fresh handle from ugatit_nccl_new, owned by the group from now on.
    Ok(unsafe { Group::nccl_from_handle(handle) })
}
