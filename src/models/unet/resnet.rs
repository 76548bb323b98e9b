//! The convolutional pieces of the UNet and the VAE (diffusers resnet.py, downsampling.py,
//! upsampling.py): `ResnetBlock2D` with or without its time-embedding projection,
//! `Downsample2D` (a stride-2 conv) and `Upsample2D` (nearest 2× then a conv).
use super::{conv_flops, linear_flops};
use crate::ops::{self, Conv2d, GroupNorm, Linear, NearestRule};
use crate::tensor::Tensor;
use crate::weights::vars::Vars;
use anyhow::{Result, bail};

/// `ResnetBlock2D` (pre-norm, `time_embedding_norm="default"`):
///
///   h = conv1(SiLU(norm1(x))) + time_emb_proj(SiLU(temb))[:, :, None, None]   (no term
///                                                                    without a time embedding)
///   h = conv2(SiLU(norm2(h)))             (dropout: identity at inference)
///   out = (conv_shortcut(x) or x + h) / output_scale_factor
///
/// with a 1×1 `conv_shortcut` when the channel count changes.
pub struct ResnetBlock2D {
    pub norm1: GroupNorm,
    pub conv1: Conv2d,
    /// None when the block takes no time embedding (`temb_channels=None`: the VAE).
    pub time_emb_proj: Option<Linear>,
    pub norm2: GroupNorm,
    pub conv2: Conv2d,
    pub conv_shortcut: Option<Conv2d>,
    pub output_scale_factor: f32,
}

/// The settings a resnet takes from its block.
#[derive(Clone, Copy, Debug)]
pub struct ResnetArgs {
    /// The time embedding's width, or None for a block without one.
    pub temb_channels: Option<usize>,
    pub groups: usize,
    pub eps: f32,
    pub output_scale_factor: f32,
}

impl ResnetBlock2D {
    pub fn load(v: &Vars, cin: usize, cout: usize, a: ResnetArgs) -> Result<Self> {
        Ok(ResnetBlock2D {
            norm1: v.group_norm("norm1", a.groups, cin, a.eps)?,
            conv1: v.conv2d("conv1", [cout, cin, 3, 3], true, 1, 1)?,
            time_emb_proj: match a.temb_channels {
                Some(t) => Some(v.linear("time_emb_proj", [cout, t], true)?),
                None => None,
            },
            norm2: v.group_norm("norm2", a.groups, cout, a.eps)?,
            conv2: v.conv2d("conv2", [cout, cout, 3, 3], true, 1, 1)?,
            conv_shortcut: if cin != cout {
                Some(v.conv2d("conv_shortcut", [cout, cin, 1, 1], true, 1, 0)?)
            } else {
                None
            },
            output_scale_factor: a.output_scale_factor,
        })
    }

    /// FLOPs of [`Self::forward`] on `[b, Cin, h, w]` (convolutions and the projection).
    pub fn flops(&self, b: usize, h: usize, w: usize) -> f64 {
        conv_flops(&self.conv1, b, h, w)
            + conv_flops(&self.conv2, b, h, w)
            + self
                .conv_shortcut
                .as_ref()
                .map_or(0.0, |c| conv_flops(c, b, h, w))
            + self
                .time_emb_proj
                .as_ref()
                .map_or(0.0, |l| linear_flops(l, b))
    }

    /// x: `[B, Cin, H, W]`, temb: `[B, temb_channels]` (None for a block without a time
    /// embedding) → `[B, Cout, H, W]`.
    pub fn forward(&self, x: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        let mut h = self.conv1.forward(&self.norm1.forward_silu(x)?)?;
        match (&self.time_emb_proj, temb) {
            (Some(proj), Some(temb)) => {
                let (b, c, _, _) = h.nchw()?;
                let t = proj.forward(&ops::silu(temb)?)?.reshape(&[b, c, 1, 1])?;
                h = ops::add_bcast(&h, &t)?;
            }
            (None, None) => {}
            (Some(_), None) => bail!("ResnetBlock2D: this block needs a time embedding"),
            (None, Some(_)) => bail!("ResnetBlock2D: this block takes no time embedding"),
        }
        let h = self.conv2.forward(&self.norm2.forward_silu(&h)?)?;
        let projected;
        let shortcut = match &self.conv_shortcut {
            Some(conv) => {
                projected = conv.forward(x)?;
                &projected
            }
            None => x,
        };
        if self.output_scale_factor == 1.0 {
            ops::add(shortcut, &h)
        } else {
            let s = 1.0 / self.output_scale_factor;
            ops::lincomb(&[(s, shortcut), (s, &h)])
        }
    }
}

/// `Downsample2D(use_conv=True, name="op")`: a 3×3 stride-2 conv; with `padding` 0 the input is
/// first padded by one zero row and column at the bottom and right.
pub struct Downsample2D {
    pub conv: Conv2d,
    pub pad_bottom_right: bool,
}

impl Downsample2D {
    pub fn load(v: &Vars, channels: usize, padding: usize) -> Result<Self> {
        Ok(Downsample2D {
            conv: v.conv2d("conv", [channels, channels, 3, 3], true, 2, padding)?,
            pad_bottom_right: padding == 0,
        })
    }

    /// The output size for an `h`×`w` input.
    pub fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        let extra = self.pad_bottom_right as usize;
        let o = |n: usize| (n + extra + 2 * self.conv.pad - 3) / 2 + 1;
        (o(h), o(w))
    }

    pub fn flops(&self, b: usize, h: usize, w: usize) -> f64 {
        let (oh, ow) = self.out_size(h, w);
        conv_flops(&self.conv, b, oh, ow)
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.pad_bottom_right {
            self.conv.forward(&ops::pad2d(x, [0, 1, 0, 1])?)
        } else {
            self.conv.forward(x)
        }
    }
}

/// `Upsample2D(use_conv=True)`: nearest-neighbour upsampling (2×, or to the skip connection's
/// size when the UNet's input size is not a multiple of its total downsampling) then a 3×3 conv.
pub struct Upsample2D {
    pub conv: Conv2d,
}

impl Upsample2D {
    pub fn load(v: &Vars, channels: usize) -> Result<Self> {
        Ok(Upsample2D {
            conv: v.conv2d("conv", [channels, channels, 3, 3], true, 1, 1)?,
        })
    }

    /// FLOPs of the conv on an `oh`×`ow` (upsampled) map.
    pub fn flops(&self, b: usize, oh: usize, ow: usize) -> f64 {
        conv_flops(&self.conv, b, oh, ow)
    }

    pub fn forward(&self, x: &Tensor, size: Option<(usize, usize)>) -> Result<Tensor> {
        let up = match size {
            // F.interpolate(size=…, mode="nearest")
            Some((h, w)) => ops::resize_nearest(x, h, w, NearestRule::Torch)?,
            None => ops::upsample2x(x)?,
        };
        self.conv.forward(&up)
    }
}
