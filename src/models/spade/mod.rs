//! NVIDIA's SPADE / GauGAN (CVPR 2019), exact to NVlabs (SPADE_SPEC.md):
//! - [`config`]: the NVlabs options (`label_nc`, `norm_G`, …) a model file carries;
//! - [`input`]: label and instance maps prepared as NVlabs `test.py` does;
//! - [`generator`] built from [`resblock`]s, each from two or three [`norm`] (SPADE) layers, whose
//!   γ/β the paint loop keeps in a [`gamma_beta_cache`];
//! - [`encoder`]: the VAE style encoder;
//! - [`convert`]: NVlabs `.pth` checkpoints → our safetensors; [`classes`]: built-in class tables.
pub mod classes;
pub mod config;
pub mod convert;
pub mod encoder;
pub mod gamma_beta_cache;
pub mod generator;
pub mod input;
pub mod norm;
pub mod resblock;

pub use config::SpadeConfig;
pub use encoder::ConvEncoder;
pub use generator::{
    SpadeGenerator, generator_flops, generator_flops_executed, generator_flops_trunk,
};

use crate::backend::Device;
use crate::weights::{WeightStore, vars::Vars};
use anyhow::Result;

/// What a model file whose tensors do not fit its config is told to check.
pub const FLAGS_HINT: &str = "check the flags (--num-upsampling-layers, --norm-g, --use-vae)";

/// Checks that `store` holds exactly the tensors of a generator (and, if the config has one, a
/// style encoder under `netE.`) with `cfg`, with the right shapes, by building both on the CPU.
pub fn check_weights(store: &WeightStore, cfg: &SpadeConfig) -> Result<()> {
    let v = Vars::new(store, &Device::Cpu);
    SpadeGenerator::load(&v, cfg)?;
    if cfg.has_encoder {
        ConvEncoder::load(&v.pp("netE"), cfg)?;
    }
    v.finish(FLAGS_HINT)
}
