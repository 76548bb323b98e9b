//! The CLIP text encoder: the text tower of OpenAI CLIP as Stable Diffusion 1.x conditions on it
//! (its last hidden state). Token + position embeddings, then pre-LN transformer layers
//!
//!   x = x + out_proj(causal_self_attention(layer_norm1(x)))
//!   x = x + fc2(act(fc1(layer_norm2(x))))
//!
//! and a final layer norm. Checkpoint keys are Hugging Face `CLIPTextModel`'s (`text_model.*`).
//! The token embedding stays on the host (a row gather); everything after runs on the device.
use crate::backend::Device;
use crate::ops::{self, AttnMask, LayerNorm, Linear, Unary};
use crate::tensor::Tensor;
use crate::weights::vars::{Init, Vars};
use anyhow::{Result, bail};

/// The text tower's config: Hugging Face `CLIPTextConfig`, field names and defaults verbatim, so a
/// checkpoint's `text_encoder/config.json` deserialises directly (other fields are ignored).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClipTextConfig {
    #[serde(default = "d::vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "d::hidden_size")]
    pub hidden_size: usize,
    /// The MLP's hidden width.
    #[serde(default = "d::intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default = "d::num_hidden_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d::num_attention_heads")]
    pub num_attention_heads: usize,
    /// Positions (tokens) the position embedding covers: 77 for CLIP.
    #[serde(default = "d::max_position_embeddings")]
    pub max_position_embeddings: usize,
    /// `quick_gelu` (OpenAI CLIP, SD 1.x) or `gelu` (OpenCLIP, SD 2.x).
    #[serde(default = "d::hidden_act")]
    pub hidden_act: String,
    #[serde(default = "d::layer_norm_eps")]
    pub layer_norm_eps: f32,
}

/// `CLIPTextConfig`'s defaults (transformers, configuration_clip.py).
mod d {
    pub fn vocab_size() -> usize {
        49408
    }
    pub fn hidden_size() -> usize {
        512
    }
    pub fn intermediate_size() -> usize {
        2048
    }
    pub fn num_hidden_layers() -> usize {
        12
    }
    pub fn num_attention_heads() -> usize {
        8
    }
    pub fn max_position_embeddings() -> usize {
        77
    }
    pub fn hidden_act() -> String {
        "quick_gelu".into()
    }
    pub fn layer_norm_eps() -> f32 {
        1e-5
    }
}

impl ClipTextConfig {
    /// OpenAI CLIP ViT-L/14's text tower, Stable Diffusion 1.x's text encoder.
    pub fn vit_l14() -> ClipTextConfig {
        ClipTextConfig {
            vocab_size: 49408,
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
        }
    }

    /// The MLP activation named by `hidden_act`.
    pub fn activation(&self) -> Result<Unary> {
        match self.hidden_act.as_str() {
            "quick_gelu" => Ok(Unary::QuickGelu),
            "gelu" => Ok(Unary::Gelu),
            other => {
                bail!("CLIP text config: hidden_act '{other}' is not supported (quick_gelu, gelu)")
            }
        }
    }

    /// Multiply-adds × 2 of a forward over `tokens` tokens (linear layers and attention).
    pub fn flops(&self, tokens: usize) -> f64 {
        let (l, w, m) = (
            tokens as f64,
            self.hidden_size as f64,
            self.intermediate_size as f64,
        );
        let attn = ops::attention::AttnShape {
            batch: 1,
            lq: tokens,
            lk: tokens,
            heads: self.num_attention_heads,
            head_dim: self.hidden_size / self.num_attention_heads,
        }
        .flops(true);
        self.num_hidden_layers as f64 * (2.0 * l * (4.0 * w * w + 2.0 * w * m) + attn)
    }
}

