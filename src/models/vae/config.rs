//! `AutoencoderKLConfig`: diffusers' `AutoencoderKL` config, field names and defaults as its
//! `__init__`, so a checkpoint's `vae/config.json` deserialises directly (fields this model does
//! not read, such as `_class_name`, are ignored).
//!
//! [`AutoencoderKLConfig::check`] refuses what this implementation does not support, naming the
//! key and its value.
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// `sample_size`: one side, or `[height, width]` (diffusers reads the first entry).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SampleSize {
    One(usize),
    Each(Vec<usize>),
}

impl SampleSize {
    /// The side diffusers' tiling takes (`sample_size[0]` for a list).
    pub fn first(&self) -> usize {
        match self {
            SampleSize::One(n) => *n,
            SampleSize::Each(v) => v.first().copied().unwrap_or(0),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AutoencoderKLConfig {
    /// Image channels into the encoder.
    #[serde(default = "d::three")]
    pub in_channels: usize,
    /// Image channels out of the decoder.
    #[serde(default = "d::three")]
    pub out_channels: usize,
    #[serde(default = "d::down_block_types")]
    pub down_block_types: Vec<String>,
    #[serde(default = "d::up_block_types")]
    pub up_block_types: Vec<String>,
    #[serde(default = "d::block_out_channels")]
    pub block_out_channels: Vec<usize>,
    /// Resnets per encoder level (decoder levels have one more).
    #[serde(default = "d::one")]
    pub layers_per_block: usize,
    #[serde(default = "d::act_fn")]
    pub act_fn: String,
    #[serde(default = "d::latent_channels")]
    pub latent_channels: usize,
    #[serde(default = "d::norm_num_groups")]
    pub norm_num_groups: usize,
    /// The image size the model was trained at; it sets the tile size of the tiled decode.
    #[serde(default = "d::sample_size")]
    pub sample_size: SampleSize,
    /// Latents are `z · scaling_factor` for the diffusion model (applied by the caller).
    #[serde(default = "d::scaling_factor")]
    pub scaling_factor: f32,
    /// Latents are `(z − shift_factor) · scaling_factor` when set (applied by the caller).
    #[serde(default)]
    pub shift_factor: Option<f32>,
    /// Per-channel latent statistics of some models (informational here).
    #[serde(default)]
    pub latents_mean: Option<Vec<f32>>,
    #[serde(default)]
    pub latents_std: Option<Vec<f32>>,
    /// Run in float32 under half-precision pipelines; everything here is float32.
    #[serde(default = "d::yes")]
    pub force_upcast: bool,
    /// A 1×1 conv on the encoder's moments.
    #[serde(default = "d::yes")]
    pub use_quant_conv: bool,
    /// A 1×1 conv on the latents before the decoder.
    #[serde(default = "d::yes")]
    pub use_post_quant_conv: bool,
    /// A self-attention between the two mid-block resnets of the encoder and the decoder.
    #[serde(default = "d::yes")]
    pub mid_block_add_attention: bool,
}

/// `AutoencoderKL.__init__`'s defaults (diffusers, autoencoders/autoencoder_kl.py).
mod d {
    use super::SampleSize;
    pub fn three() -> usize {
        3
    }
    pub fn one() -> usize {
        1
    }
    pub fn yes() -> bool {
        true
    }
    pub fn down_block_types() -> Vec<String> {
        vec!["DownEncoderBlock2D".into()]
    }
    pub fn up_block_types() -> Vec<String> {
        vec!["UpDecoderBlock2D".into()]
    }
    pub fn block_out_channels() -> Vec<usize> {
        vec![64]
    }
    pub fn act_fn() -> String {
        "silu".into()
    }
    pub fn latent_channels() -> usize {
        4
    }
    pub fn norm_num_groups() -> usize {
        32
    }
    pub fn sample_size() -> SampleSize {
        SampleSize::One(32)
    }
    pub fn scaling_factor() -> f32 {
        0.18215
    }
}

const DOWN_TYPE: &str = "DownEncoderBlock2D";
const UP_TYPE: &str = "UpDecoderBlock2D";

impl AutoencoderKLConfig {
    /// Stable Diffusion 1.x's VAE (`runwayml/stable-diffusion-v1-5/vae/config.json`).
    pub fn sd15() -> AutoencoderKLConfig {
        let mut c: AutoencoderKLConfig = serde_json::from_str("{}").unwrap();
        c.down_block_types = vec![DOWN_TYPE.into(); 4];
        c.up_block_types = vec![UP_TYPE.into(); 4];
        c.block_out_channels = vec![128, 256, 512, 512];
        c.layers_per_block = 2;
        c.sample_size = SampleSize::One(512);
        c
    }

    /// The decoder's upscale (and the encoder's downscale) factor: 2 per level but the last.
    pub fn scale_factor(&self) -> usize {
        1 << self.block_out_channels.len().saturating_sub(1)
    }

    /// diffusers' `tile_latent_min_size`: the latent side of one decoder tile,
    /// `int(sample_size / scale_factor)`; a latent with a longer side is decoded in tiles.
    pub fn tile_latent_min_size(&self) -> usize {
        self.sample_size.first() / self.scale_factor()
    }

    /// Checks every option this model does not implement.
    pub fn check(&self) -> Result<()> {
        let n = self.block_out_channels.len();
        if n == 0 {
            bail!("VAE config: block_out_channels is empty");
        }
        for (key, types) in [
            ("down_block_types", &self.down_block_types),
            ("up_block_types", &self.up_block_types),
        ] {
            if types.len() != n {
                bail!(
                    "VAE config: {} {key} {types:?} for {n} block_out_channels {:?}",
                    types.len(),
                    self.block_out_channels
                );
            }
        }
        for (key, types, want) in [
            ("down_block_types", &self.down_block_types, DOWN_TYPE),
            ("up_block_types", &self.up_block_types, UP_TYPE),
        ] {
            for (i, t) in types.iter().enumerate() {
                if t != want {
                    bail!("VAE config: {key}[{i}] '{t}' is not supported ({want})");
                }
            }
        }
        if !matches!(self.act_fn.as_str(), "silu" | "swish") {
            bail!(
                "VAE config: act_fn '{}' is not supported (silu, swish)",
                self.act_fn
            );
        }
        let g = self.norm_num_groups;
        for (i, &c) in self.block_out_channels.iter().enumerate() {
            if g == 0 || c % g != 0 {
                bail!(
                    "VAE config: norm_num_groups {g} does not divide block_out_channels[{i}] = {c}"
                );
            }
        }
        for (key, v) in [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("latent_channels", self.latent_channels),
            ("layers_per_block", self.layers_per_block),
        ] {
            if v == 0 {
                bail!("VAE config: {key} 0 is not supported (at least 1)");
            }
        }
        Ok(())
    }
}
