//! Parameter-free normalisation (kernels/norm.wgsl): batch norm with running statistics (eval
//! mode) and instance norm (per-sample statistics, biased variance). Both reduce to
//! `y = fma(x, scale, shift)` with `scale = 1/sqrt(var + eps)` and `shift = -mean * scale`, which
//! is how PyTorch's CPU kernel evaluates eval-mode batch norm. Also layer norm over the last
//! dimension (`nn.LayerNorm`), for the text encoder.
use super::gpu_empty;
use crate::backend::{Device, gpu::groups_1d};
use crate::tensor::Tensor;
use anyhow::{Result, bail};
use rayon::prelude::*;

pub const EPS: f32 = 1e-5;

crate::kernel_params! {
    /// norm.wgsl's `Params` (layer norm: `n` rows of `c` values).
    pub struct NormParams {
        pub n: u32, pub c: u32, pub hw: u32, pub per_sample: u32,
        pub eps: f32, pub _p0: u32, pub _p1: u32, pub _p2: u32,
    }
}

/// The `param_free_norm` of a SPADE layer.
pub enum ParamFreeNorm {
    /// BatchNorm2d(affine=False) in eval mode: `stats` = scale[C] ++ shift[C], folded at load.
    Batch { channels: usize, stats: Tensor },
    /// InstanceNorm2d(affine=False): statistics of each sample, computed at run time.
    Instance,
}

/// Per-channel scale and shift from running statistics, in f32 as PyTorch computes them.
pub fn fold_running_stats(mean: &[f32], var: &[f32], eps: f32) -> Vec<f32> {
    let scale: Vec<f32> = var.iter().map(|&v| 1.0f32 / (v + eps).sqrt()).collect();
    let shift: Vec<f32> = mean.iter().zip(&scale).map(|(&m, &s)| -(m * s)).collect();
    [scale, shift].concat()
}

impl ParamFreeNorm {
    pub fn batch(device: &Device, mean: &[f32], var: &[f32]) -> Result<ParamFreeNorm> {
        if mean.len() != var.len() {
            bail!(
                "running_mean has {} values but running_var has {}",
                mean.len(),
                var.len()
            );
        }
        let stats = fold_running_stats(mean, var, EPS);
        Ok(ParamFreeNorm::Batch {
            channels: mean.len(),
            stats: Tensor::from_vec(device, &[2 * mean.len()], stats)?,
        })
    }

    /// (scale ++ shift, per_sample) for input `x`: the running statistics, or the instance
    /// statistics of `x` (computed now).
    pub fn stats(&self, x: &Tensor) -> Result<(Option<Tensor>, bool)> {
        let (_, c, _, _) = x.nchw()?;
        match self {
            ParamFreeNorm::Batch { channels, .. } => {
                if *channels != c {
                    bail!("batch norm has {channels} channels, input has {c}");
                }
                Ok((None, false))
            }
            ParamFreeNorm::Instance => Ok((Some(instance_stats(x)?), true)),
        }
    }

    pub fn folded(&self) -> Option<&Tensor> {
        match self {
            ParamFreeNorm::Batch { stats, .. } => Some(stats),
            ParamFreeNorm::Instance => None,
        }
    }

    /// The normalised tensor alone (the SPADE path fuses this into [`super::modulate`]).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (own, per_sample) = self.stats(x)?;
        let stats = own
            .as_ref()
            .or(self.folded())
            .expect("either folded or computed");
        channel_affine(x, stats, per_sample)
    }
}

/// InstanceNorm2d(affine=False, eps=1e-5).
pub fn instance_norm(x: &Tensor) -> Result<Tensor> {
    ParamFreeNorm::Instance.forward(x)
}

/// scale[N*C] ++ shift[N*C] of each (sample, channel) plane: biased variance, two passes.
pub fn instance_stats(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.nchw()?;
    let hw = h * w;
    match x.device() {
        Device::Cpu => Ok(Tensor::cpu(
            vec![2 * n * c],
            instance_stats_cpu(x.host(), n * c, hw),
        )),
        Device::Gpu(ctx) => {
            let out = gpu_empty(&ctx, &[2 * n * c])?;
            let planes = n * c;
            let groups = if planes <= 65535 {
                [planes as u32, 1, 1]
            } else {
                [65535, planes.div_ceil(65535) as u32, 1]
            };
            let params = NormParams {
                n: n as u32,
                c: c as u32,
                hw: hw as u32,
                per_sample: 1,
                eps: EPS,
                ..Default::default()
            };
            ctx.dispatch(
                "norm.wgsl",
                "instance_stats",
                &[x.buf(), x.buf()],
                out.buf(),
                &params,
                groups,
            )?;
            Ok(out)
        }
    }
}

