//! SPADE(C) (SPADE_SPEC §3): a parameter-free norm of the features, then `n · (1 + γ) + β` with γ
//! and β from a small conv MLP on the label map resized to the features' size. Keys under the
//! layer (e.g. `head_0.norm_0`): `param_free_norm.running_{mean,var}` (batch norm),
//! `mlp_shared.0`, `mlp_gamma`, `mlp_beta`.
use super::config::{NormKind, SpadeConfig};
use super::gamma_beta_cache::{self, GammaBetaCache};
use super::input::Level;
use crate::ops::{self, Conv2d, OneHotConv, ParamFreeNorm};
use crate::tensor::Tensor;
use crate::weights::vars::{Init, Vars};
use anyhow::Result;
use std::sync::{Arc, Mutex};

/// Hidden width of every SPADE's shared MLP (hard-coded in NVlabs).
pub const NHIDDEN: usize = 128;

/// A conv that reads the one-hot label map (`weight` and `bias` under `v`), run as a gather.
pub(super) fn onehot_conv(
    v: &Vars,
    shape: [usize; 4],
    has_edge: bool,
    pad: usize,
    relu: bool,
) -> Result<OneHotConv> {
    let w = v.get("weight", &shape, Init::FanIn)?;
    let b = v.get("bias", &shape[..1], Init::Uniform(-0.1, 0.1))?;
    OneHotConv::new(v.device(), &w, shape, &b, has_edge, pad, relu)
}

/// SPADE(C): param-free norm, then `n * (1 + gamma) + beta` from a conv MLP on the resized map.
pub struct Spade {
    param_free_norm: ParamFreeNorm,
    /// Reads the one-hot map: a gather (see [`OneHotConv`]).
    mlp_shared: OneHotConv,
    /// mlp_gamma and mlp_beta stacked into one conv with 2C outputs (one pass over the hidden map).
    mlp_gamma_beta: Conv2d,
    /// Padding of each of the two convs (kernel size / 2).
    pad: usize,
    /// γ/β for the last map seen, when the generator's cache is on.
    pub(super) cache: Mutex<Option<GammaBetaCache>>,
}

impl Spade {
    /// `v`: the weights under this SPADE's key (e.g. `head_0.norm_0`).
    pub(super) fn load(v: &Vars, c: usize, cfg: &SpadeConfig) -> Result<Spade> {
        let (norm, ks) = (cfg.norm_g.norm, cfg.norm_g.kernel);
        let pad = ks / 2;
        let param_free_norm = match norm {
            NormKind::Batch => {
                let n = v.pp("param_free_norm");
                let var = n.get("running_var", &[c], Init::Uniform(0.5, 1.5))?;
                if let Some((i, x)) = var.iter().enumerate().find(|(_, x)| **x < 0.0) {
                    anyhow::bail!(
                        "{}: tensor '{}' holds the negative variance {x} at channel {i}; a \
                         BatchNorm's running variance is never below 0 (a corrupt checkpoint)",
                        v.source(),
                        n.key("running_var")
                    );
                }
                ParamFreeNorm::batch(
                    v.device(),
                    &n.get("running_mean", &[c], Init::Uniform(-0.1, 0.1))?,
                    &var,
                )?
            }
            NormKind::Instance => ParamFreeNorm::Instance,
        };
        let mlp_shared = onehot_conv(
            &v.pp("mlp_shared").pp(0),
            [NHIDDEN, cfg.semantic_nc(), ks, ks],
            !cfg.no_instance,
            pad,
            true, // mlp_shared = Sequential(conv, ReLU)
        )?;
        let shape = [c, NHIDDEN, ks, ks];
        let bias = Init::Uniform(-0.1, 0.1);
        let (g, b) = (v.pp("mlp_gamma"), v.pp("mlp_beta"));
        let mlp_gamma_beta = Conv2d::with_storage(
            v.device(),
            &[
                g.get("weight", &shape, Init::FanIn)?,
                b.get("weight", &shape, Init::FanIn)?,
            ]
            .concat(),
            [2 * c, NHIDDEN, ks, ks],
            Some(&[g.get("bias", &[c], bias)?, b.get("bias", &[c], bias)?].concat()),
            1,
            pad,
            v.storage(),
        )?;
        Ok(Spade {
            param_free_norm,
            mlp_shared,
            mlp_gamma_beta,
            pad,
            cache: Mutex::new(None),
        })
    }

    /// `seg` must already be at x's resolution (see [`SegPyramid`]); with its host copy the
    /// γ/β cache is used. `act` fuses a leaky-ReLU.
    pub(super) fn forward(&self, x: &Tensor, seg: Level, act: Option<f32>) -> Result<Tensor> {
        let gamma_beta = match seg.host {
            Some(host) => {
                gamma_beta_cache::gamma_beta_cached(&self.cache, self.pad, seg.map, host, |m| {
                    self.gamma_beta(m)
                })?
            }
            None => Arc::new(self.gamma_beta(seg.map)?),
        };
        ops::modulate(x, &self.param_free_norm, &gamma_beta, act)
    }

    pub(super) fn gamma_beta(&self, seg: &Tensor) -> Result<Tensor> {
        let actv = self.mlp_shared.forward(seg)?; // conv + ReLU
        self.mlp_gamma_beta.forward(&actv)
    }
}