struct Layer {
    layer_norm1: LayerNorm,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    layer_norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

pub struct ClipTextEncoder {
    pub cfg: ClipTextConfig,
    device: Device,
    token_embedding: Vec<f32>,
    position_embedding: Vec<f32>,
    layers: Vec<Layer>,
    final_layer_norm: LayerNorm,
    act: Unary,
}

impl ClipTextEncoder {
    /// The text tower from the weights at the root of `v` (keys `text_model.*`).
    pub fn load(v: &Vars, cfg: &ClipTextConfig) -> Result<Self> {
        let (w, m) = (cfg.hidden_size, cfg.intermediate_size);
        if cfg.num_attention_heads == 0 || w % cfg.num_attention_heads != 0 {
            bail!(
                "CLIP text config: num_attention_heads {} does not divide hidden_size {w}",
                cfg.num_attention_heads
            );
        }
        let act = cfg.activation()?;
        let eps = cfg.layer_norm_eps;
        let tm = v.pp("text_model");
        let emb = tm.pp("embeddings");
        let table = Init::Uniform(-0.5, 0.5);
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = tm.pp("encoder").pp("layers").pp(i);
                let a = l.pp("self_attn");
                Ok(Layer {
                    layer_norm1: l.layer_norm("layer_norm1", w, eps)?,
                    q_proj: a.linear("q_proj", [w, w], true)?,
                    k_proj: a.linear("k_proj", [w, w], true)?,
                    v_proj: a.linear("v_proj", [w, w], true)?,
                    out_proj: a.linear("out_proj", [w, w], true)?,
                    layer_norm2: l.layer_norm("layer_norm2", w, eps)?,
                    fc1: l.pp("mlp").linear("fc1", [m, w], true)?,
                    fc2: l.pp("mlp").linear("fc2", [w, m], true)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ClipTextEncoder {
            token_embedding: emb
                .pp("token_embedding")
                .get("weight", &[cfg.vocab_size, w], table)?
                .into_owned(),
            position_embedding: emb
                .pp("position_embedding")
                .get("weight", &[cfg.max_position_embeddings, w], table)?
                .into_owned(),
            final_layer_norm: tm.layer_norm("final_layer_norm", w, eps)?,
            layers,
            act,
            device: v.device().clone(),
            cfg: cfg.clone(),
        })
    }

    /// The last hidden state `[1, tokens, width]` for token ids (BOS … EOS, padding included:
    /// the mask is causal only, as Stable Diffusion runs it).
    pub fn forward(&self, ids: &[u32]) -> Result<Tensor> {
        let (l, w) = (ids.len(), self.cfg.hidden_size);
        if l == 0 || l > self.cfg.max_position_embeddings {
            bail!(
                "the text encoder takes 1 to {} tokens, got {l}",
                self.cfg.max_position_embeddings
            );
        }
        let mut x = Vec::with_capacity(l * w);
        for (pos, &id) in ids.iter().enumerate() {
            if id as usize >= self.cfg.vocab_size {
                bail!(
                    "token id {id} at position {pos} is outside the vocabulary of {}",
                    self.cfg.vocab_size
                );
            }
            let tok = &self.token_embedding[id as usize * w..][..w];
            let p = &self.position_embedding[pos * w..][..w];
            x.extend(tok.iter().zip(p).map(|(a, b)| a + b));
        }
        let act = self.act;
        let mut x = Tensor::from_vec(&self.device, &[l, w], x)?;
        for layer in &self.layers {
            let h = layer.layer_norm1.forward(&x)?;
            let rows = |t: Tensor| t.reshape(&[1, l, w]);
            let q = rows(layer.q_proj.forward(&h)?)?;
            let k = rows(layer.k_proj.forward(&h)?)?;
            let v = rows(layer.v_proj.forward(&h)?)?;
            let mask = AttnMask {
                causal: true,
                key_bias: None,
            };
            let a =
                ops::attention(&q, &k, &v, self.cfg.num_attention_heads, mask)?.reshape(&[l, w])?;
            x = ops::add(&x, &layer.out_proj.forward(&a)?)?;
            let h = layer.layer_norm2.forward(&x)?;
            let h = ops::unary(&layer.fc1.forward(&h)?, act)?;
            x = ops::add(&x, &layer.fc2.forward(&h)?)?;
        }
        self.final_layer_norm.forward(&x)?.reshape(&[1, l, w])
    }
}
