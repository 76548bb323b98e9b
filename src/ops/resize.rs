//! Nearest-neighbour resizing (kernels/resize.wgsl) with both rules of SPADE_SPEC §4.3 / §4.1.
use super::gpu_empty;
use crate::backend::{Device, gpu::groups_1d};
use crate::tensor::Tensor;
use anyhow::{Result, bail};
use rayon::prelude::*;

crate::kernel_params! {
    /// resize.wgsl's `Params` (`rule` 1: PIL's center rule, 0: torch's).
    pub struct ResizeParams {
        pub planes: u32, pub ih: u32, pub iw: u32, pub oh: u32,
        pub ow: u32, pub rule: u32, pub _p0: u32, pub _p1: u32,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NearestRule {
    /// `F.interpolate(mode='nearest')`: src = floor(dst · (in/out)), scale in f32 (top-left).
    Torch,
    /// PIL `Image.NEAREST`: src = floor((dst + 0.5) · in / out) (center-aligned), exact.
    Pil,
}

impl NearestRule {
    /// Source index of destination index `d` when resizing `input` samples to `output`.
    pub fn src(self, d: usize, input: usize, output: usize) -> usize {
        let s = match self {
            NearestRule::Torch => (d as f32 * (input as f32 / output as f32)).floor() as usize,
            NearestRule::Pil => ((2 * d + 1) * input) / (2 * output),
        };
        s.min(input - 1)
    }
}

/// Resize the H and W of an NCHW tensor to (oh, ow).
pub fn resize_nearest(x: &Tensor, oh: usize, ow: usize, rule: NearestRule) -> Result<Tensor> {
    let (n, c, h, w) = x.nchw()?;
    if oh == 0 || ow == 0 || h == 0 || w == 0 {
        bail!("cannot resize {h}x{w} to {oh}x{ow}");
    }
    match x.device() {
        Device::Cpu => Ok(Tensor::cpu(
            vec![n, c, oh, ow],
            resize_nearest_cpu(x.host(), n * c, [h, w], [oh, ow], rule),
        )),
        Device::Gpu(ctx) => {
            let y = gpu_empty(&ctx, &[n, c, oh, ow])?;
            let params = ResizeParams {
                planes: (n * c) as u32,
                ih: h as u32,
                iw: w as u32,
                oh: oh as u32,
                ow: ow as u32,
                rule: (rule == NearestRule::Pil) as u32,
                ..Default::default()
            };
            ctx.dispatch(
                "resize.wgsl",
                "nearest",
                &[x.buf()],
                y.buf(),
                &params,
                groups_1d(y.numel(), 256),
            )?;
            Ok(y)
        }
    }
}

/// `nn.Upsample(scale_factor=2)`: every pixel becomes a 2×2 block.
pub fn upsample2x(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.nchw()?;
    resize_nearest(x, 2 * h, 2 * w, NearestRule::Torch)
}

/// CPU twin, generic over the element type (also used for u8/u16 label images).
pub fn resize_nearest_cpu<T: Copy + Send + Sync>(
    x: &[T],
    planes: usize,
    [h, w]: [usize; 2],
    [oh, ow]: [usize; 2],
    rule: NearestRule,
) -> Vec<T> {
    let sy: Vec<usize> = (0..oh).map(|d| rule.src(d, h, oh)).collect();
    let sx: Vec<usize> = (0..ow).map(|d| rule.src(d, w, ow)).collect();
    let mut out = Vec::with_capacity(planes * oh * ow);
    let rows: Vec<Vec<T>> = (0..planes * oh)
        .into_par_iter()
        .with_min_len(64)
        .map(|r| {
            let (p, y) = (r / oh, r % oh);
            let src = &x[(p * h + sy[y]) * w..][..w];
            sx.iter().map(|&i| src[i]).collect()
        })
        .collect();
    for r in rows {
        out.extend_from_slice(&r);
    }
    out
}
