//! spadework: semantic image synthesis on hand-written WGSL kernels (wgpu) with a fast CPU twin.
//!
//! Layers, bottom to top:
//! - [`backend`]: the two devices (`cpu`: Rust + gemm + rayon; `gpu`: wgpu running `kernels/*.wgsl`).
//! - [`tensor`]: an NCHW f32 tensor that lives on one device.
//! - [`ops`]: one module per op family — shape rules, the CPU twin, the GPU dispatch.
//! - [`models`]: networks written like the paper's figure (SPADE generator, style encoder).
//! - [`weights`]: safetensors loading, the safe `.pth` reader, the NVlabs converter.
//! - [`io`]: label maps, palettes, images, `.npy`.
//! - [`paint`]: the painter's editing model, render worker and window (`spadework paint`).
pub mod backend;
pub mod bench;
pub mod io;
pub mod models;
pub mod ops;
pub mod paint;
pub mod render;
pub mod rng;
pub mod tensor;
pub mod weights;

pub use backend::{BackendChoice, Device};
pub use tensor::Tensor;
