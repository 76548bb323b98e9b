//! ReLU, leaky-ReLU, tanh, GELU and add (kernels/elementwise.wgsl).
use super::gpu_empty;
use crate::backend::{Device, gpu::groups_1d};
use crate::tensor::{Tensor, same_device};
use anyhow::{Result, bail};
use rayon::prelude::*;

crate::kernel_params! {
    /// elementwise.wgsl's `Params`.
    pub struct ElementwiseParams { pub len: u32, pub op: u32, pub slope: f32, pub _p: u32 }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    Relu,
    LeakyRelu(f32),
    Tanh,
    /// x·σ(1.702x), OpenAI CLIP's `quick_gelu`.
    QuickGelu,
    /// x/2·(1 + erf(x/√2)), PyTorch's exact `gelu` (erf to 1.5e-7).
    Gelu,
}

/// erf by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7), as `elementwise.wgsl:erf_as`.
pub fn erf_as(v: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.3275911 * v.abs());
    let poly = t
        * (0.254829592
            + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    v.signum() * (1.0 - poly * (-v * v).exp())
}

impl Unary {
    /// The CPU twin of `elementwise.wgsl:unary`.
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Unary::Relu => v.max(0.0),
            Unary::LeakyRelu(s) => {
                if v > 0.0 {
                    v
                } else {
                    v * s
                }
            }
            Unary::Tanh => v.tanh(),
            Unary::QuickGelu => v / (1.0 + (-1.702 * v).exp()),
            Unary::Gelu => 0.5 * v * (1.0 + erf_as(v * std::f32::consts::FRAC_1_SQRT_2)),
        }
    }
}

pub fn unary(x: &Tensor, op: Unary) -> Result<Tensor> {
    match x.device() {
        Device::Cpu => {
            let out: Vec<f32> = x
                .host()
                .par_iter()
                .with_min_len(1 << 14)
                .map(|&v| op.apply(v))
                .collect();
            Ok(Tensor::cpu(x.shape().to_vec(), out))
        }
        Device::Gpu(ctx) => {
            let y = gpu_empty(&ctx, x.shape())?;
            let (code, slope) = match op {
                Unary::Relu => (0, 0.0),
                Unary::LeakyRelu(s) => (1, s),
                Unary::Tanh => (2, 0.0),
                Unary::QuickGelu => (3, 0.0),
                Unary::Gelu => (4, 0.0),
            };
            let n = x.numel();
            ctx.dispatch(
                "elementwise.wgsl",
                "unary",
                &[x.buf(), x.buf()],
                y.buf(),
                &ElementwiseParams {
                    len: n as u32,
                    op: code,
                    slope,
                    _p: 0,
                },
                groups_1d(n, 256),
            )?;
            Ok(y)
        }
    }
}

pub fn relu(x: &Tensor) -> Result<Tensor> {
    unary(x, Unary::Relu)
}
pub fn leaky_relu(x: &Tensor, slope: f32) -> Result<Tensor> {
    unary(x, Unary::LeakyRelu(slope))
}
pub fn tanh(x: &Tensor) -> Result<Tensor> {
    unary(x, Unary::Tanh)
}

/// a + b (same shapes).
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.shape() != b.shape() {
        bail!("add: shapes differ: {:?} vs {:?}", a.shape(), b.shape());
    }
    match same_device(&[a, b])? {
        Device::Cpu => {
            let out: Vec<f32> = a
                .host()
                .par_iter()
                .zip(b.host().par_iter())
                .with_min_len(1 << 14)
                .map(|(x, y)| x + y)
                .collect();
            Ok(Tensor::cpu(a.shape().to_vec(), out))
        }
        Device::Gpu(ctx) => {
            let y = gpu_empty(&ctx, a.shape())?;
            let n = a.numel();
            ctx.dispatch(
                "elementwise.wgsl",
                "add",
                &[a.buf(), b.buf()],
                y.buf(),
                &ElementwiseParams {
                    len: n as u32,
                    ..Default::default()
                },
                groups_1d(n, 256),
            )?;
            Ok(y)
        }
    }
}
