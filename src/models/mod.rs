//! Networks, one file per concept.
pub mod classes;
pub mod clip_text;
pub mod config;
pub mod encoder;
pub mod spade;

pub use clip_text::{ClipTextConfig, ClipTextEncoder};
pub use config::SpadeConfig;
pub use encoder::ConvEncoder;
pub use spade::SpadeGenerator;
