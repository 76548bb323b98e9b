//! `AutoencoderKL` (diffusers autoencoders/autoencoder_kl.py): Stable Diffusion's VAE, built from
//! its `vae/config.json` and weights under diffusers' key names, with diffusers' tiled decode
//! for latents too large to decode at once.
//!
//! Latents scale: [`AutoencoderKL::encode`] and [`AutoencoderKL::decode`] work on the VAE's own
//! latents `z`. The diffusion model's latents are `(z − shift_factor) · scaling_factor`
//! (`shift_factor` null: 0), so, as diffusers' pipelines do, the caller multiplies an encoded
//! latent by `scaling_factor` before the UNet and divides the UNet's latent by it (then adds
//! `shift_factor`) before decoding.
use super::config::AutoencoderKLConfig;
use super::vae::{Decoder, DiagonalGaussianDistribution, Encoder};
use crate::ops::{self, Conv2d};
use crate::tensor::Tensor;
use crate::weights::vars::Vars;
use anyhow::{Context, Result, bail};

pub struct AutoencoderKL {
    pub config: AutoencoderKLConfig,
    pub encoder: Encoder,
    pub decoder: Decoder,
    /// 1×1 on the moments (`use_quant_conv`).
    pub quant_conv: Option<Conv2d>,
    /// 1×1 on the latents (`use_post_quant_conv`).
    pub post_quant_conv: Option<Conv2d>,
}

/// Whether [`AutoencoderKL::decode_with`] decodes in tiles.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tiling {
    /// Never: one pass over the whole latent.
    Off,
    /// diffusers' `enable_tiling()` rule with its tile size: tiles of
    /// [`AutoencoderKLConfig::tile_latent_min_size`] (`sample_size / scale_factor`) overlapping
    /// by 0.25, used when a side of the latent is longer than one tile.
    Auto,
    /// The same rule with the given tile side (latent pixels) and overlap factor (`--vae-tiling`
    /// with an explicit, e.g. smaller, tile).
    Tiles { tile: usize, overlap: f32 },
}

/// diffusers' `tile_overlap_factor`.
pub const TILE_OVERLAP_FACTOR: f32 = 0.25;

impl AutoencoderKL {
    /// Builds the model from `config`; every tensor of `vars` must be used.
    pub fn load(vars: &Vars, config: &AutoencoderKLConfig) -> Result<Self> {
        config.check()?;
        let lc = config.latent_channels;
        let vae = AutoencoderKL {
            config: config.clone(),
            encoder: Encoder::load(&vars.pp("encoder"), config)?,
            decoder: Decoder::load(&vars.pp("decoder"), config)?,
            quant_conv: if config.use_quant_conv {
                Some(vars.conv2d("quant_conv", [2 * lc, 2 * lc, 1, 1], true, 1, 0)?)
            } else {
                None
            },
            post_quant_conv: if config.use_post_quant_conv {
                Some(vars.conv2d("post_quant_conv", [lc, lc, 1, 1], true, 1, 0)?)
            } else {
                None
            },
        };
        vars.finish("is the VAE config the checkpoint's (vae/config.json)?")?;
        Ok(vae)
    }

    /// image: `[B, in_channels, H, W]` with values in [-1, 1] → the posterior over latents
    /// `[B, latent_channels, ⌈H / f⌉, ⌈W / f⌉]` (f = [`AutoencoderKLConfig::scale_factor`]).
    pub fn encode(&self, image: &Tensor) -> Result<DiagonalGaussianDistribution> {
        let (_, c, _, _) = image.nchw().context("AutoencoderKL::encode: image")?;
        if c != self.config.in_channels {
            bail!(
                "AutoencoderKL::encode: the image has {c} channels, the model takes {} (shape {:?})",
                self.config.in_channels,
                image.shape()
            );
        }
        let mut moments = self.encoder.forward(image)?;
        if let Some(q) = &self.quant_conv {
            moments = q.forward(&moments)?;
        }
        DiagonalGaussianDistribution::new(&moments)
    }

