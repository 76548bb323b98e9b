//! Networks, one directory per model family and one file per concept, each layer built from the
//! checkpoint's keys through the prefix loader ([`crate::weights::vars`]).
pub mod clip;
pub mod spade;

pub use clip::{ClipTextConfig, ClipTextEncoder};
pub use spade::{ConvEncoder, SpadeConfig, SpadeGenerator};
