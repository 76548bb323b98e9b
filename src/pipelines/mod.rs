//! What the CLI, the paint tool and the benches run: a model (or a chain of models) from its
//! files to an image.
pub mod layout_diffusion;
pub mod single_file;
pub mod spade;
pub mod stable_diffusion;
pub mod text_to_image;

pub use spade::SpadePipeline;
pub use stable_diffusion::StableDiffusionPipeline;
