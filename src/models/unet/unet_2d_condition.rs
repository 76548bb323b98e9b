//! `UNet2DConditionModel` (diffusers unets/unet_2d_condition.py): Stable Diffusion's
//! noise-prediction network. A timestep embedding conditions every resnet; the text tokens
//! condition every transformer through cross-attention.
use super::config::{UNet2DConditionConfig, UNetPlan};
use super::embeddings::{TimestepEmbedding, Timesteps, batch_timesteps, time_proj};
use super::unet_2d_blocks::{DownBlock, Shared, UNetMidBlock2DCrossAttn, UpBlock};
use super::{conv_flops, linear_flops};
use crate::ops::{self, Conv2d, GroupNorm};
use crate::tensor::Tensor;
use crate::weights::vars::Vars;
use anyhow::{Result, bail};

pub struct UNet2DConditionModel {
    pub cfg: UNet2DConditionConfig,
    pub plan: UNetPlan,
    pub conv_in: Conv2d,
    pub time_proj: Timesteps,
    pub time_embedding: TimestepEmbedding,
    /// `class_embed_type: "projection"`: a vector (e.g. a pooled text embedding) through its own
    /// TimestepEmbedding MLP, added to the time embedding.
    pub class_embedding: Option<TimestepEmbedding>,
    pub down_blocks: Vec<DownBlock>,
    pub mid_block: Option<UNetMidBlock2DCrossAttn>,
    pub up_blocks: Vec<UpBlock>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl UNet2DConditionModel {
    /// The network of `cfg` from the weights at the root of `v` (diffusers' keys: `conv_in.*`,
    /// `time_embedding.linear_1.*`, `down_blocks.0.resnets.0.norm1.*`, …). Ends the load: a
    /// tensor under `v` that no layer read is an error.
    pub fn load(v: &Vars, cfg: &UNet2DConditionConfig) -> Result<Self> {
        let plan = cfg.plan()?;
        let ch = &cfg.block_out_channels;
        let c0 = ch[0];
        let ted = plan.time_embed_dim;
        let shared = Shared {
            temb_channels: ted,
            groups: plan.groups,
            eps: cfg.norm_eps,
            use_linear_projection: cfg.use_linear_projection,
            downsample_padding: cfg.downsample_padding,
        };
        let (kin, kout) = (cfg.conv_in_kernel, cfg.conv_out_kernel);
        let model = UNet2DConditionModel {
            conv_in: v.conv2d("conv_in", [c0, cfg.in_channels, kin, kin], true, 1, kin / 2)?,
            time_proj: Timesteps {
                num_channels: c0,
                flip_sin_to_cos: cfg.flip_sin_to_cos,
                downscale_freq_shift: cfg.freq_shift,
            },
            time_embedding: TimestepEmbedding::load(
                &v.pp("time_embedding"),
                c0,
                ted,
                cfg.timestep_post_act.is_some(),
            )?,
            class_embedding: match cfg.projection_class_embeddings_input_dim {
                Some(dim) if cfg.class_embed_type.as_deref() == Some("projection") => Some(
                    TimestepEmbedding::load(&v.pp("class_embedding"), dim, ted, false)?,
                ),
                _ => None,
            },
            down_blocks: plan
                .down
                .iter()
                .enumerate()
                .map(|(i, p)| DownBlock::load(&v.pp("down_blocks").pp(i), shared, p))
                .collect::<Result<_>>()?,
            mid_block: match &plan.mid {
                Some(p) => Some(UNetMidBlock2DCrossAttn::load(
                    &v.pp("mid_block"),
                    shared,
                    p,
                )?),
                None => None,
            },
            up_blocks: plan
                .up
                .iter()
                .enumerate()
                .map(|(i, p)| UpBlock::load(&v.pp("up_blocks").pp(i), shared, p))
                .collect::<Result<_>>()?,
            conv_norm_out: v.group_norm("conv_norm_out", plan.groups, c0, cfg.norm_eps)?,
            conv_out: v.conv2d(
                "conv_out",
                [cfg.out_channels, c0, kout, kout],
                true,
                1,
                kout / 2,
            )?,
            cfg: cfg.clone(),
            plan,
        };
        v.finish("the checkpoint has layers this UNet config does not (check unet/config.json)")?;
        Ok(model)
    }

    /// FLOPs (2 per multiply-add) of one [`Self::forward`] on a `[b, in_channels, h, w]` sample with
    /// `tokens` text tokens: convolutions, linear layers and attention (norms and elementwise ops
    /// not counted).
    pub fn flops(&self, b: usize, h: usize, w: usize, tokens: usize) -> f64 {
        let mut f = conv_flops(&self.conv_in, b, h, w) + conv_flops(&self.conv_out, b, h, w);
        let te = &self.time_embedding;
        f += linear_flops(&te.linear_1, b) + linear_flops(&te.linear_2, b);
        if let Some(ce) = &self.class_embedding {
            f += linear_flops(&ce.linear_1, b) + linear_flops(&ce.linear_2, b);
        }
        // The map size of each level on the way down; the up blocks climb back through them.
        let mut levels = vec![(h, w)];
        for block in &self.down_blocks {
            let (lh, lw) = levels[levels.len() - 1];
            let (bf, next) = block.flops(b, lh, lw, tokens);
            f += bf;
            if block.downsamplers.is_some() {
                levels.push(next);
            }
        }
        let (bh, bw) = levels[levels.len() - 1];
        if let Some(mid) = &self.mid_block {
            f += mid.flops(b, bh, bw, tokens);
        }
        for block in &self.up_blocks {
            let here = levels[levels.len() - 1];
            if block.upsamplers.is_some() && levels.len() > 1 {
                levels.pop();
            }
            f += block.flops(b, here, levels[levels.len() - 1], tokens);
        }
        f
    }

    /// The noise prediction `[B, out_channels, H, W]` for `sample` `[B, in_channels, H, W]` at
    /// `timesteps` (one per batch item, or one for all), conditioned on `encoder_hidden_states`
    /// `[B, L, cross_attention_dim]` and, for a `class_embed_type: "projection"` model, on
    /// `class_labels` `[B, projection_class_embeddings_input_dim]`.
    pub fn forward(
        &self,
        sample: &Tensor,
        timesteps: &[f32],
        encoder_hidden_states: &Tensor,
        class_labels: Option<&Tensor>,
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (b, c, h, w) = sample.nchw()?;
        if c != cfg.in_channels {
            bail!(
                "UNet: sample has {c} channels, the model takes {} (shape {:?})",
                cfg.in_channels,
                sample.shape()
            );
        }
        let text = encoder_hidden_states;
        if text.shape().len() != 3 || text.shape()[0] != b {
            bail!(
                "UNet: encoder_hidden_states must be [{b}, tokens, width], got {:?}",
                text.shape()
            );
        }
        let device = sample.device();
        // Sizes that 2^(upsamplers) does not divide: each upsampler takes its skip's size.
        let factor = 1usize
            << self
                .up_blocks
                .iter()
                .filter(|u| u.upsamplers.is_some())
                .count();
        let forward_upsample_size = h % factor != 0 || w % factor != 0;

        // 0. center input if necessary
        let centered;
        let sample = if cfg.center_input_sample {
            let v = sample.to_vec()?.iter().map(|x| 2.0 * x - 1.0).collect();
            centered = Tensor::from_vec(&device, sample.shape(), v)?;
            &centered
        } else {
            sample
        };

        // 1. time
        let t = batch_timesteps(timesteps, b)?;
        let t_emb = time_proj(&self.time_proj, &t, &device)?;
        let mut emb = self.time_embedding.forward(&t_emb)?;
        match (&self.class_embedding, class_labels) {
            (Some(ce), Some(labels)) => {
                let want = [b, ce.linear_1.fin];
                if labels.shape() != want {
                    bail!(
                        "UNet: class_labels must be {want:?} (class_embed_type projection), got {:?}",
                        labels.shape()
                    );
                }
                emb = ops::add(&emb, &ce.forward(labels)?)?;
            }
            (Some(_), None) => {
                bail!("UNet: this model (class_embed_type projection) needs class_labels")
            }
            (None, Some(_)) => {
                bail!("UNet: class_labels given, but the model has no class_embed_type")
            }
            (None, None) => {}
        }
        if cfg.time_embedding_act_fn.is_some() {
            emb = ops::silu(&emb)?;
        }

        // 2. pre-process
        let mut skips = vec![self.conv_in.forward(sample)?];

        // 3. down: every block appends its output states to the skips.
        for block in &self.down_blocks {
            block.forward(&mut skips, &emb, text)?;
        }

        // 4. mid
        let mut sample = match &self.mid_block {
            Some(mid) => mid.forward(skips.last().unwrap(), &emb, text)?,
            None => ops::lincomb(&[(1.0, skips.last().unwrap())])?,
        };

        // 5. up: each block takes its skips back from the end.
        let n = self.up_blocks.len();
        for (i, block) in self.up_blocks.iter().enumerate() {
            let keep = skips.len().saturating_sub(block.resnets.len());
            let mut mine = skips.split_off(keep);
            let upsample_size = match skips.last() {
                Some(s) if i + 1 < n && forward_upsample_size => {
                    let (_, _, sh, sw) = s.nchw()?;
                    Some((sh, sw))
                }
                _ => None,
            };
            sample = block.forward(sample, &mut mine, &emb, text, upsample_size)?;
        }

        // 6. post-process
        let sample = self.conv_norm_out.forward_silu(&sample)?;
        self.conv_out.forward(&sample)
    }
}
