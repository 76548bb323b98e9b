//! Group normalisation (kernels/group_norm.wgsl), `torch.nn.GroupNorm(groups, C, eps, affine)`
//! on `x: [N, C, *spatial]` (NCHW for images): per (sample, group), the mean and biased variance
//! of its (C/G)·H·W values normalise them, then the per-channel affine `γ[c]`, `β[c]`.
//! [`GroupNorm::forward_silu`] applies SiLU afterwards in the same pass (ResnetBlock2D's
//! `norm → SiLU`).
use super::gpu_empty;
use crate::backend::{Device, gpu::groups_1d};
use crate::tensor::{Tensor, same_device};
use anyhow::{Result, bail};
use rayon::prelude::*;

crate::kernel_params! {
    /// group_norm.wgsl's `Params`.
    pub struct GroupNormParams {
        pub n: u32, pub c: u32, pub hw: u32, pub groups: u32,
        pub eps: f32, pub silu: u32, pub _p0: u32, pub _p1: u32,
    }
}

/// A `nn.GroupNorm` with its affine parameters on the device.
pub struct GroupNorm {
    pub groups: usize,
    pub channels: usize,
    pub eps: f32,
    /// γ then β, `[2C]`.
    gamma_beta: Tensor,
}

impl GroupNorm {
    /// `weight` (γ) and `bias` (β) have one value per channel; `groups` must divide the channels.
    pub fn new(
        device: &Device,
        weight: &[f32],
        bias: &[f32],
        groups: usize,
        eps: f32,
    ) -> Result<GroupNorm> {
        let c = weight.len();
        if bias.len() != c {
            bail!("group norm: {c} weights but {} biases", bias.len());
        }
        check_groups(c, groups)?;
        Ok(GroupNorm {
            groups,
            channels: c,
            eps,
            gamma_beta: Tensor::from_vec(device, &[2 * c], [weight, bias].concat())?,
        })
    }

    /// `affine=False`: γ = 1, β = 0.
    pub fn without_affine(
        device: &Device,
        channels: usize,
        groups: usize,
        eps: f32,
    ) -> Result<GroupNorm> {
        Self::new(
            device,
            &vec![1.0; channels],
            &vec![0.0; channels],
            groups,
            eps,
        )
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, false)
    }

    /// `silu(group_norm(x))`.
    pub fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, true)
    }

    fn run(&self, x: &Tensor, silu: bool) -> Result<Tensor> {
        let s = x.shape();
        if s.len() < 2 || s[1] != self.channels {
            bail!(
                "group norm over {} channels expects [N, {}, ..], got shape {s:?}",
                self.channels,
                self.channels
            );
        }
        let (n, c) = (s[0], s[1]);
        let hw: usize = s[2..].iter().product();
        if x.numel() > u32::MAX as usize {
            bail!("group norm: {} elements exceed 32-bit indices", x.numel());
        }
        let params = GroupNormParams {
            n: n as u32,
            c: c as u32,
            hw: hw as u32,
            groups: self.groups as u32,
            eps: self.eps,
            silu: silu as u32,
            ..Default::default()
        };
        match same_device(&[x, &self.gamma_beta])? {
            Device::Cpu => Ok(Tensor::cpu(
                s.to_vec(),
                group_norm_cpu(
                    x.host(),
                    self.gamma_beta.host(),
                    [n, c, hw],
                    self.groups,
                    self.eps,
                    silu,
                ),
            )),
            Device::Gpu(ctx) => {
                let planes = n * self.groups;
                let stats = gpu_empty(&ctx, &[2 * planes])?;
                let y = gpu_empty(&ctx, s)?;
                let g = self.gamma_beta.buf();
                ctx.dispatch(
                    "group_norm.wgsl",
                    "group_stats",
                    &[x.buf(), g, g],
                    stats.buf(),
                    &params,
                    [planes.min(65535) as u32, planes.div_ceil(65535) as u32, 1],
                )?;
                ctx.dispatch(
                    "group_norm.wgsl",
                    "group_apply",
                    &[x.buf(), stats.buf(), g],
                    y.buf(),
                    &params,
                    groups_1d(x.numel(), 256),
                )?;
                Ok(y)
            }
        }
    }
}

fn check_groups(c: usize, groups: usize) -> Result<()> {
    if groups == 0 || !c.is_multiple_of(groups) {
        bail!("group norm: {c} channels do not split into {groups} groups");
    }
    Ok(())
}

/// The CPU twin: statistics of each (sample, group) run in f64 (two passes), then
/// `(x - mean)·rstd·γ + β` in f32 as the kernel, then SiLU if `silu`. `x: [n, c, hw]`.
pub fn group_norm_cpu(
    x: &[f32],
    gamma_beta: &[f32],
    [n, c, hw]: [usize; 3],
    groups: usize,
    eps: f32,
    silu: bool,
) -> Vec<f32> {
    let cpg = c / groups;
    let len = cpg * hw;
    let mut out = vec![0f32; n * c * hw];
    if len == 0 {
        return out;
    }
    out.par_chunks_mut(len)
        .zip(x.par_chunks(len))
        .enumerate()
        .for_each(|(k, (o, v))| {
            let mean = v.iter().map(|&a| a as f64).sum::<f64>() / len as f64;
            let var = v.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>() / len as f64;
            let rstd = (1.0 / (var + eps as f64).sqrt()) as f32;
            let mean = mean as f32;
            let g0 = (k % groups) * cpg;
            for (j, (ov, &xv)) in o.iter_mut().zip(v).enumerate() {
                let ch = g0 + j / hw;
                let y = (xv - mean) * rstd * gamma_beta[ch] + gamma_beta[c + ch];
                *ov = if silu { y / (1.0 + (-y).exp()) } else { y };
            }
        });
    out
}
