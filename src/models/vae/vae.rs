//! The VAE's halves (diffusers autoencoders/vae.py): `Encoder` (image → the moments of the
//! latent's Gaussian), `Decoder` (latent → image) and `DiagonalGaussianDistribution`.
use super::config::AutoencoderKLConfig;
use super::unet_2d_blocks::{DownEncoderBlock2D, UNetMidBlock2D, UpDecoderBlock2D};
use crate::ops::{self, Conv2d, GroupNorm};
use crate::tensor::Tensor;
use crate::weights::vars::Vars;
use anyhow::{Result, bail};

/// `Encoder(double_z=True)`:
///
///   h = conv_in(x)
///   h = down_blocks(h)            DownEncoderBlock2D per level, ÷2 in size but at the last
///   h = mid_block(h)
///   moments = conv_out(SiLU(conv_norm_out(h)))        2 · latent_channels: mean, logvar
pub struct Encoder {
    pub conv_in: Conv2d,
    pub down_blocks: Vec<DownEncoderBlock2D>,
    pub mid_block: UNetMidBlock2D,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl Encoder {
    pub fn load(v: &Vars, c: &AutoencoderKLConfig) -> Result<Self> {
        let ch = &c.block_out_channels;
        let (n, g) = (ch.len(), c.norm_num_groups);
        let last = ch[n - 1];
        let conv_in = v.conv2d("conv_in", [ch[0], c.in_channels, 3, 3], true, 1, 1)?;
        let mut down_blocks = Vec::with_capacity(n);
        let mut cout = ch[0];
        for (i, &c_i) in ch.iter().enumerate() {
            let cin = cout;
            cout = c_i;
            down_blocks.push(DownEncoderBlock2D::load(
                &v.pp("down_blocks").pp(i),
                c.layers_per_block,
                cin,
                cout,
                g,
                i + 1 < n,
            )?);
        }
        Ok(Encoder {
            conv_in,
            down_blocks,
            mid_block: UNetMidBlock2D::load(
                &v.pp("mid_block"),
                last,
                g,
                c.mid_block_add_attention,
            )?,
            conv_norm_out: v.group_norm("conv_norm_out", g, last, 1e-6)?,
            conv_out: v.conv2d("conv_out", [2 * c.latent_channels, last, 3, 3], true, 1, 1)?,
        })
    }

    /// x: `[B, in_channels, H, W]` → moments `[B, 2 · latent_channels, h, w]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.conv_in.forward(x)?;
        for b in &self.down_blocks {
            h = b.forward(&h)?;
        }
        let h = self.mid_block.forward(&h)?;
        self.conv_out.forward(&self.conv_norm_out.forward_silu(&h)?)
    }
}

/// `Decoder` (`norm_type="group"`):
///
///   h = conv_in(z)
///   h = mid_block(h)
///   h = up_blocks(h)              UpDecoderBlock2D per level (widest first), ×2 but at the last
///   image = conv_out(SiLU(conv_norm_out(h)))
pub struct Decoder {
    pub conv_in: Conv2d,
    pub mid_block: UNetMidBlock2D,
    pub up_blocks: Vec<UpDecoderBlock2D>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl Decoder {
    pub fn load(v: &Vars, c: &AutoencoderKLConfig) -> Result<Self> {
        let ch = &c.block_out_channels;
        let (n, g) = (ch.len(), c.norm_num_groups);
        let last = ch[n - 1];
        let conv_in = v.conv2d("conv_in", [last, c.latent_channels, 3, 3], true, 1, 1)?;
        let mid_block =
            UNetMidBlock2D::load(&v.pp("mid_block"), last, g, c.mid_block_add_attention)?;
        let rev: Vec<usize> = ch.iter().rev().copied().collect();
        let mut up_blocks = Vec::with_capacity(n);
        let mut cout = rev[0];
        for (i, &c_i) in rev.iter().enumerate() {
            let cin = cout;
            cout = c_i;
            up_blocks.push(UpDecoderBlock2D::load(
                &v.pp("up_blocks").pp(i),
                c.layers_per_block + 1,
                cin,
                cout,
                g,
                i + 1 < n,
            )?);
        }
        Ok(Decoder {
            conv_in,
            mid_block,
            up_blocks,
            conv_norm_out: v.group_norm("conv_norm_out", g, ch[0], 1e-6)?,
            conv_out: v.conv2d("conv_out", [c.out_channels, ch[0], 3, 3], true, 1, 1)?,
        })
    }

    /// z: `[B, latent_channels, h, w]` → `[B, out_channels, H, W]`.
    pub fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let h = self.conv_in.forward(z)?;
        let mut h = self.mid_block.forward(&h)?;
        for b in &self.up_blocks {
            h = b.forward(&h)?;
        }
        self.conv_out.forward(&self.conv_norm_out.forward_silu(&h)?)
    }
}

/// The encoder's posterior over latents, a Gaussian with a diagonal covariance: the moments'
/// first half of the channels is the mean, the second the log-variance, clamped to [-30, 20].
pub struct DiagonalGaussianDistribution {
    /// `[B, C, h, w]`.
    pub mean: Tensor,
    /// `[B, C, h, w]`, in [-30, 20].
    pub logvar: Tensor,
}

impl DiagonalGaussianDistribution {
    /// moments: `[B, 2C, h, w]`.
    pub fn new(moments: &Tensor) -> Result<Self> {
        let (b, c2, h, w) = moments.nchw()?;
        if c2 % 2 != 0 {
            bail!("DiagonalGaussianDistribution: moments need an even channel count, got {c2}");
        }
        let c = c2 / 2;
        let mean = ops::narrow(moments, 1, 0, c)?;
        let logvar = ops::narrow(moments, 1, c, c)?;
        // Clamped on the host: a latent is small next to the networks around it.
        let clamped = logvar
            .to_vec()?
            .into_iter()
            .map(|v| v.clamp(-30.0, 20.0))
            .collect();
        let logvar = Tensor::from_vec(&moments.device(), &[b, c, h, w], clamped)?;
        Ok(DiagonalGaussianDistribution { mean, logvar })
    }

    /// A draw from the posterior: `mean + exp(logvar / 2) · noise`, noise `[B, C, h, w]` standard
    /// normal (the caller's, so that it can come from any generator).
    pub fn sample(&self, noise: &Tensor) -> Result<Tensor> {
        if noise.shape() != self.mean.shape() {
            bail!(
                "DiagonalGaussianDistribution::sample: noise has shape {:?}, the latents {:?}",
                noise.shape(),
                self.mean.shape()
            );
        }
        let std: Vec<f32> = self
            .logvar
            .to_vec()?
            .into_iter()
            .map(|v| (0.5 * v).exp())
            .collect();
        let std = Tensor::from_vec(&self.mean.device(), self.mean.shape(), std)?;
        ops::add(&self.mean, &ops::mul(&std, noise)?)
    }

    /// The most likely latent: the mean.
    pub fn mode(&self) -> &Tensor {
        &self.mean
    }
}
