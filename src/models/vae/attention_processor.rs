//! The VAE's mid-block attention: diffusers' `Attention` as `UNetMidBlock2D` builds it
//! (attention_processor.py, `AttnProcessor2_0` on a feature map): a GroupNorm before the
//! projections, biased q/k/v, a residual connection and `rescale_output_factor`.
use crate::ops::{self, AttnMask, GroupNorm, Linear};
use crate::tensor::Tensor;
use crate::weights::vars::Vars;
use anyhow::Result;

/// Self-attention over the pixels of `x: [B, C, H, W]`:
///
///   t = tokens(group_norm(x))                      [B, H·W, C]
///   a = to_out.0(softmax(q·kᵀ/√d)·v),  q, k, v = to_q(t), to_k(t), to_v(t)
///   out = (a as [B, C, H, W] + x) / rescale_output_factor
///
/// with `heads` heads of C / heads channels (one head of all C channels in the VAE).
pub struct Attention {
    pub group_norm: GroupNorm,
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    pub to_out_0: Linear,
    pub heads: usize,
    pub rescale_output_factor: f32,
}

/// The key names of a checkpoint saved before diffusers renamed the VAE attention
/// (`query`/`key`/`value`/`proj_attn`), read when the file has them.
const DEPRECATED: [(&str, &str); 4] = [
    ("to_q", "query"),
    ("to_k", "key"),
    ("to_v", "value"),
    ("to_out.0", "proj_attn"),
];

impl Attention {
    pub fn load(
        v: &Vars,
        channels: usize,
        heads: usize,
        groups: usize,
        eps: f32,
        rescale_output_factor: f32,
    ) -> Result<Self> {
        let old = v.contains("query.weight");
        let name = |n: &'static str| -> &'static str {
            match DEPRECATED.iter().find(|(new, _)| *new == n) {
                Some((_, was)) if old => was,
                _ => n,
            }
        };
        let lin = |n| v.linear(name(n), [channels, channels], true);
        Ok(Attention {
            group_norm: v.group_norm("group_norm", groups, channels, eps)?,
            to_q: lin("to_q")?,
            to_k: lin("to_k")?,
            to_v: lin("to_v")?,
            to_out_0: lin("to_out.0")?,
            heads,
            rescale_output_factor,
        })
    }

    /// x: `[B, C, H, W]` → `[B, C, H, W]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.nchw()?;
        let t = ops::nchw_to_tokens(&self.group_norm.forward(x)?)?;
        let q = self.to_q.forward(&t)?;
        let k = self.to_k.forward(&t)?;
        let v = self.to_v.forward(&t)?;
        let a = ops::attention(&q, &k, &v, self.heads, AttnMask::default())?;
        let a = ops::tokens_to_nchw(&self.to_out_0.forward(&a)?, h, w)?;
        if self.rescale_output_factor == 1.0 {
            ops::add(&a, x)
        } else {
            let s = 1.0 / self.rescale_output_factor;
            ops::lincomb(&[(s, &a), (s, x)])
        }
    }
}
