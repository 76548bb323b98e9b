//! Weights: safetensors in and out, mapped and decoded lazily ([`store`], through one dtype table,
//! [`dtype`]), the weight files of a Hugging Face component folder ([`folder`]), the prefix loader
//! every model builds its layers with ([`vars`]) and the safe `.pth` reader ([`pth`]).
pub mod dtype;
pub mod folder;
pub mod pth;
pub mod store;
pub mod vars;

pub use store::WeightStore;
