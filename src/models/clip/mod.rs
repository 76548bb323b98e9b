//! CLIP (OpenAI; OpenCLIP): the text tower Stable Diffusion conditions on, and its tokenizer.
pub mod text;
pub mod tokenizer;

pub use text::{ClipTextConfig, ClipTextEncoder};
pub use tokenizer::ClipTokenizer;
