//! The timestep embedding (diffusers embeddings.py): DDPM's sinusoidal `Timesteps` and the
//! `TimestepEmbedding` MLP that turns it (or any vector, e.g. a pooled text embedding for
//! `class_embed_type: "projection"`) into the embedding every resnet adds.
use crate::backend::Device;
use crate::ops::{self, Linear};
use crate::tensor::Tensor;
use crate::weights::vars::Vars;
use anyhow::{Result, bail};

/// `Timesteps(num_channels, flip_sin_to_cos, downscale_freq_shift)`: for each timestep t,
/// frequencies fᵢ = exp(−ln(10000)·i / (half − shift)), i < half = C/2, and the embedding
/// [sin(t·f), cos(t·f)] (or [cos, sin] with `flip_sin_to_cos`), zero-padded to C.
///
/// A batch has a few timesteps of a few hundred channels, so this runs on the host, in float32
/// step by step as PyTorch does (the argument t·fᵢ reaches ~1000, where one rounding more or
/// less moves sin by ~1e-4), and the result is uploaded.
pub struct Timesteps {
    pub num_channels: usize,
    pub flip_sin_to_cos: bool,
    pub downscale_freq_shift: f32,
}

impl Timesteps {
    /// `[timesteps.len() × num_channels]`, row-major.
    pub fn embed(&self, timesteps: &[f32]) -> Vec<f32> {
        let c = self.num_channels;
        let half = c / 2;
        let ln = -(10000f64.ln() as f32);
        let denom = half as f32 - self.downscale_freq_shift;
        let freqs: Vec<f32> = (0..half).map(|i| (ln * i as f32 / denom).exp()).collect();
        let mut out = vec![0f32; timesteps.len() * c];
        for (row, &t) in out.chunks_mut(c).zip(timesteps) {
            let (first, second) = row[..2 * half].split_at_mut(half);
            for ((a, b), &f) in first.iter_mut().zip(second.iter_mut()).zip(&freqs) {
                let x = t * f;
                (*a, *b) = if self.flip_sin_to_cos {
                    (x.cos(), x.sin())
                } else {
                    (x.sin(), x.cos())
                };
            }
        }
        out
    }
}

/// `TimestepEmbedding`: linear_1 → SiLU → linear_2 (→ SiLU with `timestep_post_act`), on
/// `[B, in] → [B, time_embed_dim]`.
pub struct TimestepEmbedding {
    pub linear_1: Linear,
    pub linear_2: Linear,
    pub post_act: bool,
}

impl TimestepEmbedding {
    pub fn load(v: &Vars, in_channels: usize, dim: usize, post_act: bool) -> Result<Self> {
        Ok(TimestepEmbedding {
            linear_1: v.linear("linear_1", [dim, in_channels], true)?,
            linear_2: v.linear("linear_2", [dim, dim], true)?,
            post_act,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = ops::silu(&self.linear_1.forward(x)?)?;
        let h = self.linear_2.forward(&h)?;
        if self.post_act { ops::silu(&h) } else { Ok(h) }
    }
}

/// The timesteps of a batch of `batch`: one per item, or one for all (broadcast, as diffusers'
/// `timesteps.expand(batch)`).
pub fn batch_timesteps(timesteps: &[f32], batch: usize) -> Result<Vec<f32>> {
    match timesteps.len() {
        1 => Ok(vec![timesteps[0]; batch]),
        n if n == batch => Ok(timesteps.to_vec()),
        n => bail!("UNet: {n} timesteps for a batch of {batch} (give 1 or {batch})"),
    }
}

/// [`Timesteps::embed`] as a `[B, C]` tensor on `device`.
pub fn time_proj(proj: &Timesteps, timesteps: &[f32], device: &Device) -> Result<Tensor> {
    Tensor::from_vec(
        device,
        &[timesteps.len(), proj.num_channels],
        proj.embed(timesteps),
    )
}
