//! Elementwise ops (kernels/elementwise.wgsl), any shape:
//! - [`unary`]: ReLU, leaky-ReLU, tanh, GELU (exact and quick), SiLU.
//! - [`add`], [`mul`] of equal shapes; [`binary`] / [`add_bcast`] / [`mul_bcast`] with NumPy
//!   broadcasting (shapes right-aligned, a dim of 1 stretches): a `[B, C]` time embedding over a
//!   `[B, C, H, W]` feature map is `add_bcast(x, &emb.reshape(&[b, c, 1, 1])?)`.
//! - [`lincomb`]: `Σ aᵢ·xᵢ` over equal shapes (scheduler steps, classifier-free guidance).
//! - [`geglu`]: `[.., 2F] → [.., F]`, `h · gelu(g)` with `h, g = x.chunk(2, -1)` (diffusers GEGLU).
use super::gpu_empty;
use crate::backend::{Device, gpu::groups_1d};
use crate::tensor::{Tensor, same_device};
use anyhow::{Result, bail};
use rayon::prelude::*;

/// The most dims a broadcast handles after merging the dims that broadcast alike.
pub const MAX_BCAST_RANK: usize = 8;

crate::kernel_params! {
    /// elementwise.wgsl's `Params`.
    pub struct ElementwiseParams {
        pub len: u32, pub op: u32, pub slope: f32, pub rank: u32,
        pub coef: [f32; 4],
        pub cols: u32, pub _p0: u32, pub _p1: u32, pub _p2: u32,
        pub shape: [u32; 8],
        pub a_stride: [u32; 8],
        pub b_stride: [u32; 8],
    }
}

/// Records `elementwise.wgsl:entry` over `inputs` (1 to 4; unused bindings repeat the first).
fn dispatch(
    ctx: &crate::backend::gpu::GpuContext,
    entry: &'static str,
    inputs: &[&Tensor],
    y: &Tensor,
    p: ElementwiseParams,
) -> Result<()> {
    let bufs: Vec<&wgpu::Buffer> = (0..4)
        .map(|i| inputs.get(i).unwrap_or(&inputs[0]).buf())
        .collect();
    ctx.dispatch(
        "elementwise.wgsl",
        entry,
        &bufs,
        y.buf(),
        &p,
        groups_1d(p.len as usize, 256),
    )
}

fn check_len(n: usize, op: &str) -> Result<()> {
    if n > u32::MAX as usize {
        bail!("{op}: {n} elements exceed the kernel's 32-bit indices");
    }
    Ok(())
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
    /// x·σ(x), PyTorch's `silu`.
    Silu,
}

/// erf by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7), as `elementwise.wgsl:erf_as`.
pub fn erf_as(v: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.3275911 * v.abs());
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_72 + t * (1.421_413_8 + t * (-1.453_152_1 + t * 1.061_405_4))));
    v.signum() * (1.0 - poly * (-v * v).exp())
}

/// The exact GELU of [`Unary::Gelu`] (`elementwise.wgsl:gelu`).
pub fn gelu(v: f32) -> f32 {
    0.5 * v * (1.0 + erf_as(v * std::f32::consts::FRAC_1_SQRT_2))
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
            Unary::Gelu => gelu(v),
            Unary::Silu => v / (1.0 + (-v).exp()),
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
                Unary::Silu => (5, 0.0),
            };
            check_len(x.numel(), "unary")?;
            let p = ElementwiseParams {
                len: x.numel() as u32,
                op: code,
                slope,
                ..Default::default()
            };
            dispatch(&ctx, "unary", &[x], &y, p)?;
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

pub fn silu(x: &Tensor) -> Result<Tensor> {
    unary(x, Unary::Silu)
}

/// A binary op of [`binary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Mul,
}

impl BinaryOp {
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Mul => a * b,
        }
    }
}

/// a + b (same shapes).
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.shape() != b.shape() {
        bail!("add: shapes differ: {:?} vs {:?}", a.shape(), b.shape());
    }
    binary(a, b, BinaryOp::Add)
}

/// a · b (same shapes).
pub fn mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.shape() != b.shape() {
        bail!("mul: shapes differ: {:?} vs {:?}", a.shape(), b.shape());
    }
    binary(a, b, BinaryOp::Mul)
}

/// a + b, broadcast ([`binary`]).
pub fn add_bcast(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(a, b, BinaryOp::Add)
}

/// a · b, broadcast ([`binary`]).
pub fn mul_bcast(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(a, b, BinaryOp::Mul)
}

