//! The UNet's levels (diffusers unets/unet_2d_blocks.py): down blocks that keep every
//! intermediate map as a skip connection, the mid block, and up blocks that concatenate the skips
//! back in, last kept first.
use super::attention::{Transformer2DModel, TransformerArgs};
use super::config::{BlockKind, BlockPlan};
use super::resnet::{Downsample2D, ResnetArgs, ResnetBlock2D, Upsample2D};
use crate::ops;
use crate::tensor::Tensor;
use crate::weights::vars::Vars;
use anyhow::{Result, bail};

/// What every block shares from the UNet config.
#[derive(Clone, Copy, Debug)]
pub struct Shared {
    pub temb_channels: usize,
    pub groups: usize,
    pub eps: f32,
    pub use_linear_projection: bool,
    pub downsample_padding: usize,
}

fn resnet_args(s: Shared, p: &BlockPlan) -> ResnetArgs {
    ResnetArgs {
        temb_channels: Some(s.temb_channels),
        groups: s.groups,
        eps: s.eps,
        output_scale_factor: p.output_scale_factor,
    }
}

/// The Transformer2DModels of a block, one per resnet (none for a plain block).
fn load_attentions(
    v: &Vars,
    s: Shared,
    p: &BlockPlan,
    count: usize,
) -> Result<Vec<Transformer2DModel>> {
    if p.kind == BlockKind::Plain {
        return Ok(vec![]);
    }
    let a = TransformerArgs {
        heads: p.num_attention_heads,
        cross_attention_dim: p.cross_attention_dim,
        groups: s.groups,
        use_linear_projection: s.use_linear_projection,
        only_cross_attention: p.only_cross_attention,
    };
    (0..count)
        .map(|i| {
            Transformer2DModel::load(
                &v.pp("attentions").pp(i),
                p.out_channels,
                p.transformer_layers[i],
                a,
            )
        })
        .collect()
}

/// `CrossAttnDownBlock2D` (resnet → transformer, per layer) or `DownBlock2D` (resnets only),
/// then a Downsample2D unless it is the last level.
pub struct DownBlock {
    pub kind: BlockKind,
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
    pub downsamplers: Option<Downsample2D>,
}

impl DownBlock {
    pub fn load(v: &Vars, s: Shared, p: &BlockPlan) -> Result<Self> {
        let ra = resnet_args(s, p);
        Ok(DownBlock {
            kind: p.kind,
            resnets: (0..p.num_layers)
                .map(|i| {
                    let cin = if i == 0 {
                        p.in_channels
                    } else {
                        p.out_channels
                    };
                    ResnetBlock2D::load(&v.pp("resnets").pp(i), cin, p.out_channels, ra)
                })
                .collect::<Result<_>>()?,
            attentions: load_attentions(v, s, p, p.num_layers)?,
            downsamplers: if p.add_sample {
                let d = v.pp("downsamplers").pp(0);
                Some(Downsample2D::load(
                    &d,
                    p.out_channels,
                    s.downsample_padding,
                )?)
            } else {
                None
            },
        })
    }

    /// FLOPs on `[b, Cin, h, w]` with `lk` text tokens, and the output size.
    pub fn flops(&self, b: usize, h: usize, w: usize, lk: usize) -> (f64, (usize, usize)) {
        let mut f: f64 = self.resnets.iter().map(|r| r.flops(b, h, w)).sum();
        f += self
            .attentions
            .iter()
            .map(|a| a.flops(b, h, w, lk))
            .sum::<f64>();
        match &self.downsamplers {
            Some(d) => (f + d.flops(b, h, w), d.out_size(h, w)),
            None => (f, (h, w)),
        }
    }

    /// Runs the block on the last map of `skips` and appends its output states there (each
    /// layer's output, then the downsampled map): the up blocks take them back as skip
    /// connections, and the last one is the block's output.
    pub fn forward(&self, skips: &mut Vec<Tensor>, temb: &Tensor, text: &Tensor) -> Result<()> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            let mut h = resnet.forward(last(skips)?, Some(temb))?;
            if let Some(attn) = self.attentions.get(i) {
                h = attn.forward(&h, text)?;
            }
            skips.push(h);
        }
        if let Some(down) = &self.downsamplers {
            let h = down.forward(last(skips)?)?;
            skips.push(h);
        }
        Ok(())
    }
}

