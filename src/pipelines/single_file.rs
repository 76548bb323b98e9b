//! Single-file Stable Diffusion checkpoints in the original LDM layout (CompVis / Stability
//! releases, what A1111 and ComfyUI users download): one `.safetensors` or `.ckpt` holding
//!
//! - `model.diffusion_model.*`: the UNet (`input_blocks`, `middle_block`, `output_blocks`);
//! - `first_stage_model.*`: the VAE (`encoder.down.N.block.M`, `decoder.up.N`, 1×1-conv
//!   attention projections);
//! - `cond_stage_model.transformer.*` (SD 1.x: OpenAI CLIP ViT-L/14 in transformers' names) or
//!   `cond_stage_model.model.*` (SD 2.x: OpenCLIP ViT-H/14, fused `in_proj_weight`);
//! - and what training left: LDM's schedule buffers (`betas`, `alphas_cumprod`, …), EMA copies
//!   (`model_ema.*`), and in `.ckpt` files a PyTorch Lightning dict around the `state_dict`
//!   (callbacks, numpy scalars), which the pickle reader keeps as inert placeholders
//!   ([`Objects::Inert`]): nothing in the file is ever called.
//!
//! Each component's tensors are moved to diffusers' names (the mapping diffusers'
//! `single_file_utils` applies, written here from its key conventions) without being decoded,
//! and its config is inferred from tensor shapes: widths, depths, block types, cross-attention
//! width, conv or linear projections, the 4- or 9-channel (inpainting) UNet. What shapes cannot
//! show is the same in every released SD 1.x / 2.x checkpoint and is taken from there:
//! GroupNorm with 32 groups, CLIP heads of width 64, 8 UNet heads (SD 1.x) or UNet heads of
//! width 64 (SD 2.x), the scaled-linear schedule, and (as diffusers' `from_single_file` infers)
//! v-prediction at 768² for SD 2.x other than inpainting, ε-prediction at 512² otherwise.
use crate::models::clip::tokenizer::CLIP_VOCAB;
use crate::models::{AutoencoderKLConfig, ClipTextConfig, UNet2DConditionConfig};
use crate::schedulers::SchedulerConfig;
use crate::weights::pth::{Objects, load_pth_with};
use crate::weights::store::WeightStore;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::Path;

const UNET: &str = "model.diffusion_model.";
const VAE: &str = "first_stage_model.";
const OPENAI_CLIP: &str = "cond_stage_model.transformer.";
const OPEN_CLIP: &str = "cond_stage_model.model.";
/// GroupNorm groups of every SD 1.x / 2.x UNet and VAE.
const GROUPS: usize = 32;
/// The width of a CLIP text head, and of an SD 2.x UNet head.
const HEAD_WIDTH: usize = 64;
/// The UNet heads of SD 1.x (diffusers' `attention_head_dim: 8`).
const SD1_HEADS: usize = 8;

/// Which text tower (and so which model family) the checkpoint has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// SD 1.x: OpenAI CLIP ViT-L/14 (quick-GELU), pad `<|endoftext|>`.
    Sd1,
    /// SD 2.x: OpenCLIP ViT-H/14 (GELU) read at its penultimate layer, pad `!`.
    Sd2,
}

/// A single-file checkpoint split into diffusers components.
pub struct SingleFile {
    pub family: Family,
    pub text_config: ClipTextConfig,
    pub unet_config: UNet2DConditionConfig,
    pub vae_config: AutoencoderKLConfig,
    pub scheduler_config: SchedulerConfig,
    /// The tokenizer's pad token.
    pub pad: &'static str,
    /// Each component's tensors under diffusers' names.
    pub text: WeightStore,
    pub unet: WeightStore,
    pub vae: WeightStore,
}

/// The checkpoint's tensors: safetensors (mapped) or a pickled `.ckpt` (read safely).
fn open(path: &Path) -> Result<WeightStore> {
    let mut head = [0u8; 4];
    let n = {
        use std::io::Read;
        let mut f = std::fs::File::open(path)
            .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
        f.read(&mut head).unwrap_or(0)
    };
    // A zip archive (torch ≥ 1.6) or a pickle stream (older torch) is a `.ckpt`.
    let pickled = n >= 2 && (head.starts_with(b"PK") || head[0] == 0x80);
    let what = path.display().to_string();
    let mut store = if pickled {
        WeightStore::from_raw(load_pth_with(path, Objects::Inert)?, &what)?
    } else {
        WeightStore::load(path)?
    };
    // A Lightning checkpoint keeps the weights under `state_dict`.
    if store.names().any(|k| k.starts_with("state_dict.")) {
        store = store.extract(what, |k| k.strip_prefix("state_dict.").map(str::to_owned))?;
    }
    Ok(store)
}