/// How a broadcast binary op walks its inputs: the output shape over the fewest dims, with each
/// input's strides (0 along a dim it is broadcast over).
#[derive(Clone, Debug, PartialEq)]
pub struct BcastPlan {
    pub out_shape: Vec<usize>,
    pub shape: Vec<usize>,
    pub a_stride: Vec<usize>,
    pub b_stride: Vec<usize>,
}

/// NumPy broadcasting of `a` and `b`: right-aligned, each pair of dims equal or one of them 1.
pub fn broadcast_plan(a: &[usize], b: &[usize]) -> Result<BcastPlan> {
    let r = a.len().max(b.len());
    let pad = |s: &[usize]| {
        let mut v = vec![1; r - s.len()];
        v.extend_from_slice(s);
        v
    };
    let (pa, pb) = (pad(a), pad(b));
    let mut out_shape = vec![0; r];
    for d in 0..r {
        out_shape[d] = match (pa[d], pb[d]) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => bail!(
                "cannot broadcast shapes {a:?} and {b:?}: dim {d} (right-aligned) is {} vs {}",
                pa[d],
                pb[d]
            ),
        };
    }
    let strides = |s: &[usize]| {
        let cs = super::layout::contiguous_strides(s);
        (0..r)
            .map(|d| if s[d] == 1 { 0 } else { cs[d] })
            .collect::<Vec<_>>()
    };
    let (sa, sb) = (strides(&pa), strides(&pb));
    let (mut shape, mut a_stride, mut b_stride) = (vec![], vec![], vec![]);
    for d in 0..r {
        if out_shape[d] == 1 {
            continue;
        }
        if let Some(k) = shape.len().checked_sub(1) {
            let n = out_shape[d];
            if a_stride[k] == sa[d] * n && b_stride[k] == sb[d] * n {
                shape[k] *= n;
                a_stride[k] = sa[d];
                b_stride[k] = sb[d];
                continue;
            }
        }
        shape.push(out_shape[d]);
        a_stride.push(sa[d]);
        b_stride.push(sb[d]);
    }
    Ok(BcastPlan {
        out_shape,
        shape,
        a_stride,
        b_stride,
    })
}

/// The CPU twin of `elementwise.wgsl:binary`.
pub fn binary_cpu(plan: &BcastPlan, a: &[f32], b: &[f32], op: BinaryOp) -> Vec<f32> {
    let n: usize = plan.shape.iter().product();
    let Some(&inner) = plan.shape.last() else {
        return vec![op.apply(a[0], b[0]); n];
    };
    if n == 0 {
        return vec![];
    }
    if plan.shape.len() == 1 && plan.a_stride[0] == 1 && plan.b_stride[0] == 1 {
        // Equal shapes: one flat pass.
        return a
            .par_iter()
            .zip(b.par_iter())
            .with_min_len(1 << 14)
            .map(|(&x, &y)| op.apply(x, y))
            .collect();
    }
    let r = plan.shape.len() - 1;
    let (sa, sb) = (plan.a_stride[r], plan.b_stride[r]);
    let mut out = vec![0f32; n];
    out.par_chunks_mut(inner)
        .with_min_len((1 << 14) / inner + 1)
        .enumerate()
        .for_each(|(row, o)| {
            let (mut rem, mut ia, mut ib) = (row, 0, 0);
            for d in (0..r).rev() {
                let c = rem % plan.shape[d];
                rem /= plan.shape[d];
                ia += c * plan.a_stride[d];
                ib += c * plan.b_stride[d];
            }
            for (j, v) in o.iter_mut().enumerate() {
                *v = op.apply(a[ia + j * sa], b[ib + j * sb]);
            }
        });
    out
}

/// `a (op) b` with NumPy broadcasting; the result has the broadcast shape.
pub fn binary(a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
    let plan = broadcast_plan(a.shape(), b.shape())?;
    if plan.shape.len() > MAX_BCAST_RANK {
        bail!(
            "{op:?}: broadcasting {:?} with {:?} needs {} strided dims, more than {MAX_BCAST_RANK}",
            a.shape(),
            b.shape(),
            plan.shape.len()
        );
    }
    match same_device(&[a, b])? {
        Device::Cpu => Ok(Tensor::cpu(
            plan.out_shape.clone(),
            binary_cpu(&plan, a.host(), b.host(), op),
        )),
        Device::Gpu(ctx) => {
            let y = gpu_empty(&ctx, &plan.out_shape)?;
            let n: usize = plan.out_shape.iter().product();
            check_len(n, "binary")?;
            let arr = |v: &[usize]| {
                let mut o = [0u32; 8];
                for (o, &x) in o.iter_mut().zip(v) {
                    *o = x as u32;
                }
                o
            };
            let p = ElementwiseParams {
                len: n as u32,
                op: match op {
                    BinaryOp::Add => 0,
                    BinaryOp::Mul => 1,
                },
                rank: plan.shape.len() as u32,
                shape: arr(&plan.shape),
                a_stride: arr(&plan.a_stride),
                b_stride: arr(&plan.b_stride),
                ..Default::default()
            };
            dispatch(&ctx, "binary", &[a, b], &y, p)?;
            Ok(y)
        }
    }
}

