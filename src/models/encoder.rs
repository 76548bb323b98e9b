//! The VAE style encoder, NVlabs `ConvEncoder` (SPADE_SPEC §5): six stride-2 3×3 convs without
//! bias, each followed by InstanceNorm(affine=False) and (from the second on) preceded by
//! lrelu(0.2); then lrelu, flatten (C, H, W) and fc_mu / fc_var. Tensors live under `netE.`.
use super::config::SpadeConfig;
use super::spade::{LRELU, Loader};
use crate::ops::{self, Conv2d, Linear};
use crate::tensor::Tensor;
use anyhow::{Result, bail};

/// Width of mu/logvar (hard-coded 256 in NVlabs; must equal z_dim).
pub const ZW: usize = 256;

/// Layers: as recorded by the converter, else NVlabs' rule (6 when crop_size ≥ 256, else 5).
pub fn expected_tensors(cfg: &SpadeConfig) -> Vec<(String, Vec<usize>)> {
    let ndf = cfg.ngf;
    let layers = cfg
        .encoder_layers
        .unwrap_or(if cfg.crop_size >= 256 { 6 } else { 5 });
    let chans = [3, ndf, 2 * ndf, 4 * ndf, 8 * ndf, 8 * ndf, 8 * ndf];
    let mut v: Vec<(String, Vec<usize>)> = (1..=layers)
        .map(|k| {
            (
                format!("netE.layer{k}.0.weight"),
                vec![chans[k], chans[k - 1], 3, 3],
            )
        })
        .collect();
    for fc in ["fc_mu", "fc_var"] {
        v.push((format!("netE.{fc}.weight"), vec![ZW, 8 * ndf * 4 * 4]));
        v.push((format!("netE.{fc}.bias"), vec![ZW]));
    }
    v
}

pub struct ConvEncoder {
    layers: Vec<Conv2d>,
    fc_mu: Linear,
    fc_var: Linear,
}

impl ConvEncoder {
    pub fn load(l: &Loader, cfg: &SpadeConfig) -> Result<ConvEncoder> {
        if cfg.z_dim != ZW {
            bail!(
                "the style encoder outputs {ZW} values but z_dim is {}",
                cfg.z_dim
            );
        }
        let mut layers = Vec::new();
        for (name, shape) in expected_tensors(cfg) {
            if let Some(stem) = name.strip_suffix(".weight")
                && name.contains(".layer")
            {
                let s: [usize; 4] = shape.try_into().unwrap();
                layers.push(l.conv(stem, s, false, 2, 1)?);
            }
        }
        let fin = 8 * cfg.ngf * 16;
        Ok(ConvEncoder {
            layers,
            fc_mu: l.linear("netE.fc_mu", [ZW, fin])?,
            fc_var: l.linear("netE.fc_var", [ZW, fin])?,
        })
    }

    /// x: [1, 3, 256, 256] in [-1, 1] → (mu, logvar), each [1, 256].
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (n, c, h, w) = x.nchw()?;
        if (c, h, w) != (3, 256, 256) {
            bail!("the style encoder takes a 3x256x256 image, got {c}x{h}x{w}");
        }
        let mut x = ops::instance_norm(&self.layers[0].forward(x)?)?;
        for layer in &self.layers[1..] {
            x = ops::instance_norm(&layer.forward(&ops::leaky_relu(&x, LRELU)?)?)?;
        }
        let x = ops::leaky_relu(&x, LRELU)?;
        let flat = x.numel() / n;
        if flat != self.fc_mu.fin {
            bail!(
                "style encoder: flattened features {flat} != fc_mu input {} (NVlabs needs crop_size ≥ 256)",
                self.fc_mu.fin
            );
        }
        let x = x.reshape(&[n, flat])?;
        Ok((self.fc_mu.forward(&x)?, self.fc_var.forward(&x)?))
    }
}
