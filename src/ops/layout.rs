//! Layout ops (kernels/layout.wgsl): permute, concat, narrow / chunk and asymmetric zero padding of
//! the last two dims, all as one N-d strided copy. `Tensor::reshape` stays free.
//!
//! - [`permute`]`(x, perm)`: `y.shape[i] = x.shape[perm[i]]` (PyTorch `x.permute(perm)`, copied
//!   to a contiguous tensor); [`nchw_to_tokens`] `[B, C, H, W] → [B, H·W, C]` and
//!   [`tokens_to_nchw`] `[B, H·W, C] → [B, C, H, W]` around a Transformer2DModel's attention.
//! - [`concat`]`(&[x0, x1, ..], dim)`: `torch.cat` (UNet skip connections along NCHW channels).
//! - [`narrow`]`(x, dim, start, len)` and [`chunk`]`(x, n, dim)`: `torch.narrow` / `torch.chunk`.
//! - [`pad2d`]`(x, [left, right, top, bottom])`: `F.pad(x, (l, r, t, b))` with zeros on `[.., H, W]`.
//!
//! Dims are `isize`: negative values count from the end, as in PyTorch. A copy runs over at most
//! [`MAX_RANK`] dims after merging the dims that stay contiguous in both source and destination
//! (so any rank whose copy merges down to 6 works); beyond that the op is an error.
use super::gpu_empty;
use crate::backend::{Device, gpu::groups_1d};
use crate::tensor::{Tensor, same_device};
use anyhow::{Result, bail};

/// The most dims one strided copy handles (the kernel's `Params` arrays hold 8).
pub const MAX_RANK: usize = 6;

crate::kernel_params! {
    /// layout.wgsl's `Params` (unused dims are 0).
    pub struct CopyParams {
        pub len: u32, pub rank: u32, pub src_base: u32, pub dst_base: u32,
        pub shape: [u32; 8],
        pub src_stride: [u32; 8],
        pub dst_stride: [u32; 8],
        pub lo: [u32; 8],
        pub size: [u32; 8],
    }
}

/// One strided copy over the view `shape`: view coordinate `c` goes to
/// `dst[dst_base + Σ c·dst_stride]` from `src[src_base + Σ (c - lo)·src_stride]` when
/// `lo ≤ c < lo + size` in every dim, and is 0 elsewhere.
#[derive(Clone, Debug, PartialEq)]
pub struct CopyPlan {
    pub shape: Vec<usize>,
    pub src_base: usize,
    pub src_stride: Vec<usize>,
    pub dst_base: usize,
    pub dst_stride: Vec<usize>,
    pub lo: Vec<usize>,
    pub size: Vec<usize>,
}

/// Row-major strides of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

