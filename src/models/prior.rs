//! The look prior (unCLIP's prior, small): a denoiser that predicts a clean style vector z from
//! a noisy one, the diffusion time and a sentence embedding,
//!
//!   x̂₀ = L₃(SiLU(L₂(SiLU(L₁(SiLU(L₀([z_t, text, temb(t)])))))))
//!
//! with `temb(t)` the cos-then-sin sinusoid of t. Trained by tools/train_prior.py to map the
//! MiniLM embedding of a sentence to the SPADE landscape model's style z (its encoder's mean on
//! renders); sampled with DDIM and classifier-free guidance by the text-to-image pipeline.
//! Keys: `layers.{0..3}.{weight,bias}`; the config is under `prior_config` in the header.
use crate::backend::Device;
use crate::ops::{self, Linear};
use crate::tensor::Tensor;
use crate::weights::vars::Vars;
use anyhow::{Result, bail};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PriorConfig {
    pub z_dim: usize,
    pub text_dim: usize,
    pub temb_dim: usize,
    pub width: usize,
    pub layers: usize,
    /// The DDIM schedule it was trained on (diffusers `scheduler_config.json` fields).
    pub scheduler: serde_json::Value,
    /// What it was trained to produce (tools/train_prior.py `--targets`): `"mu"` (the style
    /// encoder's means; absent in older files) or `"pool"` (z ~ N(0, I) labelled by look).
    #[serde(default)]
    pub targets: Option<String>,
}

pub struct LookPrior {
    pub cfg: PriorConfig,
    layers: Vec<Linear>,
    device: Device,
}

impl LookPrior {
    pub fn load(v: &Vars, cfg: &PriorConfig) -> Result<LookPrior> {
        if cfg.layers < 2 || cfg.temb_dim % 2 != 0 || cfg.z_dim == 0 || cfg.width == 0 {
            bail!(
                "prior config: needs at least 2 layers, an even temb_dim and positive widths, \
                 got {cfg:?}"
            );
        }
        let l = v.pp("layers");
        let fin = cfg.z_dim + cfg.text_dim + cfg.temb_dim;
        let layers = (0..cfg.layers)
            .map(|i| {
                let fi = if i == 0 { fin } else { cfg.width };
                let fo = if i + 1 == cfg.layers {
                    cfg.z_dim
                } else {
                    cfg.width
                };
                l.linear(&i.to_string(), [fo, fi], true)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(LookPrior {
            cfg: cfg.clone(),
            layers,
            device: v.device().clone(),
        })
    }

    /// x̂₀ `[B, z_dim]` for z_t `[B, z_dim]`, one timestep, text `[B, text_dim]`.
    pub fn forward(&self, zt: &Tensor, t: f32, text: &Tensor) -> Result<Tensor> {
        let b = zt.shape()[0];
        if zt.shape() != [b, self.cfg.z_dim] || text.shape() != [b, self.cfg.text_dim] {
            bail!(
                "prior: z_t must be [B, {}] and text [B, {}], got {:?} and {:?}",
                self.cfg.z_dim,
                self.cfg.text_dim,
                zt.shape(),
                text.shape()
            );
        }
        let temb = sinusoid(t as f64, self.cfg.temb_dim);
        let temb: Vec<f32> = (0..b).flat_map(|_| temb.iter().copied()).collect();
        let temb = Tensor::from_vec(&self.device, &[b, self.cfg.temb_dim], temb)?;
        let mut h = ops::concat(&[zt, text, &temb], 1)?;
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward(&h)?;
            if i + 1 < self.layers.len() {
                h = ops::silu(&h)?;
            }
        }
        Ok(h)
    }
}

/// cos then sin of `t · exp(−ln(10000) · i / (dim/2))`, i < dim/2.
pub fn sinusoid(t: f64, dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let a: Vec<f64> = (0..half)
        .map(|i| t * (-(10000f64.ln()) * i as f64 / half as f64).exp())
        .collect();
    a.iter()
        .map(|v| v.cos() as f32)
        .chain(a.iter().map(|v| v.sin() as f32))
        .collect()
}