impl SingleFile {
    /// Reads and splits the checkpoint at `path` (see the module docs).
    pub fn read(path: &Path) -> Result<SingleFile> {
        Self::from_store(open(path)?, &path.display().to_string())
    }

    /// Splits the LDM-layout tensors of `store` (`what` names it in errors).
    pub fn from_store(mut store: WeightStore, what: &str) -> Result<SingleFile> {
        let what = what.to_string();
        let has = |p: &str| store.names().any(|k| k.starts_with(p));
        if store
            .names()
            .any(|k| k.starts_with("conditioner.embedders."))
        {
            bail!(
                "{what}: an SDXL checkpoint (conditioner.embedders.*); single files of SD 1.x \
                 and 2.x (also inpainting) are supported"
            );
        }
        for (prefix, part) in [(UNET, "UNet"), (VAE, "VAE")] {
            if !has(prefix) {
                bail!(
                    "{what}: no {part} tensors ({prefix}*): not a Stable Diffusion checkpoint in \
                     the original LDM layout (expected {UNET}*, {VAE}* and \
                     {OPENAI_CLIP}* or {OPEN_CLIP}*)"
                );
            }
        }
        let family = if has(OPEN_CLIP) {
            Family::Sd2
        } else if has(OPENAI_CLIP) {
            Family::Sd1
        } else {
            bail!("{what}: no text encoder tensors ({OPENAI_CLIP}* or {OPEN_CLIP}*)");
        };

        let unet_layout = UnetLayout::infer(&store, &what)?;
        let unet = store.extract(format!("{what} (UNet)"), |k| {
            k.strip_prefix(UNET).map(|k| unet_layout.rename(k))
        })?;
        let unet_config = unet_layout.config(&unet, family, &what)?;

        let levels = vae_levels(&store)?;
        let mut vae = store.extract(format!("{what} (VAE)"), |k| {
            k.strip_prefix(VAE).map(|k| vae_rename(k, levels))
        })?;
        for part in ["encoder", "decoder"] {
            for p in ["to_q", "to_k", "to_v", "to_out.0"] {
                let name = format!("{part}.mid_block.attentions.0.{p}.weight");
                if let Some(s) = vae.shape(&name).map(<[usize]>::to_vec) {
                    if s.len() == 4 {
                        vae.reshape(&name, s[..2].to_vec())?;
                    }
                }
            }
        }
        let vae_config = vae_config(&vae, family, unet_config.in_channels == 9, &what)?;

        let (text, text_config, pad) = match family {
            Family::Sd1 => {
                let text = store.extract(format!("{what} (text encoder)"), |k| {
                    let k = k.strip_prefix(OPENAI_CLIP)?;
                    let k = k.strip_prefix("text_model.").unwrap_or(k);
                    (!k.ends_with("position_ids")).then(|| format!("text_model.{k}"))
                })?;
                let cfg = text_config(&text, "quick_gelu", &what)?;
                (text, cfg, "<|endoftext|>")
            }
            Family::Sd2 => {
                let layers = count_indices(&store, &format!("{OPEN_CLIP}transformer.resblocks."));
                if layers < 2 {
                    bail!("{what}: an OpenCLIP text tower with {layers} layers");
                }
                // SD 2.x conditions on the penultimate layer: the last one is never read.
                let used = layers - 1;
                let mut text = store.extract(format!("{what} (text encoder)"), |k| {
                    open_clip_rename(k.strip_prefix(OPEN_CLIP)?, used)
                })?;
                for i in 0..used {
                    split_in_proj(&mut text, i)?;
                }
                let cfg = text_config(&text, "gelu", &what)?;
                (text, cfg, "!")
            }
        };

        let v_prediction = family == Family::Sd2 && unet_config.in_channels != 9;
        let scheduler_config = SchedulerConfig::from_json(
            &json!({
                "_class_name": if family == Family::Sd2 { "DDIMScheduler" } else { "PNDMScheduler" },
                "beta_start": 0.00085,
                "beta_end": 0.012,
                "beta_schedule": "scaled_linear",
                "num_train_timesteps": 1000,
                "prediction_type": if v_prediction { "v_prediction" } else { "epsilon" },
                "set_alpha_to_one": false,
                "skip_prk_steps": true,
                "steps_offset": 1,
                "clip_sample": false,
                "timestep_spacing": "leading",
            })
            .to_string(),
        )?;
        Ok(SingleFile {
            family,
            text_config,
            unet_config,
            vae_config,
            scheduler_config,
            pad,
            text,
            unet,
            vae,
        })
    }
}

