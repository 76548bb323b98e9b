//! Stable Diffusion's VAE: diffusers' `AutoencoderKL`, built from its `vae/config.json` and
//! weights under diffusers' own key names, one file per diffusers module file.
pub mod attention_processor;
pub mod autoencoder_kl;
pub mod config;
pub mod unet_2d_blocks;
/// Named as diffusers' autoencoders/vae.py (Encoder, Decoder, DiagonalGaussianDistribution).
#[allow(clippy::module_inception)]
pub mod vae;

pub use autoencoder_kl::{AutoencoderKL, Tiling};
pub use config::AutoencoderKLConfig;
pub use vae::DiagonalGaussianDistribution;