/// `Σ aᵢ·xᵢ` over tensors of one shape (at least one term), summed in order in f32. The GPU adds
/// up to 4 terms per pass.
pub fn lincomb(terms: &[(f32, &Tensor)]) -> Result<Tensor> {
    let Some(&(_, first)) = terms.first() else {
        bail!("lincomb of no terms");
    };
    for (i, (_, x)) in terms.iter().enumerate() {
        if x.shape() != first.shape() {
            bail!(
                "lincomb: term {i} has shape {:?}, term 0 has {:?}",
                x.shape(),
                first.shape()
            );
        }
    }
    let xs: Vec<&Tensor> = terms.iter().map(|t| t.1).collect();
    match same_device(&xs)? {
        Device::Cpu => {
            let mut out: Vec<f32> = first
                .host()
                .par_iter()
                .with_min_len(1 << 14)
                .map(|&v| terms[0].0 * v)
                .collect();
            for &(c, x) in &terms[1..] {
                out.par_iter_mut()
                    .zip(x.host().par_iter())
                    .with_min_len(1 << 14)
                    .for_each(|(o, &v)| *o += c * v);
            }
            Ok(Tensor::cpu(first.shape().to_vec(), out))
        }
        Device::Gpu(ctx) => {
            check_len(first.numel(), "lincomb")?;
            let pass = |ts: &[(f32, &Tensor)]| -> Result<Tensor> {
                let y = gpu_empty(&ctx, first.shape())?;
                let mut coef = [0f32; 4];
                for (o, t) in coef.iter_mut().zip(ts) {
                    *o = t.0;
                }
                let p = ElementwiseParams {
                    len: first.numel() as u32,
                    op: ts.len() as u32,
                    coef,
                    ..Default::default()
                };
                let xs: Vec<&Tensor> = ts.iter().map(|t| t.1).collect();
                dispatch(&ctx, "lincomb", &xs, &y, p)?;
                Ok(y)
            };
            let mut acc = pass(&terms[..terms.len().min(4)])?;
            for rest in terms[terms.len().min(4)..].chunks(3) {
                let mut ts = vec![(1.0, &acc)];
                ts.extend_from_slice(rest);
                acc = pass(&ts)?;
            }
            Ok(acc)
        }
    }
}

/// diffusers GEGLU after its projection: `x: [.., 2F] → [.., F]`, `h · gelu(g)` where
/// `h = x[.., :F]` and `g = x[.., F:]` (exact erf GELU, as [`Unary::Gelu`]).
pub fn geglu(x: &Tensor) -> Result<Tensor> {
    let s = x.shape();
    let two_f = *s.last().unwrap_or(&0);
    if two_f == 0 || !two_f.is_multiple_of(2) {
        bail!("geglu needs an even, non-zero last dim [.., 2F], got shape {s:?}");
    }
    let f = two_f / 2;
    let mut shape = s.to_vec();
    *shape.last_mut().unwrap() = f;
    match x.device() {
        Device::Cpu => Ok(Tensor::cpu(shape, geglu_cpu(x.host(), f))),
        Device::Gpu(ctx) => {
            let n = x.numel() / 2;
            check_len(x.numel(), "geglu")?;
            let y = gpu_empty(&ctx, &shape)?;
            let p = ElementwiseParams {
                len: n as u32,
                cols: f as u32,
                ..Default::default()
            };
            dispatch(&ctx, "geglu", &[x], &y, p)?;
            Ok(y)
        }
    }
}

/// The CPU twin of `elementwise.wgsl:geglu` over rows of `2f` values.
pub fn geglu_cpu(x: &[f32], f: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len() / 2];
    out.par_chunks_mut(f)
        .zip(x.par_chunks(2 * f))
        .for_each(|(o, r)| {
            let (h, g) = r.split_at(f);
            for j in 0..f {
                o[j] = h[j] * gelu(g[j]);
            }
        });
    out
}