/// The shape of `name`, or an error naming it.
fn shape<'a>(s: &'a WeightStore, name: &str) -> Result<&'a [usize]> {
    s.shape(name)
        .ok_or_else(|| anyhow!("{}: missing tensor '{name}'", s.source))
}

/// Dimension `d` of `name`.
fn dim(s: &WeightStore, name: &str, d: usize) -> Result<usize> {
    let sh = shape(s, name)?;
    sh.get(d).copied().ok_or_else(|| {
        anyhow!(
            "{}: tensor '{name}' has shape {sh:?}, expected at least {} dimensions",
            s.source,
            d + 1
        )
    })
}

/// How many consecutive indices `N` have keys `<prefix>N.…` (from 0).
fn count_indices(s: &WeightStore, prefix: &str) -> usize {
    let found: BTreeSet<usize> = s
        .names()
        .filter_map(|k| k.strip_prefix(prefix)?.split('.').next()?.parse().ok())
        .collect();
    (0..).take_while(|i| found.contains(i)).count()
}

// ---------------------------------------------------------------------------------------------
// UNet
// ---------------------------------------------------------------------------------------------

/// The LDM UNet's block structure: `input_blocks` 0 is conv_in, then per level
/// `layers_per_block` (resnet [+ transformer]) entries and a downsampler (not after the last
/// level); `output_blocks` hold `layers_per_block + 1` entries per level, the upsampler inside
/// the last one (not in the last level).
struct UnetLayout {
    layers: usize,
    levels: usize,
    /// Whether each down level (input order) and each up level (output order) has
    /// transformers.
    down_attn: Vec<bool>,
    up_attn: Vec<bool>,
}

impl UnetLayout {
    fn infer(s: &WeightStore, what: &str) -> Result<UnetLayout> {
        let inputs = count_indices(s, &format!("{UNET}input_blocks."));
        let outputs = count_indices(s, &format!("{UNET}output_blocks."));
        let downs: Vec<usize> = (0..inputs)
            .filter(|i| s.contains(&format!("{UNET}input_blocks.{i}.0.op.weight")))
            .collect();
        let levels = downs.len() + 1;
        let layers = match downs.first() {
            Some(&first) => first - 1,
            None => inputs.saturating_sub(1),
        };
        if layers == 0
            || inputs != 1 + levels * layers + (levels - 1)
            || outputs != levels * (layers + 1)
        {
            bail!(
                "{what}: a UNet with {inputs} input blocks, {outputs} output blocks and \
                 downsamplers at {downs:?} does not have the LDM UNet's structure"
            );
        }
        let attn =
            |block: &str, i: usize| s.contains(&format!("{UNET}{block}.{i}.1.proj_in.weight"));
        let down_attn = (0..levels)
            .map(|b| attn("input_blocks", 1 + b * (layers + 1)))
            .collect();
        let up_attn = (0..levels)
            .map(|b| attn("output_blocks", b * (layers + 1)))
            .collect();
        Ok(UnetLayout {
            layers,
            levels,
            down_attn,
            up_attn,
        })
    }

    /// The diffusers name of the LDM UNet key `k` (without `model.diffusion_model.`); keys it
    /// does not know keep an `ldm:` name, which the model then reports as unused.
    fn rename(&self, k: &str) -> String {
        self.try_rename(k).unwrap_or_else(|| format!("ldm:{k}"))
    }

