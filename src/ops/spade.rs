//! SPADE modulation fused with the parameter-free norm and the optional leaky-ReLU
//! (kernels/spade.wgsl): `out = act(norm(x) * (1 + gamma) + beta)`.
use super::gpu_empty;
use super::norm::ParamFreeNorm;
use crate::backend::{Device, gpu::groups_1d};
use crate::tensor::{Tensor, same_device};
use anyhow::{Result, bail};
use rayon::prelude::*;

crate::kernel_params! {
    /// spade.wgsl's `Params`.
    pub struct SpadeParams {
        pub n: u32, pub c: u32, pub hw: u32, pub per_sample: u32,
        /// 1: leaky-ReLU with `slope` after the modulation.
        pub act: u32, pub slope: f32, pub _p0: u32, pub _p1: u32,
    }
}

/// `gb` holds gamma (channels 0..C) then beta (channels C..2C), as produced by one conv with
/// 2C outputs (mlp_gamma and mlp_beta stacked). `slope` applies leaky-ReLU when given.
pub fn modulate(
    x: &Tensor,
    norm: &ParamFreeNorm,
    gb: &Tensor,
    slope: Option<f32>,
) -> Result<Tensor> {
    let (n, c, h, w) = x.nchw()?;
    if gb.shape() != [n, 2 * c, h, w] {
        bail!(
            "SPADE modulation: gamma/beta shape {:?} does not match input {:?} (expected [{n}, {}, {h}, {w}])",
            gb.shape(),
            x.shape(),
            2 * c
        );
    }
    let (own, per_sample) = norm.stats(x)?;
    let stats = own
        .as_ref()
        .or(norm.folded())
        .expect("either folded or computed");
    let hw = h * w;
    match same_device(&[x, gb, stats])? {
        Device::Cpu => {
            let s = stats.host();
            let k = if per_sample { n * c } else { c };
            let (xv, gbv) = (x.host(), gb.host());
            let mut out = crate::backend::cpu::unwritten(x.numel());
            out.par_chunks_mut(hw).enumerate().for_each(|(nc, o)| {
                let (b, ch) = (nc / c, nc % c);
                let kk = if per_sample { nc } else { ch };
                let (sc, sh) = (s[kk], s[k + kk]);
                let xi = &xv[nc * hw..(nc + 1) * hw];
                let g = &gbv[(b * 2 * c + ch) * hw..][..hw];
                let be = &gbv[(b * 2 * c + c + ch) * hw..][..hw];
                for i in 0..hw {
                    // Plain multiply-add: `mul_add` is a libm call (no vectorisation) without target FMA.
                    let normed = xi[i] * sc + sh;
                    let mut v = normed * (1.0 + g[i]) + be[i];
                    if let Some(sl) = slope
                        && v <= 0.0
                    {
                        v *= sl;
                    }
                    o[i].write(v);
                }
            });
            // SAFETY: the chunks cover the output, and the loop writes each element.
            let out = unsafe { crate::backend::cpu::assume_written(out) };
            Ok(Tensor::cpu(x.shape().to_vec(), out))
        }
        Device::Gpu(ctx) => {
            let y = gpu_empty(&ctx, x.shape())?;
            let params = SpadeParams {
                n: n as u32,
                c: c as u32,
                hw: hw as u32,
                per_sample: per_sample as u32,
                act: slope.is_some() as u32,
                slope: slope.unwrap_or(0.0),
                ..Default::default()
            };
            ctx.dispatch(
                "spade.wgsl",
                "modulate",
                &[x.buf(), stats.buf(), gb.buf()],
                y.buf(),
                &params,
                groups_1d(x.numel(), 256),
            )?;
            Ok(y)
        }
    }
}
