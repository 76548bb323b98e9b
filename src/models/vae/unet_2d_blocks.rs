//! The VAE's levels (diffusers unets/unet_2d_blocks.py): `DownEncoderBlock2D`,
//! `UpDecoderBlock2D` and `UNetMidBlock2D`, all of resnets without a time embedding.
use super::attention_processor::Attention;
use crate::models::unet::resnet::{Downsample2D, ResnetArgs, ResnetBlock2D, Upsample2D};
use crate::tensor::Tensor;
use crate::weights::vars::Vars;
use anyhow::Result;

/// The resnet settings of every VAE block: no time embedding, eps 1e-6, no output scaling.
pub fn resnet_args(groups: usize) -> ResnetArgs {
    ResnetArgs {
        temb_channels: None,
        groups,
        eps: 1e-6,
        output_scale_factor: 1.0,
    }
}

/// `num_layers` resnets `resnets.{i}`, the first from `cin` channels, all to `cout`.
fn load_resnets(
    v: &Vars,
    num_layers: usize,
    cin: usize,
    cout: usize,
    groups: usize,
) -> Result<Vec<ResnetBlock2D>> {
    (0..num_layers)
        .map(|i| {
            let c = if i == 0 { cin } else { cout };
            ResnetBlock2D::load(&v.pp("resnets").pp(i), c, cout, resnet_args(groups))
        })
        .collect()
}

/// `DownEncoderBlock2D`: resnets, then (but at the last level) a `Downsample2D` with padding 0,
/// i.e. a zero row and column added at the bottom and right before the stride-2 conv.
pub struct DownEncoderBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    pub downsamplers: Option<Downsample2D>,
}

impl DownEncoderBlock2D {
    pub fn load(
        v: &Vars,
        num_layers: usize,
        cin: usize,
        cout: usize,
        groups: usize,
        add_downsample: bool,
    ) -> Result<Self> {
        Ok(DownEncoderBlock2D {
            resnets: load_resnets(v, num_layers, cin, cout, groups)?,
            downsamplers: if add_downsample {
                Some(Downsample2D::load(&v.pp("downsamplers").pp(0), cout, 0)?)
            } else {
                None
            },
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.resnets[0].forward(x, None)?;
        for r in &self.resnets[1..] {
            h = r.forward(&h, None)?;
        }
        match &self.downsamplers {
            Some(d) => d.forward(&h),
            None => Ok(h),
        }
    }
}

/// `UpDecoderBlock2D`: resnets, then (but at the last level) an `Upsample2D` (nearest 2×, conv).
pub struct UpDecoderBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    pub upsamplers: Option<Upsample2D>,
}

impl UpDecoderBlock2D {
    pub fn load(
        v: &Vars,
        num_layers: usize,
        cin: usize,
        cout: usize,
        groups: usize,
        add_upsample: bool,
    ) -> Result<Self> {
        Ok(UpDecoderBlock2D {
            resnets: load_resnets(v, num_layers, cin, cout, groups)?,
            upsamplers: if add_upsample {
                Some(Upsample2D::load(&v.pp("upsamplers").pp(0), cout)?)
            } else {
                None
            },
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.resnets[0].forward(x, None)?;
        for r in &self.resnets[1..] {
            h = r.forward(&h, None)?;
        }
        match &self.upsamplers {
            Some(u) => u.forward(&h, None),
            None => Ok(h),
        }
    }
}

/// `UNetMidBlock2D` (one layer): resnet → attention (unless `mid_block_add_attention` is false)
/// → resnet, all at the deepest level's width; the attention has one head of all the channels.
pub struct UNetMidBlock2D {
    /// Two resnets, before and after the attention.
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Option<Attention>,
}

impl UNetMidBlock2D {
    pub fn load(v: &Vars, channels: usize, groups: usize, add_attention: bool) -> Result<Self> {
        Ok(UNetMidBlock2D {
            resnets: load_resnets(v, 2, channels, channels, groups)?,
            attentions: if add_attention {
                Some(Attention::load(
                    &v.pp("attentions").pp(0),
                    channels,
                    1,
                    groups,
                    1e-6,
                    1.0,
                )?)
            } else {
                None
            },
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.resnets[0].forward(x, None)?;
        if let Some(a) = &self.attentions {
            h = a.forward(&h)?;
        }
        self.resnets[1].forward(&h, None)
    }
}
