//! ReLU, leaky-ReLU, tanh and add (kernels/elementwise.wgsl).
use super::gpu_empty;
use crate::backend::{Device, gpu::groups_1d};
use crate::tensor::{Tensor, same_device};
use anyhow::{Result, bail};
use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    Relu,
    LeakyRelu(f32),
    Tanh,
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
            };
            let n = x.numel();
            ctx.dispatch(
                "elementwise.wgsl",
                "unary",
                &[x.buf(), x.buf()],
                y.buf(),
                &[n as u32, code, f32::to_bits(slope), 0],
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
                &[n as u32, 0, 0, 0],
                groups_1d(n, 256),
            )?;
            Ok(y)
        }
    }
}
