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