fn last(skips: &[Tensor]) -> Result<&Tensor> {
    skips
        .last()
        .ok_or_else(|| anyhow::anyhow!("UNet down block: no input map"))
}

/// `UNetMidBlock2DCrossAttn`: resnet, then (transformer → resnet) per layer.
pub struct UNetMidBlock2DCrossAttn {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
}

impl UNetMidBlock2DCrossAttn {
    pub fn load(v: &Vars, s: Shared, p: &BlockPlan) -> Result<Self> {
        let ra = resnet_args(s, p);
        let c = p.out_channels;
        Ok(UNetMidBlock2DCrossAttn {
            resnets: (0..=p.num_layers)
                .map(|i| ResnetBlock2D::load(&v.pp("resnets").pp(i), c, c, ra))
                .collect::<Result<_>>()?,
            attentions: load_attentions(v, s, p, p.num_layers)?,
        })
    }

    pub fn flops(&self, b: usize, h: usize, w: usize, lk: usize) -> f64 {
        let r: f64 = self.resnets.iter().map(|r| r.flops(b, h, w)).sum();
        r + self
            .attentions
            .iter()
            .map(|a| a.flops(b, h, w, lk))
            .sum::<f64>()
    }

    pub fn forward(&self, x: &Tensor, temb: &Tensor, text: &Tensor) -> Result<Tensor> {
        let mut h = self.resnets[0].forward(x, Some(temb))?;
        for (attn, resnet) in self.attentions.iter().zip(&self.resnets[1..]) {
            h = attn.forward(&h, text)?;
            h = resnet.forward(&h, Some(temb))?;
        }
        Ok(h)
    }
}

/// `CrossAttnUpBlock2D` or `UpBlock2D`: per layer, the last remaining skip is concatenated to
/// the channels, then resnet (→ transformer); an Upsample2D unless it is the last level.
pub struct UpBlock {
    pub kind: BlockKind,
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
    pub upsamplers: Option<Upsample2D>,
}

impl UpBlock {
    pub fn load(v: &Vars, s: Shared, p: &BlockPlan) -> Result<Self> {
        let ra = resnet_args(s, p);
        let n = p.num_layers;
        Ok(UpBlock {
            kind: p.kind,
            resnets: (0..n)
                .map(|i| {
                    let skip = if i == n - 1 {
                        p.in_channels
                    } else {
                        p.out_channels
                    };
                    let cin = if i == 0 {
                        p.prev_output_channel
                    } else {
                        p.out_channels
                    };
                    ResnetBlock2D::load(&v.pp("resnets").pp(i), cin + skip, p.out_channels, ra)
                })
                .collect::<Result<_>>()?,
            attentions: load_attentions(v, s, p, n)?,
            upsamplers: if p.add_sample {
                Some(Upsample2D::load(&v.pp("upsamplers").pp(0), p.out_channels)?)
            } else {
                None
            },
        })
    }

    /// FLOPs on `h`×`w` maps with `lk` text tokens, upsampling to `out` (if it upsamples).
    pub fn flops(&self, b: usize, (h, w): (usize, usize), out: (usize, usize), lk: usize) -> f64 {
        let r: f64 = self.resnets.iter().map(|r| r.flops(b, h, w)).sum();
        let a: f64 = self.attentions.iter().map(|a| a.flops(b, h, w, lk)).sum();
        r + a
            + self
                .upsamplers
                .as_ref()
                .map_or(0.0, |u| u.flops(b, out.0, out.1))
    }

    /// Takes this block's skips from the end of `skips`; `upsample_size` forces the upsampler's
    /// output size.
    pub fn forward(
        &self,
        x: Tensor,
        skips: &mut Vec<Tensor>,
        temb: &Tensor,
        text: &Tensor,
        upsample_size: Option<(usize, usize)>,
    ) -> Result<Tensor> {
        let mut h = x;
        for (i, resnet) in self.resnets.iter().enumerate() {
            let Some(skip) = skips.pop() else {
                bail!("UNet up block: no skip connection left for resnet {i}");
            };
            h = resnet.forward(&ops::concat(&[&h, &skip], 1)?, Some(temb))?;
            if let Some(attn) = self.attentions.get(i) {
                h = attn.forward(&h, text)?;
            }
        }
        match &self.upsamplers {
            Some(up) => up.forward(&h, upsample_size),
            None => Ok(h),
        }
    }
}
