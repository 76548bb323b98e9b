//! Weights: safetensors in and out, mapped and decoded lazily ([`store`], through one dtype table,
//! [`dtype`]), the prefix loader every model builds its layers with ([`vars`]) and the safe `.pth`
//! reader ([`torch_pickle`]).
pub mod dtype;
pub mod folder;
pub mod store;
pub mod torch_pickle;
pub mod vars;

pub use store::WeightStore;