impl CopyPlan {
    /// A plain copy (no padding) of the view `shape`.
    fn new(
        shape: &[usize],
        src_base: usize,
        src_stride: Vec<usize>,
        dst_base: usize,
        dst_stride: Vec<usize>,
    ) -> CopyPlan {
        CopyPlan {
            shape: shape.to_vec(),
            src_base,
            src_stride,
            dst_base,
            dst_stride,
            lo: vec![0; shape.len()],
            size: shape.to_vec(),
        }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The same copy over fewest dims: size-1 dims dropped, and neighbours merged where both
    /// strides stay contiguous across them and neither is padded.
    pub fn simplified(&self) -> CopyPlan {
        let mut p = CopyPlan {
            shape: vec![],
            src_base: self.src_base,
            src_stride: vec![],
            dst_base: self.dst_base,
            dst_stride: vec![],
            lo: vec![],
            size: vec![],
        };
        for d in 0..self.shape.len() {
            let plain = self.lo[d] == 0 && self.size[d] == self.shape[d];
            if self.shape[d] == 1 && plain {
                continue;
            }
            if let Some(k) = p.shape.len().checked_sub(1) {
                let prev_plain = p.lo[k] == 0 && p.size[k] == p.shape[k];
                if plain
                    && prev_plain
                    && p.src_stride[k] == self.src_stride[d] * self.shape[d]
                    && p.dst_stride[k] == self.dst_stride[d] * self.shape[d]
                {
                    p.shape[k] *= self.shape[d];
                    p.size[k] = p.shape[k];
                    p.src_stride[k] = self.src_stride[d];
                    p.dst_stride[k] = self.dst_stride[d];
                    continue;
                }
            }
            p.shape.push(self.shape[d]);
            p.src_stride.push(self.src_stride[d]);
            p.dst_stride.push(self.dst_stride[d]);
            p.lo.push(self.lo[d]);
            p.size.push(self.size[d]);
        }
        p
    }

    /// The kernel's parameters (the plan must have at most [`MAX_RANK`] dims).
    pub fn params(&self) -> CopyParams {
        let arr = |v: &[usize]| {
            let mut a = [0u32; 8];
            for (o, &x) in a.iter_mut().zip(v) {
                *o = x as u32;
            }
            a
        };
        CopyParams {
            len: self.numel() as u32,
            rank: self.shape.len() as u32,
            src_base: self.src_base as u32,
            dst_base: self.dst_base as u32,
            shape: arr(&self.shape),
            src_stride: arr(&self.src_stride),
            dst_stride: arr(&self.dst_stride),
            lo: arr(&self.lo),
            size: arr(&self.size),
        }
    }
}

/// The CPU twin of `layout.wgsl:copy`: one row of the last view dim at a time.
pub fn copy_cpu(plan: &CopyPlan, src: &[f32], dst: &mut [f32]) {
    let n = plan.numel();
    if n == 0 {
        return;
    }
    if plan.shape.is_empty() {
        dst[plan.dst_base] = src[plan.src_base];
        return;
    }
    let r = plan.shape.len() - 1;
    let (inner, lo, size) = (plan.shape[r], plan.lo[r], plan.size[r]);
    let (ss, ds) = (plan.src_stride[r], plan.dst_stride[r]);
    for row in 0..n / inner {
        let (mut rem, mut s, mut t, mut inside) = (row, plan.src_base, plan.dst_base, true);
        for d in (0..r).rev() {
            let c = rem % plan.shape[d];
            rem /= plan.shape[d];
            t += c * plan.dst_stride[d];
            if c < plan.lo[d] || c >= plan.lo[d] + plan.size[d] {
                inside = false;
            } else {
                s += (c - plan.lo[d]) * plan.src_stride[d];
            }
        }
        for c in 0..inner {
            dst[t + c * ds] = if inside && c >= lo && c < lo + size {
                src[s + (c - lo) * ss]
            } else {
                0.0
            };
        }
    }
}

/// Runs `plans` (each reading one of `srcs`) into a new tensor of `out_shape`.
fn execute(srcs: &[&Tensor], plans: &[CopyPlan], out_shape: &[usize], op: &str) -> Result<Tensor> {
    let plans: Vec<CopyPlan> = plans.iter().map(CopyPlan::simplified).collect();
    for p in &plans {
        if p.shape.len() > MAX_RANK {
            bail!(
                "{op}: the copy needs {} strided dims, more than the {MAX_RANK} supported \
                 (shapes {:?})",
                p.shape.len(),
                srcs.iter().map(|t| t.shape()).collect::<Vec<_>>()
            );
        }
    }
    let n: usize = out_shape.iter().product();
    if n > u32::MAX as usize {
        bail!("{op}: {n} elements exceed the kernel's 32-bit indices");
    }
    match same_device(srcs)? {
        Device::Cpu => {
            let mut out = vec![0f32; n];
            for (x, p) in srcs.iter().zip(&plans) {
                copy_cpu(p, x.host(), &mut out);
            }
            Ok(Tensor::cpu(out_shape.to_vec(), out))
        }
        Device::Gpu(ctx) => {
            let y = gpu_empty(&ctx, out_shape)?;
            for (x, p) in srcs.iter().zip(&plans) {
                if p.numel() == 0 {
                    continue;
                }
                let params = p.params();
                ctx.dispatch(
                    "layout.wgsl",
                    "copy",
                    &[x.buf()],
                    y.buf(),
                    &params,
                    groups_1d(p.numel(), 256),
                )?;
            }
            Ok(y)
        }
    }
}

/// `dim` of a rank-`rank` tensor, negative from the end.
fn resolve_dim(dim: isize, rank: usize, op: &str, shape: &[usize]) -> Result<usize> {
    let d = if dim < 0 { dim + rank as isize } else { dim };
    if d < 0 || d >= rank as isize {
        bail!("{op}: dim {dim} is out of range for a {rank}-D tensor of shape {shape:?}");
    }
    Ok(d as usize)
}

/// `x.permute(perm)` as a contiguous tensor: `y.shape[i] = x.shape[perm[i]]`.
pub fn permute(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let s = x.shape();
    let mut seen = vec![false; s.len()];
    if perm.len() != s.len()
        || perm
            .iter()
            .any(|&p| p >= s.len() || std::mem::replace(&mut seen[p], true))
    {
        bail!(
            "permute: {perm:?} is not a permutation of the {} dims of {s:?}",
            s.len()
        );
    }
    let xs = contiguous_strides(s);
    let shape: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
    let plan = CopyPlan::new(
        &shape,
        0,
        perm.iter().map(|&p| xs[p]).collect(),
        0,
        contiguous_strides(&shape),
    );
    execute(&[x], &[plan], &shape, "permute")
}

/// `[B, C, H, W] → [B, H·W, C]` (`x.permute(0, 2, 3, 1).reshape(B, H·W, C)`).
pub fn nchw_to_tokens(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.nchw()?;
    let shape = [b, h * w, c];
    let plan = CopyPlan::new(
        &shape,
        0,
        vec![c * h * w, 1, h * w],
        0,
        contiguous_strides(&shape),
    );
    execute(&[x], &[plan], &shape, "nchw_to_tokens")
}

/// `[B, H·W, C] → [B, C, H, W]` (the inverse of [`nchw_to_tokens`]).
pub fn tokens_to_nchw(x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let [b, l, c] = *x.shape() else {
        bail!(
            "tokens_to_nchw expects [batch, tokens, channels], got {:?}",
            x.shape()
        )
    };
    if l != h * w {
        bail!(
            "tokens_to_nchw: {l} tokens are not {h}×{w} = {} pixels",
            h * w
        );
    }
    let view = [b, c, l];
    let plan = CopyPlan::new(&view, 0, vec![l * c, 1, c], 0, contiguous_strides(&view));
    execute(&[x], &[plan], &[b, c, h, w], "tokens_to_nchw")
}

/// `torch.cat(xs, dim)`: every tensor has the same shape except along `dim`.
pub fn concat(xs: &[&Tensor], dim: isize) -> Result<Tensor> {
    let Some(first) = xs.first() else {
        bail!("concat of no tensors");
    };
    let s0 = first.shape();
    let d = resolve_dim(dim, s0.len(), "concat", s0)?;
    for (i, x) in xs.iter().enumerate() {
        let s = x.shape();
        let same = s.len() == s0.len()
            && s.iter()
                .zip(s0)
                .enumerate()
                .all(|(k, (a, b))| k == d || a == b);
        if !same {
            bail!(
                "concat along dim {d}: tensor {i} has shape {s:?}, which differs from tensor 0 \
                 {s0:?} outside dim {d}"
            );
        }
    }
    let mut shape = s0.to_vec();
    shape[d] = xs.iter().map(|x| x.shape()[d]).sum();
    let ys = contiguous_strides(&shape);
    let mut at = 0;
    let plans: Vec<CopyPlan> = xs
        .iter()
        .map(|x| {
            let p = CopyPlan::new(
                x.shape(),
                0,
                contiguous_strides(x.shape()),
                at * ys[d],
                ys.clone(),
            );
            at += x.shape()[d];
            p
        })
        .collect();
    execute(xs, &plans, &shape, "concat")
}

/// `x.narrow(dim, start, len)` as a contiguous tensor.
pub fn narrow(x: &Tensor, dim: isize, start: usize, len: usize) -> Result<Tensor> {
    let s = x.shape();
    let d = resolve_dim(dim, s.len(), "narrow", s)?;
    if start + len > s[d] {
        bail!(
            "narrow: {start}..{} is out of range for dim {d} of size {} (shape {s:?})",
            start + len,
            s[d]
        );
    }
    let xs = contiguous_strides(s);
    let mut shape = s.to_vec();
    shape[d] = len;
    let plan = CopyPlan::new(&shape, start * xs[d], xs, 0, contiguous_strides(&shape));
    execute(&[x], &[plan], &shape, "narrow")
}

/// `x.chunk(n, dim)`: pieces of ⌈size/n⌉ along `dim`, the last one smaller if it does not divide
/// (so there may be fewer than `n` pieces, as in PyTorch).
pub fn chunk(x: &Tensor, n: usize, dim: isize) -> Result<Vec<Tensor>> {
    let s = x.shape();
    let d = resolve_dim(dim, s.len(), "chunk", s)?;
    if n == 0 {
        bail!("chunk: cannot split dim {d} of {s:?} into 0 chunks");
    }
    let step = s[d].div_ceil(n).max(1);
    (0..s[d])
        .step_by(step)
        .map(|start| narrow(x, d as isize, start, step.min(s[d] - start)))
        .collect()
}

/// `F.pad(x, (left, right, top, bottom))`: zeros around the last two dims (`[.., H, W]`).
pub fn pad2d(x: &Tensor, [left, right, top, bottom]: [usize; 4]) -> Result<Tensor> {
    let s = x.shape();
    let r = s.len();
    if r < 2 {
        bail!("pad2d pads the last two dims [.., H, W], got shape {s:?}");
    }
    let mut shape = s.to_vec();
    shape[r - 2] += top + bottom;
    shape[r - 1] += left + right;
    let mut plan = CopyPlan::new(
        &shape,
        0,
        contiguous_strides(s),
        0,
        contiguous_strides(&shape),
    );
    plan.lo[r - 2] = top;
    plan.lo[r - 1] = left;
    plan.size = s.to_vec();
    execute(&[x], &[plan], &shape, "pad2d")
}
