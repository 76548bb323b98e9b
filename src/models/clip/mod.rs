//! CLIP (OpenAI; OpenCLIP): the text tower Stable Diffusion conditions on.
pub mod text;

pub use text::{ClipTextConfig, ClipTextEncoder};
