//! Weights: safetensors in and out ([`store`]), the safe `.pth` reader ([`pth`]) and the
//! NVlabs checkpoint converter ([`convert`]).
pub mod convert;
pub mod dtype;
pub mod pth;
pub mod store;
pub mod vars;

pub use store::WeightStore;
