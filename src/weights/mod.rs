//! Weights: safetensors in and out ([`store`]), the safe `.pth` reader ([`torch_pickle`]) and the
//! NVlabs checkpoint converter ([`convert`]).
pub mod convert;
pub mod dtype;
pub mod store;
pub mod torch_pickle;
pub mod vars;

pub use store::WeightStore;
