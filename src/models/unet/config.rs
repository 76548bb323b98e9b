//! `UNet2DConditionConfig`: diffusers' `UNet2DConditionModel` config, field names and defaults
//! as its `__init__`, so a checkpoint's `unet/config.json` deserialises directly (fields this
//! model does not read, such as `_class_name`, are ignored).
//!
//! [`UNet2DConditionConfig::plan`] checks the options this implementation supports and spreads
//! the per-block settings (an int or a list in the file) over the blocks, as diffusers' `__init__`
//! does; anything else is an error naming the key, its value and what is supported.
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// One value for every block, or one per block (a config field that diffusers accepts as
/// `int | tuple[int]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerBlock<T> {
    One(T),
    Each(Vec<T>),
}

impl<T: Clone + std::fmt::Debug> PerBlock<T> {
    /// The value of each of `n` blocks (a list must have exactly `n` entries).
    pub fn spread(&self, n: usize, key: &str) -> Result<Vec<T>> {
        match self {
            PerBlock::One(v) => Ok(vec![v.clone(); n]),
            PerBlock::Each(vs) if vs.len() == n => Ok(vs.clone()),
            PerBlock::Each(vs) => bail!(
                "UNet config: {key} has {} entries {vs:?}, but there are {n} down blocks",
                vs.len()
            ),
        }
    }
}

/// `transformer_layers_per_block`: one count for every transformer, or per block a count or a
/// list with one count per resnet of the block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TransformerLayers {
    One(usize),
    Each(Vec<PerBlock<usize>>),
}