    /// latents: `[B, latent_channels, h, w]` (the VAE's scale: divide the diffusion model's by
    /// `scaling_factor` first) → image `[B, out_channels, h · f, w · f]`, in about [-1, 1].
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        self.check_latents(latents, "decode")?;
        match &self.post_quant_conv {
            Some(p) => self.decoder.forward(&p.forward(latents)?),
            None => self.decoder.forward(latents),
        }
    }

    fn check_latents(&self, z: &Tensor, what: &str) -> Result<(usize, usize, usize, usize)> {
        let s = z
            .nchw()
            .with_context(|| format!("AutoencoderKL::{what}: latents"))?;
        if s.1 != self.config.latent_channels {
            bail!(
                "AutoencoderKL::{what}: the latents have {} channels, the model takes {} (shape \
                 {:?})",
                s.1,
                self.config.latent_channels,
                z.shape()
            );
        }
        Ok(s)
    }

    /// Floating-point operations of [`Self::decode`] on an `h`×`w` latent (convolutions, the
    /// mid-block attention's projections and products; norms and activations left out).
    pub fn decode_flops(&self, h: usize, w: usize) -> f64 {
        let conv = |cin: usize, cout: usize, k: usize, hh: usize, ww: usize| {
            2.0 * (cin * cout * k * k * hh * ww) as f64
        };
        let c = &self.config;
        let chans: Vec<usize> = c.block_out_channels.iter().rev().copied().collect();
        let (lat, c0) = (c.latent_channels, chans[0]);
        let (mut hh, mut ww) = (h, w);
        let mut f = conv(lat, lat, 1, hh, ww) + conv(lat, c0, 3, hh, ww);
        f += 2.0 * 2.0 * conv(c0, c0, 3, hh, ww);
        if c.mid_block_add_attention {
            let n = (hh * ww) as f64;
            f += 4.0 * 2.0 * n * (c0 * c0) as f64 + 2.0 * 2.0 * n * n * c0 as f64;
        }
        let mut prev = c0;
        for (i, &cout) in chans.iter().enumerate() {
            for j in 0..=c.layers_per_block {
                let cin = if j == 0 { prev } else { cout };
                f += conv(cin, cout, 3, hh, ww) + conv(cout, cout, 3, hh, ww);
                if cin != cout {
                    f += conv(cin, cout, 1, hh, ww);
                }
            }
            if i + 1 < chans.len() {
                (hh, ww) = (hh * 2, ww * 2);
                f += conv(cout, cout, 3, hh, ww);
            }
            prev = cout;
        }
        f + conv(prev, c.out_channels, 3, hh, ww)
    }

    /// Whether `tiling` decodes an `h`×`w` latent in tiles, and with which tile and overlap:
    /// diffusers tiles when a side is longer than the tile.
    pub fn tiles_for(&self, h: usize, w: usize, tiling: Tiling) -> Option<(usize, f32)> {
        let (tile, overlap) = match tiling {
            Tiling::Off => return None,
            Tiling::Auto => (self.config.tile_latent_min_size(), TILE_OVERLAP_FACTOR),
            Tiling::Tiles { tile, overlap } => (tile, overlap),
        };
        (h > tile || w > tile).then_some((tile, overlap))
    }

    /// [`Self::decode`], in tiles when `tiling` says so ([`Self::decode_tiled`]).
    pub fn decode_with(&self, latents: &Tensor, tiling: Tiling) -> Result<Tensor> {
        let (_, _, h, w) = self.check_latents(latents, "decode")?;
        match self.tiles_for(h, w, tiling) {
            Some((tile, overlap)) => self.decode_tiled(latents, tile, overlap),
            None => self.decode(latents),
        }
    }

    /// diffusers' `tiled_decode`: the latent cut into `tile`×`tile` tiles starting every
    /// `int(tile · (1 − overlap))` latent pixels (tiles at the bottom and right edges are
    /// smaller), each decoded alone into a tile of side `tile · f`; each tile's top rows and
    /// left columns are blended linearly with the (already blended) tile above and to its left
    /// over `int(tile · f · overlap)` image pixels, and its first `tile · f − that` rows and
    /// columns kept. Only one row of decoded tiles is held at a time.
    pub fn decode_tiled(&self, latents: &Tensor, tile: usize, overlap: f32) -> Result<Tensor> {
        let (_, _, h, w) = self.check_latents(latents, "decode_tiled")?;
        let tile_sample = tile * self.config.scale_factor();
        let step = (tile as f64 * (1.0 - overlap as f64)) as usize;
        if tile == 0 || step == 0 || !(0.0..1.0).contains(&overlap) {
            bail!(
                "AutoencoderKL::decode_tiled: tile {tile} with overlap {overlap} gives no step \
                 between tiles (a tile of at least 1 and an overlap in [0, 1))"
            );
        }
        let blend = (tile_sample as f64 * overlap as f64) as usize;
        let keep = tile_sample - blend;
        let mut above: Vec<Tensor> = Vec::new();
        let mut rows: Vec<Tensor> = Vec::new();
        for i in (0..h).step_by(step) {
            let mut row: Vec<Tensor> = Vec::new();
            let mut kept: Vec<Tensor> = Vec::new();
            for (j, x) in (0..w).step_by(step).enumerate() {
                let z = ops::narrow(latents, 2, i, tile.min(h - i))?;
                let z = ops::narrow(&z, 3, x, tile.min(w - x))?;
                let mut t = self.decode(&z)?;
                if let Some(a) = above.get(j) {
                    t = blend_edge(a, &t, blend, 2)?;
                }
                if let Some(left) = row.last() {
                    t = blend_edge(left, &t, blend, 3)?;
                }
                kept.push(crop(&t, keep)?);
                row.push(t);
            }
            rows.push(ops::concat(&kept.iter().collect::<Vec<_>>(), 3)?);
            above = row;
        }
        ops::concat(&rows.iter().collect::<Vec<_>>(), 2)
    }
}

