//! Stable Diffusion's UNet: diffusers' `UNet2DConditionModel`, built from its `unet/config.json`
//! and weights under diffusers' own key names, one file per diffusers module file.
pub mod attention;
pub mod config;
pub mod embeddings;
pub mod resnet;
pub mod unet_2d_blocks;
pub mod unet_2d_condition;

pub use config::UNet2DConditionConfig;
pub use unet_2d_condition::UNet2DConditionModel;

use crate::ops::{Conv2d, Linear};

/// FLOPs (2 per multiply-add) of `conv` on a batch of `b` producing `oh`×`ow` maps.
fn conv_flops(conv: &Conv2d, b: usize, oh: usize, ow: usize) -> f64 {
    2.0 * (b * oh * ow) as f64 * (conv.cout * conv.cin * conv.kh * conv.kw) as f64
}

/// FLOPs of `linear` on `rows` rows.
fn linear_flops(linear: &Linear, rows: usize) -> f64 {
    2.0 * rows as f64 * (linear.fin * linear.fout) as f64
}
