//! libtorch's c10d through `csrc/c10d.cpp`: the TCPStore that ranks meet at, process groups
//! (Gloo here; NCCL from the CUDA half, `src/distributed/nccl.rs`) and the collectives the
//! distributed trainer runs on them. Every failing call returns the C++ exception's message.

use super::check;
use anyhow::Result;
use std::ffi::{c_char, c_int, c_void, CString};
use std::time::Duration;
use tch::Tensor;

type CTensor = torch_sys::C_tensor;

extern "C" {
    fn ugatit_free_message(message: *mut c_char);
    fn ugatit_store_new(
        host: *const c_char,
        port: c_int,
        is_server: bool,
        world: c_int,
        timeout_ms: i64,
        out: *mut *mut c_void,
    ) -> *mut c_char;
    fn ugatit_store_free(store: *mut c_void);
    fn ugatit_store_set(store: *mut c_void, key: *const c_char, data: *const u8, len: usize) -> *mut c_char;
    fn ugatit_store_get(store: *mut c_void, key: *const c_char, data: *mut *mut u8, len: *mut usize) -> *mut c_char;
    fn ugatit_store_add(store: *mut c_void, key: *const c_char, delta: i64, value: *mut i64) -> *mut c_char;
    fn ugatit_store_check(store: *mut c_void, key: *const c_char, present: *mut bool) -> *mut c_char;
    fn ugatit_gloo_new(
        store: *mut c_void,
        rank: c_int,
        size: c_int,
        timeout_ms: i64,
        out: *mut *mut c_void,
    ) -> *mut c_char;
    fn ugatit_group_free(group: *mut c_void);
    fn ugatit_allreduce_start(
        group: *mut c_void,
        t: *const CTensor,
        timeout_ms: i64,
        work: *mut *mut c_void,
    ) -> *mut c_char;
    fn ugatit_work_wait(work: *mut c_void, timeout_ms: i64) -> *mut c_char;
    fn ugatit_work_free(work: *mut c_void);
    fn ugatit_broadcast(group: *mut c_void, t: *const CTensor, root: c_int, timeout_ms: i64) -> *mut c_char;
}

fn millis(timeout: Duration) -> i64 {
    timeout.as_millis().min(i64::MAX as u128) as i64
}

fn c_string(text: &str) -> Result<CString> {
    Ok(CString::new(text)?)
}

/// A `c10d::TCPStore`: a key-value server in one process (rank 0) that every rank connects to.
pub struct Store {
    handle: *mut c_void,
}

// SAFETY: TCPStore serialises its client's operations with its own mutex.
unsafe impl Send for Store {}
unsafe impl Sync for Store {}

impl Store {
    /// The server at `port` on this host (`is_server`, waiting until `world` ranks have joined)
    /// or a client of `host:port`; either gives up after `timeout`.
    pub fn connect(host: &str, port: u16, is_server: bool, world: usize, timeout: Duration) -> Result<Self> {
        let host = c_string(host)?;
        let mut handle = std::ptr::null_mut();
        // SAFETY: valid C string, plain values and an out-pointer to a local.
        check(
            unsafe {
                ugatit_store_new(host.as_ptr(), port.into(), is_server, world as c_int, millis(timeout), &mut handle)
            },
            "the rendezvous store",
        )?;
        Ok(Self { handle })
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        let key = c_string(key)?;
        // SAFETY: the handle is live; the slice is valid for `len` bytes.
        check(unsafe { ugatit_store_set(self.handle, key.as_ptr(), value.as_ptr(), value.len()) }, "the store")
    }

    /// The value of `key`, waiting for another rank to set it up to the store's timeout.
    pub fn get(&self, key: &str) -> Result<Vec<u8>> {
        let name = c_string(key)?;
        let (mut data, mut len) = (std::ptr::null_mut(), 0usize);
        // SAFETY: the handle is live; on success `data` is malloc'ed with `len` bytes, freed below.
        check(unsafe { ugatit_store_get(self.handle, name.as_ptr(), &mut data, &mut len) }, "the store")?;
        let value = unsafe { std::slice::from_raw_parts(data, len) }.to_vec();
        unsafe { ugatit_free_message(data.cast()) };
        Ok(value)
    }