    fn try_rename(&self, k: &str) -> Option<String> {
        const FIXED: [(&str, &str); 5] = [
            ("time_embed.0.", "time_embedding.linear_1."),
            ("time_embed.2.", "time_embedding.linear_2."),
            ("input_blocks.0.0.", "conv_in."),
            ("out.0.", "conv_norm_out."),
            ("out.2.", "conv_out."),
        ];
        for (from, to) in FIXED {
            if let Some(leaf) = k.strip_prefix(from) {
                return Some(format!("{to}{leaf}"));
            }
        }
        let mut p = k.splitn(3, '.');
        let (block, i, rest) = (p.next()?, p.next()?, p.next()?);
        let i: usize = i.parse().ok()?;
        if block == "middle_block" {
            return match i {
                0 | 2 => Some(format!("mid_block.resnets.{}.{}", i / 2, resnet(rest)?)),
                1 => Some(format!("mid_block.attentions.0.{rest}")),
                _ => None,
            };
        }
        let (j, rest) = rest.split_once('.')?;
        let j: usize = j.parse().ok()?;
        let per = self.layers + 1;
        match block {
            "input_blocks" if i >= 1 => {
                let (b, l) = ((i - 1) / per, (i - 1) % per);
                match (l == self.layers, j) {
                    (true, 0) => Some(format!(
                        "down_blocks.{b}.downsamplers.0.conv.{}",
                        rest.strip_prefix("op.")?
                    )),
                    (false, 0) => Some(format!("down_blocks.{b}.resnets.{l}.{}", resnet(rest)?)),
                    (false, 1) => Some(format!("down_blocks.{b}.attentions.{l}.{rest}")),
                    _ => None,
                }
            }
            "output_blocks" => {
                let (b, l) = (i / per, i % per);
                let attn = *self.up_attn.get(b)?;
                match j {
                    0 => Some(format!("up_blocks.{b}.resnets.{l}.{}", resnet(rest)?)),
                    1 if !rest.starts_with("conv.") && attn => {
                        Some(format!("up_blocks.{b}.attentions.{l}.{rest}"))
                    }
                    1 | 2 if l == self.layers && rest.starts_with("conv.") => {
                        Some(format!("up_blocks.{b}.upsamplers.0.{rest}"))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The config diffusers would use for these (already renamed) tensors.
    fn config(&self, u: &WeightStore, family: Family, what: &str) -> Result<UNet2DConditionConfig> {
        let channels: Vec<usize> = (0..self.levels)
            .map(|b| dim(u, &format!("down_blocks.{b}.resnets.0.conv2.weight"), 0))
            .collect::<Result<_>>()?;
        let heads: Vec<usize> = match family {
            Family::Sd1 => vec![SD1_HEADS; self.levels],
            Family::Sd2 => channels.iter().map(|c| (c / HEAD_WIDTH).max(1)).collect(),
        };
        let first_attn = (0..self.levels).find(|&b| self.down_attn[b]);
        let (cross, linear) = match first_attn {
            Some(b) => {
                let t = format!("down_blocks.{b}.attentions.0.");
                (
                    dim(u, &format!("{t}transformer_blocks.0.attn2.to_k.weight"), 1)?,
                    shape(u, &format!("{t}proj_in.weight"))?.len() == 2,
                )
            }
            None => bail!("{what}: the UNet has no cross-attention (no input_blocks.N.1.proj_in)"),
        };
        let transformer_layers: Vec<usize> = (0..self.levels)
            .map(|b| {
                if self.down_attn[b] {
                    count_indices(
                        u,
                        &format!("down_blocks.{b}.attentions.0.transformer_blocks."),
                    )
                } else {
                    1
                }
            })
            .collect();
        if !u.contains("mid_block.attentions.0.proj_in.weight") {
            bail!("{what}: the UNet's middle block has no transformer (middle_block.1)");
        }
        let down: Vec<&str> = self
            .down_attn
            .iter()
            .map(|&a| {
                if a {
                    "CrossAttnDownBlock2D"
                } else {
                    "DownBlock2D"
                }
            })
            .collect();
        let up: Vec<&str> = self
            .up_attn
            .iter()
            .map(|&a| if a { "CrossAttnUpBlock2D" } else { "UpBlock2D" })
            .collect();
        let in_channels = dim(u, "conv_in.weight", 1)?;
        let inpainting = in_channels == 9;
        let cfg = json!({
            "sample_size": if family == Family::Sd2 && !inpainting { 96 } else { 64 },
            "in_channels": in_channels,
            "out_channels": dim(u, "conv_out.weight", 0)?,
            "down_block_types": down,
            "up_block_types": up,
            "block_out_channels": channels,
            "layers_per_block": self.layers,
            "norm_num_groups": GROUPS,
            "cross_attention_dim": cross,
            "attention_head_dim": if family == Family::Sd1 { json!(SD1_HEADS) } else { json!(heads) },
            "use_linear_projection": linear,
            "upcast_attention": family == Family::Sd2,
            "transformer_layers_per_block": if transformer_layers.iter().all(|&n| n == 1) {
                json!(1)
            } else {
                json!(transformer_layers)
            },
        });
        serde_json::from_value(cfg).with_context(|| format!("{what}: the inferred UNet config"))
    }
}

/// LDM ResBlock names → diffusers ResnetBlock2D names.
fn resnet(rest: &str) -> Option<String> {
    const MAP: [(&str, &str); 6] = [
        ("in_layers.0.", "norm1."),
        ("in_layers.2.", "conv1."),
        ("emb_layers.1.", "time_emb_proj."),
        ("out_layers.0.", "norm2."),
        ("out_layers.3.", "conv2."),
        ("skip_connection.", "conv_shortcut."),
    ];
    MAP.iter()
        .find_map(|(from, to)| rest.strip_prefix(from).map(|leaf| format!("{to}{leaf}")))
}

// ---------------------------------------------------------------------------------------------
// VAE
// ---------------------------------------------------------------------------------------------

fn vae_levels(s: &WeightStore) -> Result<usize> {
    let n = count_indices(s, &format!("{VAE}encoder.down."));
    if n == 0 {
        bail!(
            "{}: no VAE encoder levels ({VAE}encoder.down.N.*)",
            s.source
        );
    }
    Ok(n)
}

/// The diffusers name of the LDM VAE key `k` (without `first_stage_model.`).
fn vae_rename(k: &str, levels: usize) -> String {
    try_vae_rename(k, levels).unwrap_or_else(|| format!("ldm:{k}"))
}

fn try_vae_rename(k: &str, levels: usize) -> Option<String> {
    let (part, rest) = k.split_once('.')?;
    if part != "encoder" && part != "decoder" {
        return matches!(part, "quant_conv" | "post_quant_conv").then(|| k.to_string());
    }
    let shortcut = |r: &str| r.replace("nin_shortcut.", "conv_shortcut.");
    if let Some(leaf) = rest.strip_prefix("norm_out.") {
        return Some(format!("{part}.conv_norm_out.{leaf}"));
    }
    if rest.starts_with("conv_in.") || rest.starts_with("conv_out.") {
        return Some(k.to_string());
    }
    if let Some(r) = rest.strip_prefix("mid.") {
        if let Some(r) = r.strip_prefix("block_1.") {
            return Some(format!("{part}.mid_block.resnets.0.{}", shortcut(r)));
        }
        if let Some(r) = r.strip_prefix("block_2.") {
            return Some(format!("{part}.mid_block.resnets.1.{}", shortcut(r)));
        }
        let leaf = r.strip_prefix("attn_1.")?;
        let (name, wb) = leaf.split_once('.')?;
        let to = match name {
            "norm" => "group_norm",
            "q" => "to_q",
            "k" => "to_k",
            "v" => "to_v",
            "proj_out" => "to_out.0",
            _ => return None,
        };
        return Some(format!("{part}.mid_block.attentions.0.{to}.{wb}"));
    }
    let (dir, blocks) = if part == "encoder" {
        ("down", "down_blocks")
    } else {
        ("up", "up_blocks")
    };
    let r = rest.strip_prefix(dir)?.strip_prefix('.')?;
    let (i, r) = r.split_once('.')?;
    let i: usize = i.parse().ok()?;
    // The decoder's `up` levels count from the bottom; diffusers' `up_blocks` from the top.
    let b = if part == "decoder" {
        levels.checked_sub(1 + i)?
    } else {
        i
    };
    if let Some(r) = r.strip_prefix("block.") {
        return Some(format!("{part}.{blocks}.{b}.resnets.{}", shortcut(r)));
    }
    let sampler = if part == "encoder" {
        "downsample.conv."
    } else {
        "upsample.conv."
    };
    let leaf = r.strip_prefix(sampler)?;
    let samplers = if part == "encoder" {
        "downsamplers"
    } else {
        "upsamplers"
    };
    Some(format!("{part}.{blocks}.{b}.{samplers}.0.conv.{leaf}"))
}

fn vae_config(
    v: &WeightStore,
    family: Family,
    inpainting: bool,
    what: &str,
) -> Result<AutoencoderKLConfig> {
    let levels = count_indices(v, "encoder.down_blocks.");
    let channels: Vec<usize> = (0..levels)
        .map(|i| {
            dim(
                v,
                &format!("encoder.down_blocks.{i}.resnets.0.conv2.weight"),
                0,
            )
        })
        .collect::<Result<_>>()?;
    let cfg = json!({
        "in_channels": dim(v, "encoder.conv_in.weight", 1)?,
        "out_channels": dim(v, "decoder.conv_out.weight", 0)?,
        "down_block_types": vec!["DownEncoderBlock2D"; levels],
        "up_block_types": vec!["UpDecoderBlock2D"; levels],
        "block_out_channels": channels,
        "layers_per_block": count_indices(v, "encoder.down_blocks.0.resnets."),
        "latent_channels": dim(v, "decoder.conv_in.weight", 1)?,
        "norm_num_groups": GROUPS,
        "sample_size": if family == Family::Sd2 && !inpainting { 768 } else { 512 },
        "scaling_factor": 0.18215,
        "use_quant_conv": v.contains("quant_conv.weight"),
        "use_post_quant_conv": v.contains("post_quant_conv.weight"),
        "mid_block_add_attention": v.contains("encoder.mid_block.attentions.0.to_q.weight"),
    });
    serde_json::from_value(cfg).with_context(|| format!("{what}: the inferred VAE config"))
}

// ---------------------------------------------------------------------------------------------
// Text encoders
// ---------------------------------------------------------------------------------------------

/// OpenCLIP's text tower names → transformers' CLIPTextModel names, layers `0..used` only.
fn open_clip_rename(k: &str, used: usize) -> Option<String> {
    let fixed = [
        (
            "token_embedding.weight",
            "embeddings.token_embedding.weight",
        ),
        (
            "positional_embedding",
            "embeddings.position_embedding.weight",
        ),
        ("ln_final.weight", "final_layer_norm.weight"),
        ("ln_final.bias", "final_layer_norm.bias"),
    ];
    if let Some((_, to)) = fixed.iter().find(|(from, _)| *from == k) {
        return Some(format!("text_model.{to}"));
    }
    let r = k.strip_prefix("transformer.resblocks.")?;
    let (i, r) = r.split_once('.')?;
    let i: usize = i.parse().ok()?;
    if i >= used {
        return None;
    }
    let to = [
        ("ln_1.", "layer_norm1."),
        ("ln_2.", "layer_norm2."),
        ("attn.out_proj.", "self_attn.out_proj."),
        ("attn.in_proj_", "self_attn.in_proj_"),
        ("mlp.c_fc.", "mlp.fc1."),
        ("mlp.c_proj.", "mlp.fc2."),
    ]
    .iter()
    .find_map(|(from, to)| r.strip_prefix(from).map(|leaf| format!("{to}{leaf}")))?;
    Some(format!("text_model.encoder.layers.{i}.{to}"))
}

/// OpenCLIP's fused `in_proj_weight` / `in_proj_bias` of layer `i` → q, k, v projections.
fn split_in_proj(t: &mut WeightStore, i: usize) -> Result<()> {
    let base = format!("text_model.encoder.layers.{i}.self_attn");
    for wb in ["weight", "bias"] {
        let parts = ["q", "k", "v"].map(|q| format!("{base}.{q}_proj.{wb}"));
        t.split_rows(&format!("{base}.in_proj_{wb}"), &parts)?;
    }
    Ok(())
}

fn text_config(t: &WeightStore, act: &str, what: &str) -> Result<ClipTextConfig> {
    let emb = "text_model.embeddings.token_embedding.weight";
    let (vocab, width) = (dim(t, emb, 0)?, dim(t, emb, 1)?);
    if vocab > CLIP_VOCAB || width % HEAD_WIDTH != 0 {
        bail!(
            "{what}: a CLIP text encoder with {vocab} tokens of width {width}: expected at most \
             {CLIP_VOCAB} tokens and a width that is a multiple of {HEAD_WIDTH}"
        );
    }
    let cfg = json!({
        "vocab_size": vocab,
        "hidden_size": width,
        "intermediate_size": dim(t, "text_model.encoder.layers.0.mlp.fc1.weight", 0)?,
        "num_hidden_layers": count_indices(t, "text_model.encoder.layers."),
        "num_attention_heads": width / HEAD_WIDTH,
        "max_position_embeddings": dim(t, "text_model.embeddings.position_embedding.weight", 0)?,
        "hidden_act": act,
        "layer_norm_eps": 1e-5,
        "bos_token_id": vocab - 2,
        "eos_token_id": vocab - 1,
    });
    serde_json::from_value(cfg).with_context(|| format!("{what}: the inferred text encoder config"))
}
