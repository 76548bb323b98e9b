//! The VAE style encoder, NVlabs `ConvEncoder` (SPADE_SPEC §5): six stride-2 3×3 convs without
//! bias, each followed by InstanceNorm(affine=False) and (from the second on) preceded by
//! lrelu(0.2); then lrelu, flatten (C, H, W) and fc_mu / fc_var. Tensors live under `netE.`.
use super::config::SpadeConfig;
use super::resblock::LRELU;
use crate::ops::{self, Conv2d, Linear};
use crate::tensor::Tensor;
use crate::weights::vars::Vars;
use anyhow::{Result, bail};

/// Width of mu/logvar (hard-coded 256 in NVlabs; must equal z_dim).
pub const ZW: usize = 256;

/// Stride-2 layers: as recorded by the converter, else NVlabs' rule (6 when crop_size ≥ 256,
/// else 5).
pub fn num_layers(cfg: &SpadeConfig) -> usize {
    cfg.encoder_layers
        .unwrap_or(if cfg.crop_size >= 256 { 6 } else { 5 })
}

pub struct ConvEncoder {
    layers: Vec<Conv2d>,
    fc_mu: Linear,
    fc_var: Linear,
}

impl ConvEncoder {
    /// `v`: the weights under `netE`.
    pub fn load(v: &Vars, cfg: &SpadeConfig) -> Result<ConvEncoder> {
        if cfg.z_dim != ZW {
            bail!(
                "the style encoder outputs {ZW} values but z_dim is {}",
                cfg.z_dim
            );
        }
        let ndf = cfg.ngf;
        let chans = [3, ndf, 2 * ndf, 4 * ndf, 8 * ndf, 8 * ndf, 8 * ndf];
        let n = num_layers(cfg);
        if !(1..chans.len()).contains(&n) {
            bail!("the style encoder has 1 to 6 layers, the config says {n}");
        }
        let layers = (1..=n)
            .map(|k| {
                v.pp(format!("layer{k}"))
                    .conv2d("0", [chans[k], chans[k - 1], 3, 3], false, 2, 1)
            })
            .collect::<Result<Vec<_>>>()?;
        let fin = 8 * ndf * 4 * 4;
        Ok(ConvEncoder {
            layers,
            fc_mu: v.linear("fc_mu", [ZW, fin], true)?,
            fc_var: v.linear("fc_var", [ZW, fin], true)?,
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
