//! Counting a forward pass's floating-point operations from its layer shapes: every
//! convolution reports `2·C_in·k²·C_out·H_out·W_out·B` while a [`counting`] scope is open on its
//! thread. Linear layers are left out (counted, where they matter, from the configuration:
//! [`crate::model::generator::Config::mlp_flops`]).

use std::cell::Cell;
use tch::Tensor;

thread_local! {
    static COUNT: Cell<Option<f64>> = const { Cell::new(None) };
}

/// Runs `f`, returning its result and the convolution FLOPs it performed on this thread.
pub fn counting<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let outer = COUNT.replace(Some(0.0));
    let out = f();
    let counted = COUNT.replace(outer).unwrap_or(0.0);
    if let Some(outer) = outer {
        COUNT.set(Some(outer + counted));
    }
    (out, counted)
}

/// Records one convolution of an `[B, C_in, H, W]` input with a `[C_out, C_in, k, k]` weight
/// (no padding, as every U-GAT-IT convolution is: the models pad explicitly). Outside a
/// [`counting`] scope it reads no shapes: every convolution of every step calls it.
pub fn record_conv(input: &Tensor, weight: &Tensor, stride: i64) {
    COUNT.with(|count| {
        let Some(total) = count.get() else { return };
        if let ([b, _, h, w], [c_out, c_in, kh, kw]) = (&input.size()[..], &weight.size()[..]) {
            let (h_out, w_out) = ((h - kh) / stride + 1, (w - kw) / stride + 1);
            let flops = 2.0 * (c_in * kh * kw) as f64 * (c_out * h_out * w_out * b) as f64;
            count.set(Some(total + flops));
        }
    });
}