impl TransformerLayers {
    fn spread(&self, n: usize, key: &str) -> Result<Vec<PerBlock<usize>>> {
        match self {
            TransformerLayers::One(v) => Ok(vec![PerBlock::One(*v); n]),
            TransformerLayers::Each(vs) => PerBlock::Each(vs.clone()).spread(n, key),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UNet2DConditionConfig {
    /// The latent size the model was trained at (informational; any size runs).
    #[serde(default)]
    pub sample_size: Option<serde_json::Value>,
    #[serde(default = "d::in_channels")]
    pub in_channels: usize,
    #[serde(default = "d::out_channels")]
    pub out_channels: usize,
    /// `sample = 2·sample − 1` before everything.
    #[serde(default)]
    pub center_input_sample: bool,
    /// The sinusoid as [cos, sin] (true) or [sin, cos].
    #[serde(default = "d::yes")]
    pub flip_sin_to_cos: bool,
    /// Frequencies exp(−ln(10000)·i / (half − freq_shift)).
    #[serde(default)]
    pub freq_shift: f32,
    #[serde(default = "d::down_block_types")]
    pub down_block_types: Vec<String>,
    #[serde(default = "d::mid_block_type")]
    pub mid_block_type: Option<String>,
    #[serde(default = "d::up_block_types")]
    pub up_block_types: Vec<String>,
    #[serde(default = "d::no")]
    pub only_cross_attention: PerBlock<bool>,
    #[serde(default = "d::block_out_channels")]
    pub block_out_channels: Vec<usize>,
    /// Resnets per down block (up blocks have one more).
    #[serde(default = "d::layers_per_block")]
    pub layers_per_block: PerBlock<usize>,
    /// 1: the downsampling conv pads 1 on every side; 0: it pads right and bottom by 1.
    #[serde(default = "d::one")]
    pub downsample_padding: usize,
    /// The mid block's resnets divide their output by this.
    #[serde(default = "d::onef")]
    pub mid_block_scale_factor: f32,
    /// Training only.
    #[serde(default)]
    pub dropout: f32,
    #[serde(default = "d::act_fn")]
    pub act_fn: String,
    #[serde(default = "d::norm_num_groups")]
    pub norm_num_groups: Option<usize>,
    #[serde(default = "d::norm_eps")]
    pub norm_eps: f32,
    #[serde(default = "d::cross_attention_dim")]
    pub cross_attention_dim: PerBlock<usize>,
    /// Transformer layers per Transformer2DModel: one count, one per block, or per block one per
    /// resnet.
    #[serde(default = "d::transformer_layers_per_block")]
    pub transformer_layers_per_block: TransformerLayers,
    /// The up blocks' transformer layers when they are not the down blocks' reversed.
    #[serde(default)]
    pub reverse_transformer_layers_per_block: Option<Vec<PerBlock<usize>>>,
    #[serde(default)]
    pub encoder_hid_dim: Option<usize>,
    #[serde(default)]
    pub encoder_hid_dim_type: Option<String>,
    /// The number of attention heads per block, despite its name (diffusers keeps the name of
    /// the first configs; each head has `out_channels / attention_head_dim` channels).
    #[serde(default = "d::attention_head_dim")]
    pub attention_head_dim: PerBlock<usize>,
    /// Refused by diffusers' `UNet2DConditionModel` (the head count comes from
    /// `attention_head_dim`); must be null.
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock<usize>>,
    #[serde(default)]
    pub dual_cross_attention: bool,
    /// proj_in / proj_out of the transformers as `nn.Linear` on tokens (SD 2.x) rather than
    /// 1×1 convs (SD 1.x).
    #[serde(default)]
    pub use_linear_projection: bool,
    #[serde(default)]
    pub class_embed_type: Option<String>,
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    #[serde(default)]
    pub addition_time_embed_dim: Option<usize>,
    #[serde(default)]
    pub num_class_embeds: Option<usize>,
    /// Attention scores in float32 under half precision (SD 2.x); everything here is float32.
    #[serde(default)]
    pub upcast_attention: bool,
    #[serde(default = "d::default")]
    pub resnet_time_scale_shift: String,
    /// Read only by block types this model does not have.
    #[serde(default)]
    pub resnet_skip_time_act: bool,
    /// Read only by block types this model does not have.
    #[serde(default = "d::onef")]
    pub resnet_out_scale_factor: f32,
    #[serde(default = "d::positional")]
    pub time_embedding_type: String,
    /// The time embedding's width; default 4 × block_out_channels[0].
    #[serde(default)]
    pub time_embedding_dim: Option<usize>,
    /// An activation applied to the summed embedding before the blocks.
    #[serde(default)]
    pub time_embedding_act_fn: Option<String>,
    /// An activation after the time MLP's linear_2.
    #[serde(default)]
    pub timestep_post_act: Option<String>,
    #[serde(default)]
    pub time_cond_proj_dim: Option<usize>,
    #[serde(default = "d::three")]
    pub conv_in_kernel: usize,
    #[serde(default = "d::three")]
    pub conv_out_kernel: usize,
    /// The width of the vector a `class_embed_type: "projection"` model adds to the time
    /// embedding (through a TimestepEmbedding MLP).
    #[serde(default)]
    pub projection_class_embeddings_input_dim: Option<usize>,
    #[serde(default = "d::default")]
    pub attention_type: String,
    #[serde(default)]
    pub class_embeddings_concat: bool,
    /// Read only by mid block types this model does not have.
    #[serde(default)]
    pub mid_block_only_cross_attention: Option<bool>,
    /// Read only by block types this model does not have.
    #[serde(default)]
    pub cross_attention_norm: Option<String>,
    #[serde(default = "d::addition_embed_type_num_heads")]
    pub addition_embed_type_num_heads: usize,
}

/// `UNet2DConditionModel.__init__`'s defaults (diffusers, unet_2d_condition.py).
mod d {
    use super::PerBlock;
    pub fn in_channels() -> usize {
        4
    }
    pub fn out_channels() -> usize {
        4
    }
    pub fn yes() -> bool {
        true
    }
    pub fn no() -> PerBlock<bool> {
        PerBlock::One(false)
    }
    pub fn one() -> usize {
        1
    }
    pub fn three() -> usize {
        3
    }
    pub fn onef() -> f32 {
        1.0
    }
    pub fn down_block_types() -> Vec<String> {
        [
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "DownBlock2D",
        ]
        .map(String::from)
        .to_vec()
    }
    pub fn mid_block_type() -> Option<String> {
        Some("UNetMidBlock2DCrossAttn".into())
    }
    pub fn up_block_types() -> Vec<String> {
        [
            "UpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
        ]
        .map(String::from)
        .to_vec()
    }
    pub fn block_out_channels() -> Vec<usize> {
        vec![320, 640, 1280, 1280]
    }
    pub fn layers_per_block() -> PerBlock<usize> {
        PerBlock::One(2)
    }
    pub fn act_fn() -> String {
        "silu".into()
    }
    pub fn norm_num_groups() -> Option<usize> {
        Some(32)
    }
    pub fn norm_eps() -> f32 {
        1e-5
    }
    pub fn cross_attention_dim() -> PerBlock<usize> {
        PerBlock::One(1280)
    }
    pub fn transformer_layers_per_block() -> super::TransformerLayers {
        super::TransformerLayers::One(1)
    }
    pub fn attention_head_dim() -> PerBlock<usize> {
        PerBlock::One(8)
    }
    pub fn default() -> String {
        "default".into()
    }
    pub fn positional() -> String {
        "positional".into()
    }
    pub fn addition_embed_type_num_heads() -> usize {
        64
    }
}

/// A down or up block's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// Resnets, each followed by a Transformer2DModel (`CrossAttnDownBlock2D`,
    /// `CrossAttnUpBlock2D`).
    CrossAttn,
    /// Resnets only (`DownBlock2D`, `UpBlock2D`).
    Plain,
}

/// What one down, mid or up block is built from (diffusers' `get_down_block` / `get_up_block`
/// arguments, per block).
#[derive(Clone, Debug, PartialEq)]
pub struct BlockPlan {
    pub kind: BlockKind,
    /// Resnets in the block.
    pub num_layers: usize,
    /// Transformer layers of the Transformer2DModel after each resnet.
    pub transformer_layers: Vec<usize>,
    pub in_channels: usize,
    pub out_channels: usize,
    /// Up blocks: the channels coming from the block below.
    pub prev_output_channel: usize,
    /// Down blocks: a Downsample2D at the end; up blocks: an Upsample2D.
    pub add_sample: bool,
    pub num_attention_heads: usize,
    pub cross_attention_dim: usize,
    pub only_cross_attention: bool,
    /// The resnets' `(input + h) / output_scale_factor`.
    pub output_scale_factor: f32,
}

/// The whole network's plan: the config checked and spread over the blocks.
#[derive(Clone, Debug, PartialEq)]
pub struct UNetPlan {
    pub time_embed_dim: usize,
    pub groups: usize,
    pub down: Vec<BlockPlan>,
    pub mid: Option<BlockPlan>,
    pub up: Vec<BlockPlan>,
}

const DOWN_TYPES: &[&str] = &["CrossAttnDownBlock2D", "DownBlock2D"];
const MID_TYPES: &[&str] = &["UNetMidBlock2DCrossAttn", "null"];
const UP_TYPES: &[&str] = &["CrossAttnUpBlock2D", "UpBlock2D"];
const ACTS: &str = "silu, swish";

/// The kind of a down block type (diffusers also accepts a `UNetRes` prefix).
fn block_kind(key: &str, i: usize, name: &str, cross: &str, plain: &str) -> Result<BlockKind> {
    let n = name.strip_prefix("UNetRes").unwrap_or(name);
    if n == cross {
        Ok(BlockKind::CrossAttn)
    } else if n == plain {
        Ok(BlockKind::Plain)
    } else {
        bail!("UNet config: {key}[{i}] '{name}' is not supported ({cross}, {plain})")
    }
}

/// Whether an activation name is SiLU (`act_fn`-like keys support only that).
fn check_silu(key: &str, v: &str) -> Result<()> {
    if !matches!(v, "silu" | "swish") {
        bail!("UNet config: {key} '{v}' is not supported ({ACTS})");
    }
    Ok(())
}

fn require<T: PartialEq + std::fmt::Debug>(key: &str, got: &T, want: &T, note: &str) -> Result<()> {
    if got != want {
        bail!("UNet config: {key} {got:?} is not supported (only {want:?}{note})");
    }
    Ok(())
}

impl UNet2DConditionConfig {
    /// Stable Diffusion 1.x's UNet (`runwayml/stable-diffusion-v1-5/unet/config.json`).
    pub fn sd15() -> UNet2DConditionConfig {
        let mut c: UNet2DConditionConfig = serde_json::from_str("{}").unwrap();
        c.cross_attention_dim = PerBlock::One(768);
        c.sample_size = Some(64.into());
        c
    }

    /// The time embedding's width (`time_embedding_dim` or 4 × the first block's).
    pub fn time_embed_dim(&self) -> usize {
        self.time_embedding_dim
            .unwrap_or(4 * self.block_out_channels.first().copied().unwrap_or(0))
    }

    /// Checks every option this model does not implement and spreads the per-block settings,
    /// as `UNet2DConditionModel.__init__` does.
    pub fn plan(&self) -> Result<UNetPlan> {
        let n = self.down_block_types.len();
        if n == 0 {
            bail!("UNet config: down_block_types is empty");
        }
        if self.up_block_types.len() != n {
            bail!(
                "UNet config: {} up_block_types {:?} for {n} down_block_types {:?}",
                self.up_block_types.len(),
                self.up_block_types,
                self.down_block_types
            );
        }
        if self.block_out_channels.len() != n {
            bail!(
                "UNet config: {} block_out_channels {:?} for {n} down_block_types",
                self.block_out_channels.len(),
                self.block_out_channels
            );
        }
        if let Some(h) = &self.num_attention_heads {
            bail!(
                "UNet config: num_attention_heads {h:?} is not supported (only null, as in \
                 diffusers' UNet2DConditionModel: the head count is attention_head_dim)"
            );
        }
        check_silu("act_fn", &self.act_fn)?;
        for (key, v) in [
            ("time_embedding_act_fn", &self.time_embedding_act_fn),
            ("timestep_post_act", &self.timestep_post_act),
        ] {
            if let Some(v) = v {
                check_silu(key, v).map_err(|e| anyhow::anyhow!("{e} or null"))?;
            }
        }
        require(
            "time_embedding_type",
            &self.time_embedding_type.as_str(),
            &"positional",
            "",
        )?;
        require(
            "resnet_time_scale_shift",
            &self.resnet_time_scale_shift.as_str(),
            &"default",
            "",
        )?;
        require(
            "attention_type",
            &self.attention_type.as_str(),
            &"default",
            "",
        )?;
        require(
            "addition_embed_type",
            &self.addition_embed_type,
            &None,
            " (null)",
        )?;
        require(
            "encoder_hid_dim_type",
            &self.encoder_hid_dim_type,
            &None,
            " (null)",
        )?;
        require("encoder_hid_dim", &self.encoder_hid_dim, &None, " (null)")?;
        require(
            "time_cond_proj_dim",
            &self.time_cond_proj_dim,
            &None,
            " (null)",
        )?;
        require(
            "dual_cross_attention",
            &self.dual_cross_attention,
            &false,
            "",
        )?;
        require(
            "class_embeddings_concat",
            &self.class_embeddings_concat,
            &false,
            "",
        )?;
        match self.class_embed_type.as_deref() {
            None => require(
                "num_class_embeds",
                &self.num_class_embeds,
                &None,
                " (null) with class_embed_type null",
            )?,
            Some("projection") => {
                if self.projection_class_embeddings_input_dim.is_none() {
                    bail!(
                        "UNet config: class_embed_type 'projection' needs \
                         projection_class_embeddings_input_dim"
                    );
                }
            }
            Some(other) => {
                bail!("UNet config: class_embed_type '{other}' is not supported (null, projection)")
            }
        }
        let Some(groups) = self.norm_num_groups else {
            bail!("UNet config: norm_num_groups null is not supported (a group count)");
        };
        for (key, k) in [
            ("conv_in_kernel", self.conv_in_kernel),
            ("conv_out_kernel", self.conv_out_kernel),
        ] {
            if k % 2 == 0 {
                bail!("UNet config: {key} {k} is not supported (an odd kernel size)");
            }
        }

        let ch = &self.block_out_channels;
        let only_cross = self
            .only_cross_attention
            .spread(n, "only_cross_attention")?;
        let heads = self.attention_head_dim.spread(n, "attention_head_dim")?;
        let cross_dim = self.cross_attention_dim.spread(n, "cross_attention_dim")?;
        let layers = self.layers_per_block.spread(n, "layers_per_block")?;
        let tlayers = self
            .transformer_layers_per_block
            .spread(n, "transformer_layers_per_block")?;
        for (i, (&h, &c)) in heads.iter().zip(ch).enumerate() {
            if h == 0 || h > c {
                bail!(
                    "UNet config: attention_head_dim[{i}] = {h} heads do not fit block {i}'s {c} \
                     channels"
                );
            }
        }
        let per_layer = |t: &PerBlock<usize>, num_layers: usize, key: &str| {
            t.spread(num_layers, key)
                .map_err(|e| anyhow::anyhow!("{e} (per layer of a block)"))
        };
        let time_embed_dim = self.time_embed_dim();

        let mut down = Vec::with_capacity(n);
        let mut output_channel = ch[0];
        for (i, name) in self.down_block_types.iter().enumerate() {
            let input_channel = output_channel;
            output_channel = ch[i];
            down.push(BlockPlan {
                kind: block_kind("down_block_types", i, name, DOWN_TYPES[0], DOWN_TYPES[1])?,
                num_layers: layers[i],
                transformer_layers: per_layer(
                    &tlayers[i],
                    layers[i],
                    "transformer_layers_per_block",
                )?,
                in_channels: input_channel,
                out_channels: output_channel,
                prev_output_channel: 0,
                add_sample: i + 1 < n,
                num_attention_heads: heads[i],
                cross_attention_dim: cross_dim[i],
                only_cross_attention: only_cross[i],
                output_scale_factor: 1.0,
            });
        }

        let mid = match self.mid_block_type.as_deref() {
            None => None,
            Some("UNetMidBlock2DCrossAttn") => Some(BlockPlan {
                kind: BlockKind::CrossAttn,
                num_layers: 1,
                transformer_layers: per_layer(
                    &tlayers[n - 1],
                    1,
                    "transformer_layers_per_block (mid block)",
                )?,
                in_channels: ch[n - 1],
                out_channels: ch[n - 1],
                prev_output_channel: 0,
                add_sample: false,
                num_attention_heads: heads[n - 1],
                cross_attention_dim: cross_dim[n - 1],
                // UNetMidBlock2DCrossAttn has no only_cross_attention option.
                only_cross_attention: false,
                output_scale_factor: self.mid_block_scale_factor,
            }),
            Some(other) => bail!(
                "UNet config: mid_block_type '{other}' is not supported ({})",
                MID_TYPES.join(", ")
            ),
        };

        let rev = |v: &[usize]| v.iter().rev().copied().collect::<Vec<_>>();
        let (rch, rheads, rlayers, rcross) = (rev(ch), rev(&heads), rev(&layers), rev(&cross_dim));
        let rtlayers: Vec<PerBlock<usize>> = match &self.reverse_transformer_layers_per_block {
            Some(r) if r.len() == n => r.clone(),
            Some(r) => bail!(
                "UNet config: reverse_transformer_layers_per_block has {} entries for {n} up \
                 blocks",
                r.len()
            ),
            None => tlayers.iter().rev().cloned().collect(),
        };
        let ronly: Vec<bool> = only_cross.iter().rev().copied().collect();
        let mut up = Vec::with_capacity(n);
        let mut output_channel = rch[0];
        for (i, name) in self.up_block_types.iter().enumerate() {
            let prev_output_channel = output_channel;
            output_channel = rch[i];
            let input_channel = rch[(i + 1).min(n - 1)];
            let num_layers = rlayers[i] + 1;
            up.push(BlockPlan {
                kind: block_kind("up_block_types", i, name, UP_TYPES[0], UP_TYPES[1])?,
                num_layers,
                transformer_layers: per_layer(
                    &rtlayers[i],
                    num_layers,
                    "transformer_layers_per_block (up blocks)",
                )?,
                in_channels: input_channel,
                out_channels: output_channel,
                prev_output_channel,
                add_sample: i + 1 < n,
                num_attention_heads: rheads[i],
                cross_attention_dim: rcross[i],
                only_cross_attention: ronly[i],
                output_scale_factor: 1.0,
            });
        }
        for (i, c) in ch.iter().enumerate() {
            if c % groups != 0 {
                bail!(
                    "UNet config: norm_num_groups {groups} does not divide block_out_channels[{i}] \
                     = {c}"
                );
            }
        }
        Ok(UNetPlan {
            time_embed_dim,
            groups,
            down,
            mid,
            up,
        })
    }
}
