//! Elementwise ops (kernels/elementwise.wgsl, src/ops/elementwise.rs): unary activations and add,
//! against f64 formulas and the CPU twin.
use crate::common::*;
use crate::{close, up};
use spadework::Tensor;
use spadework::backend::Device;
use spadework::ops;

#[test]
fn elementwise_gpu_matches_cpu() {
    let Some(g) = gpu() else { return };
    let n = 3 * 1007;
    let a: Vec<f32> = rand_vec(n, 1).iter().map(|v| v * 30.0).collect();
    let b = rand_vec(n, 2);
    let shape = [1, 3, 1, 1007];
    for (name, f) in [
        (
            "relu",
            &(|t: &Tensor| ops::relu(t).unwrap()) as &dyn Fn(&Tensor) -> Tensor,
        ),
        ("lrelu", &|t: &Tensor| ops::leaky_relu(t, 0.2).unwrap()),
        ("tanh", &|t: &Tensor| ops::tanh(t).unwrap()),
    ] {
        let want = f(&up(&Device::Cpu, &shape, &a)).to_vec().unwrap();
        let got = f(&up(&g, &shape, &a)).to_vec().unwrap();
        close(&got, &want, 1e-6, name);
    }
    let want = ops::add(&up(&Device::Cpu, &shape, &a), &up(&Device::Cpu, &shape, &b))
        .unwrap()
        .to_vec()
        .unwrap();
    let got = ops::add(&up(&g, &shape, &a), &up(&g, &shape, &b))
        .unwrap()
        .to_vec()
        .unwrap();
    close(&got, &want, 0.0, "add");
}

#[test]
fn large_elementwise_uses_2d_grid() {
    // More than 65535 × 256 elements: the flat index must be rebuilt from a 2-D dispatch.
    let Some(g) = gpu() else { return };
    let n = 65535 * 256 + 1000;
    let a: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 - 500.0).collect();
    let got = ops::relu(&up(&g, &[1, 1, 1, n], &a))
        .unwrap()
        .to_vec()
        .unwrap();
    assert!(got.iter().zip(&a).all(|(y, x)| *y == x.max(0.0)));
}

/// erf by its Taylor series in f64 (|x| ≤ 4 here; 60 terms are far past f32 precision).
fn erf_f64(x: f64) -> f64 {
    let (mut term, mut sum) = (x, x);
    for n in 1..60 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn gelu_variants_match_their_formulas_on_both_backends() {
    let x: Vec<f32> = (0..2001).map(|i| (i as f32 - 1000.0) / 250.0).collect();
    for (op, f) in [
        (
            ops::Unary::QuickGelu,
            &(|v: f64| v / (1.0 + (-1.702 * v).exp())) as &dyn Fn(f64) -> f64,
        ),
        (ops::Unary::Gelu, &|v: f64| {
            0.5 * v * (1.0 + erf_f64(v / std::f64::consts::SQRT_2))
        }),
    ] {
        let want: Vec<f32> = x.iter().map(|&v| f(v as f64) as f32).collect();
        for d in devices() {
            let got = ops::unary(&up(&d, &[1, 1, 1, x.len()], &x), op).unwrap();
            let got = got.to_vec().unwrap();
            let err = max_abs_diff(&got, &want);
            assert!(err < 2e-6, "{op:?} on {d:?}: max |Δ| {err}");
        }
    }
}