    /// Adds `delta` to the counter `key` (which starts at 0) and returns its new value.
    pub fn add(&self, key: &str, delta: i64) -> Result<i64> {
        let key = c_string(key)?;
        let mut value = 0;
        // SAFETY: the handle is live; out-pointer to a local.
        check(unsafe { ugatit_store_add(self.handle, key.as_ptr(), delta, &mut value) }, "the store")?;
        Ok(value)
    }

    /// Whether `key` is set, without waiting.
    pub fn contains(&self, key: &str) -> Result<bool> {
        let key = c_string(key)?;
        let mut present = false;
        // SAFETY: the handle is live; out-pointer to a local.
        check(unsafe { ugatit_store_check(self.handle, key.as_ptr(), &mut present) }, "the store")?;
        Ok(present)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: created by ugatit_store_new, released once.
        unsafe { ugatit_store_free(self.handle) }
    }
}

/// A c10d process group (`c10d::Backend`): the ranks' collectives, in the order every rank calls them.
pub struct Group {
    handle: *mut c_void,
    nccl: bool,
}

impl Group {
    /// A Gloo group of `size` ranks over `store`, on the interface `GLOO_SOCKET_IFNAME` names or
    /// the one this host's name resolves to, as torch.distributed picks it.
    pub fn gloo(store: &Store, rank: usize, size: usize, timeout: Duration) -> Result<Self> {
        let mut handle = std::ptr::null_mut();
        // SAFETY: a live store handle, plain values, an out-pointer to a local.
        check(
            unsafe { ugatit_gloo_new(store.handle, rank as c_int, size as c_int, millis(timeout), &mut handle) },
            "starting Gloo",
        )?;
        Ok(Self { handle, nccl: false })
    }

    /// An NCCL group from the handle the CUDA half created (`UgatitGroup*`).
    ///
    /// # Safety
    /// `handle` must come from `ugatit_nccl_new` and not be owned elsewhere.
    pub unsafe fn nccl_from_handle(handle: *mut c_void) -> Self {
        Self { handle, nccl: true }
    }

    /// Whether the group is NCCL's (its tensors live on the GPU).
    pub fn is_nccl(&self) -> bool {
        self.nccl
    }

    /// The store's handle, for the CUDA half's group constructor.
    pub fn store_handle(store: &Store) -> *mut c_void {
        store.handle
    }

    /// Starts summing `t` over all ranks in place; [`Work::wait`] completes it.
    pub fn all_reduce_sum(&self, t: &Tensor, timeout: Duration) -> Result<Work> {
        let mut work = std::ptr::null_mut();
        // SAFETY: live handles; `t` outlives the work because Work keeps a shallow copy.
        check(unsafe { ugatit_allreduce_start(self.handle, t.as_ptr(), millis(timeout), &mut work) }, "all-reduce")?;
        Ok(Work { handle: work, _tensor: t.shallow_clone() })
    }

    /// Copies rank `root`'s `t` into every rank's `t` (waiting for it).
    pub fn broadcast(&self, t: &Tensor, root: usize, timeout: Duration) -> Result<()> {
        // SAFETY: live handles.
        check(unsafe { ugatit_broadcast(self.handle, t.as_ptr(), root as c_int, millis(timeout)) }, "broadcast")
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: created by a group constructor, released once.
        unsafe { ugatit_group_free(self.handle) }
    }
}

/// A collective in flight.
#[must_use = "a collective is complete only once waited for"]
pub struct Work {
    handle: *mut c_void,
    /// The tensor the collective writes, kept alive until it is done.
    _tensor: Tensor,
}

impl Work {
    /// Waits for the collective, up to `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Result<()> {
        let handle = std::mem::replace(&mut self.handle, std::ptr::null_mut());
        // SAFETY: the handle came from a collective start; wait releases it.
        check(unsafe { ugatit_work_wait(handle, millis(timeout)) }, "waiting for a collective")
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        if !self.handle.is_null() {
            // SAFETY: not yet released by wait.
            unsafe { ugatit_work_free(self.handle) }
        }
    }
}