/// diffusers' `blend_v` (dim 2) / `blend_h` (dim 3): over e = min(a's, b's size, `extent`)
/// rows (columns), b[y] = a[−e + y] · (1 − y/e) + b[y] · (y/e); the rest of b unchanged.
fn blend_edge(a: &Tensor, b: &Tensor, extent: usize, dim: usize) -> Result<Tensor> {
    let (sa, sb) = (a.shape()[dim], b.shape()[dim]);
    let e = sa.min(sb).min(extent);
    if e == 0 {
        return ops::narrow(b, dim as isize, 0, sb);
    }
    let mut ramp_shape = vec![1; 4];
    ramp_shape[dim] = e;
    let ramp = |f: &dyn Fn(f64) -> f64| -> Result<Tensor> {
        let v = (0..e).map(|y| f(y as f64 / e as f64) as f32).collect();
        Tensor::from_vec(&b.device(), &ramp_shape, v)
    };
    let a_tail = ops::narrow(a, dim as isize, sa - e, e)?;
    let b_head = ops::narrow(b, dim as isize, 0, e)?;
    let head = ops::add(
        &ops::mul_bcast(&a_tail, &ramp(&|r| 1.0 - r)?)?,
        &ops::mul_bcast(&b_head, &ramp(&|r| r)?)?,
    )?;
    if e == sb {
        return Ok(head);
    }
    let rest = ops::narrow(b, dim as isize, e, sb - e)?;
    ops::concat(&[&head, &rest], dim as isize)
}

/// `t[:, :, :keep, :keep]`.
fn crop(t: &Tensor, keep: usize) -> Result<Tensor> {
    let (_, _, h, w) = t.nchw()?;
    let t = ops::narrow(t, 2, 0, keep.min(h))?;
    ops::narrow(&t, 3, 0, keep.min(w))
}
