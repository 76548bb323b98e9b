//! Every op's tests in one binary, one module per op family: `kernels/X.wgsl` ↔ `src/ops/X.rs` ↔
//! `tests/ops/X.rs`. CPU twins against naive f64 (or obviously correct) oracles, WGSL kernels
//! against the CPU twins, on awkward shapes; bad shapes give named errors. `wgsl`: every kernel
//! file validates with naga.
#[path = "../common/mod.rs"]
mod common;

mod attention;
mod conv2d;
mod elementwise;
mod group_norm;
mod layout;
mod linear;
mod norm;
mod onehot_conv;
mod resize;
mod segmap;
mod spade;
mod wgsl;
mod window;

use spadework::Tensor;
use spadework::backend::Device;

/// A tensor of `shape` holding `v` on `d`.
pub fn up(d: &Device, shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_vec(d, shape, v.to_vec()).unwrap()
}

/// max |a - b| ≤ tol × max(1, max |b|).
pub fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let d = common::max_abs_diff(a, b);
    assert!(d <= tol * scale, "{what}: max |Δ| {d} > {tol} × {scale}");
}
