//! Networks, one directory per model family (SPADE, CLIP, the Stable Diffusion UNet and VAE) and one file
//! per concept, each layer built from the checkpoint's keys through the prefix loader
//! ([`crate::weights::vars`]).
pub mod bert;
pub mod clip;
pub mod hf_tokenizer;
pub mod prior;
pub mod spade;
pub mod unet;
pub mod vae;

pub use bert::{BertConfig, BertModel, SentenceEncoder};
pub use clip::{ClipTextConfig, ClipTextEncoder};
pub use spade::{ConvEncoder, SpadeConfig, SpadeGenerator};
pub use unet::{UNet2DConditionConfig, UNet2DConditionModel};
pub use vae::{AutoencoderKL, AutoencoderKLConfig};
