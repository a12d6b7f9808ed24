//! Safe wrappers over the project's C++ shim (`csrc/shim.cpp`, compiled by build.rs): the
//! libtorch calls tch 0.24 does not bind — autocast with a chosen dtype, memory formats and the
//! operator profiler here, c10d (rendezvous, process groups, collectives) in [`c10d`].
//!
//! Every call that can fail returns the C++ exception's message as an error.

pub mod c10d;
pub mod cuda;

use anyhow::{bail, Result};
use std::ffi::{c_char, c_int, CStr};
use tch::{Device, Kind, Tensor};

type CTensor = torch_sys::C_tensor;

extern "C" {
    fn ugatit_free_message(message: *mut c_char);
    fn ugatit_autocast_enter(
        device: c_int,
        dtype: c_int,
        was_enabled: *mut bool,
        was_dtype: *mut c_int,
        was_caching: *mut bool,
    ) -> *mut c_char;
    fn ugatit_autocast_exit(device: c_int, was_enabled: bool, was_dtype: c_int, was_caching: bool) -> *mut c_char;
    fn ugatit_autocast_dtype(device: c_int) -> c_int;
    fn ugatit_autocast_suspend(device: c_int, was_enabled: *mut bool) -> *mut c_char;
    fn ugatit_autocast_resume(device: c_int, was_enabled: bool) -> *mut c_char;
    fn ugatit_profile_start(path: *const c_char, handle: *mut *mut std::ffi::c_void) -> *mut c_char;
    fn ugatit_profile_stop(handle: *mut std::ffi::c_void) -> *mut c_char;
    fn ugatit_channels_last(t: *const CTensor, out: *mut *mut CTensor) -> *mut c_char;
    fn ugatit_is_channels_last(t: *const CTensor) -> bool;
}

/// Turns a shim call's returned message (null: success) into a `Result`.
pub(crate) fn check(message: *mut c_char, what: &str) -> Result<()> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null return is a NUL-terminated string from strdup, freed here once.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
    unsafe { ugatit_free_message(message) };
    bail!("{what}: {text}")
}

/// c10's device-type code for the devices autocast knows.
fn device_code(device: Device) -> c_int {
    if device.is_cuda() {
        1
    } else {
        0
    }
}

/// c10's `ScalarType` code of a low-precision autocast dtype.
fn dtype_code(kind: Kind) -> Result<c_int> {
    Ok(match kind {
        Kind::Half => 5,
        Kind::BFloat16 => 15,
        other => bail!("autocast computes in bfloat16 or float16, not {other:?}"),
    })
}

/// An autocast region (`torch.autocast(device, dtype)`): while it lives, convolutions, linear
/// layers and matrix products on this thread run in `kind`; leaving it restores what was before.
/// Weight casts are not cached (see csrc/shim.cpp), so weights may be updated inside.
#[must_use = "autocast ends when the guard is dropped"]
pub struct Autocast {
    device: c_int,
    was_enabled: bool,
    was_dtype: c_int,
    was_caching: bool,
}

impl Autocast {
    pub fn enter(device: Device, kind: Kind) -> Result<Self> {
        let (device, dtype) = (device_code(device), dtype_code(kind)?);
        let (mut was_enabled, mut was_dtype, mut was_caching) = (false, 0, false);
        // SAFETY: plain values and out-pointers to locals.
        check(
            unsafe { ugatit_autocast_enter(device, dtype, &mut was_enabled, &mut was_dtype, &mut was_caching) },
            "starting autocast",
        )?;
        Ok(Self { device, was_enabled, was_dtype, was_caching })
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        // SAFETY: restores the values enter() read. It cannot fail for codes enter() accepted.
        let message = unsafe { ugatit_autocast_exit(self.device, self.was_enabled, self.was_dtype, self.was_caching) };
        if let Err(e) = check(message, "ending autocast") {
            eprintln!("warning: {e:#}");
        }
    }
}

/// The dtype autocast computes in on `device`'s type on this thread, `None` where it is off.
///
/// For kernels that autocast does not intercept: libtorch's `_convolution`, which the models call
/// for its explicit TF32 and cuDNN switches, is not on autocast's list (`conv2d` is).
pub fn autocast_kind(device: Device) -> Option<Kind> {
    // SAFETY: reads thread-local state.
    match unsafe { ugatit_autocast_dtype(device_code(device)) } {
        5 => Some(Kind::Half),
        15 => Some(Kind::BFloat16),
        _ => None,
    }
}

/// Runs `f` with autocast off on `device` (work that stays float32 inside an autocast region).
pub fn without_autocast<T>(device: Device, f: impl FnOnce() -> T) -> T {
    let device = device_code(device);
    let mut was_enabled = false;
    // SAFETY: a plain value and an out-pointer to a local; neither call throws for these codes.
    let suspended = check(unsafe { ugatit_autocast_suspend(device, &mut was_enabled) }, "pausing autocast").is_ok();
    let out = f();
    if suspended {
        let _ = check(unsafe { ugatit_autocast_resume(device, was_enabled) }, "resuming autocast");
    }
    out
}

/// The same values laid out channels-last (NHWC strides), as `t.contiguous(memory_format=
/// torch.channels_last)` gives.
pub fn channels_last(t: &Tensor) -> Result<Tensor> {
    let mut out = std::ptr::null_mut();
    // SAFETY: `t` is a live tensor handle; on success `out` is a new handle tch now owns.
    check(unsafe { ugatit_channels_last(t.as_ptr(), &mut out) }, "converting to channels-last")?;
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// Whether `t` is a 4-d tensor laid out channels-last (and not also plain contiguous).
pub fn is_channels_last(t: &Tensor) -> bool {
    // SAFETY: `t` is a live tensor handle; the call only reads its sizes and strides.
    unsafe { ugatit_is_channels_last(t.as_ptr()) }
}

/// libtorch's operator profiler on this thread (the legacy one, on the CPU clock): every
/// operator's start, duration and input shapes (`args["Input Dims"]`) from [`Profile::start`]
/// until [`Profile::finish`] (or drop), written to a Chrome trace file.
#[must_use = "the profile is written when it finishes"]
pub struct Profile {
    handle: *mut std::ffi::c_void,
}

impl Profile {
    pub fn start(path: &std::path::Path) -> Result<Self> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
        let mut handle = std::ptr::null_mut();
        // SAFETY: a valid C string and an out-pointer to a local.
        check(unsafe { ugatit_profile_start(path.as_ptr(), &mut handle) }, "starting the profiler")?;
        Ok(Self { handle })
    }

    /// Stops profiling and writes the trace.
    pub fn finish(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        let handle = std::mem::replace(&mut self.handle, std::ptr::null_mut());
        if handle.is_null() {
            return Ok(());
        }
        // SAFETY: `handle` came from ugatit_profile_start and is released exactly once.
        check(unsafe { ugatit_profile_stop(handle) }, "writing the profile")
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("warning: {e:#}");
        }
    }
}