/// CPU twin of `norm.wgsl:instance_stats` (f64 accumulation).
pub fn instance_stats_cpu(x: &[f32], planes: usize, hw: usize) -> Vec<f32> {
    let st: Vec<(f32, f32)> = (0..planes)
        .into_par_iter()
        .map(|p| {
            let v = &x[p * hw..(p + 1) * hw];
            let mean = v.iter().map(|&a| a as f64).sum::<f64>() / hw as f64;
            let var = v.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>() / hw as f64;
            let scale = 1.0f32 / (var as f32 + EPS).sqrt();
            (scale, -(mean as f32) * scale)
        })
        .collect();
    st.iter()
        .map(|s| s.0)
        .chain(st.iter().map(|s| s.1))
        .collect()
}

/// y = fma(x, scale[k], shift[k]), k = c (per channel) or n*C + c (per sample).
pub fn channel_affine(x: &Tensor, stats: &Tensor, per_sample: bool) -> Result<Tensor> {
    let (n, c, h, w) = x.nchw()?;
    let hw = h * w;
    let k = if per_sample { n * c } else { c };
    if stats.numel() != 2 * k {
        bail!(
            "norm statistics have {} values, expected {}",
            stats.numel(),
            2 * k
        );
    }
    match x.device() {
        Device::Cpu => {
            let s = stats.host();
            let mut out = crate::backend::cpu::unwritten(x.numel());
            out.par_chunks_mut(hw)
                .zip(x.host().par_chunks(hw))
                .enumerate()
                .for_each(|(nc, (o, xi))| {
                    let kk = if per_sample { nc } else { nc % c };
                    let (sc, sh) = (s[kk], s[k + kk]);
                    for (ov, &xv) in o.iter_mut().zip(xi) {
                        ov.write(xv * sc + sh);
                    }
                });
            // SAFETY: the chunks of x and out pair up one to one, and each element is written.
            let out = unsafe { crate::backend::cpu::assume_written(out) };
            Ok(Tensor::cpu(x.shape().to_vec(), out))
        }
        Device::Gpu(ctx) => {
            let y = gpu_empty(&ctx, x.shape())?;
            let params = NormParams {
                n: n as u32,
                c: c as u32,
                hw: hw as u32,
                per_sample: per_sample as u32,
                eps: EPS,
                ..Default::default()
            };
            ctx.dispatch(
                "norm.wgsl",
                "channel_affine",
                &[x.buf(), stats.buf()],
                y.buf(),
                &params,
                groups_1d(x.numel(), 256),
            )?;
            Ok(y)
        }
    }
}

/// PyTorch `nn.LayerNorm` over the last dimension: each row of `x` `[.., c]` normalized to zero
/// mean and unit (biased) variance, then `* gamma + beta`. `gamma_beta` holds gamma then beta
/// (`[2c]`, as [`LayerNorm`] keeps them).
pub fn layer_norm(x: &Tensor, gamma_beta: &Tensor, eps: f32) -> Result<Tensor> {
    let c = *x.shape().last().unwrap_or(&0);
    if c == 0 || gamma_beta.numel() != 2 * c {
        bail!(
            "layer norm over {c} features needs gamma and beta of {c} each, got {} values (input {:?})",
            gamma_beta.numel(),
            x.shape()
        );
    }
    let rows = x.numel() / c;
    match crate::tensor::same_device(&[x, gamma_beta])? {
        Device::Cpu => Ok(Tensor::cpu(
            x.shape().to_vec(),
            layer_norm_cpu(x.host(), gamma_beta.host(), c, eps),
        )),
        Device::Gpu(ctx) => {
            let y = gpu_empty(&ctx, x.shape())?;
            let params = NormParams {
                n: rows as u32,
                c: c as u32,
                eps,
                ..Default::default()
            };
            ctx.dispatch(
                "norm.wgsl",
                "layer_norm",
                &[x.buf(), gamma_beta.buf()],
                y.buf(),
                &params,
                [rows.min(65535) as u32, rows.div_ceil(65535) as u32, 1],
            )?;
            Ok(y)
        }
    }
}

/// The CPU twin of [`layer_norm`] (two-pass mean and variance per row, in f64).
pub fn layer_norm_cpu(x: &[f32], gamma_beta: &[f32], c: usize, eps: f32) -> Vec<f32> {
    let (g, b) = gamma_beta.split_at(c);
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(c)
        .zip(x.par_chunks(c))
        .for_each(|(o, r)| {
            let mean = r.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
            let var = r.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / c as f64;
            let scale = 1.0 / (var + eps as f64).sqrt();
            for i in 0..c {
                o[i] = ((r[i] as f64 - mean) * scale) as f32 * g[i] + b[i];
            }
        });
    out
}

/// A `nn.LayerNorm(c)` with its parameters on the device.
pub struct LayerNorm {
    gamma_beta: Tensor,
    pub eps: f32,
}

impl LayerNorm {
    pub fn new(device: &Device, gamma: &[f32], beta: &[f32], eps: f32) -> Result<LayerNorm> {
        if gamma.len() != beta.len() {
            bail!(
                "layer norm: {} gammas but {} betas",
                gamma.len(),
                beta.len()
            );
        }
        let gamma_beta = Tensor::from_vec(device, &[2 * gamma.len()], [gamma, beta].concat())?;
        Ok(LayerNorm { gamma_beta, eps })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        layer_norm(x, &self.gamma_beta, self.eps)
    }
}
