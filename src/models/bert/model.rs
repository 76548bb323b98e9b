//! BERT (Devlin et al. 2019) as Hugging Face `BertModel` runs it, the encoder of the MiniLM
//! sentence model: word + position + token-type embeddings and a layer norm, then post-LN
//! transformer layers
//!
//!   x = LayerNorm(x + attention.output.dense(self_attention(x, padding mask)))
//!   x = LayerNorm(x + output.dense(gelu(intermediate.dense(x))))
//!
//! Checkpoint keys are `BertModel`'s (`embeddings.*`, `encoder.layer.N.*`), at the root or under
//! `bert.` (as `BertFor…` heads save them); the pooler is not used. The word-embedding table
//! stays on the host (a row gather); everything after runs on the device.
use crate::backend::Device;
use crate::ops::{self, AttnMask, LayerNorm, Linear, Unary};
use crate::tensor::Tensor;
use crate::weights::vars::{Init, Vars};
use anyhow::{Result, bail};

/// Hugging Face `BertConfig`, field names verbatim, so a checkpoint's `config.json` deserialises
/// directly (other fields are ignored); defaults are `BertConfig`'s.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BertConfig {
    #[serde(default = "d::vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "d::hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "d::num_hidden_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d::num_attention_heads")]
    pub num_attention_heads: usize,
    /// The feed-forward width.
    #[serde(default = "d::intermediate_size")]
    pub intermediate_size: usize,
    /// `gelu` (exact, erf) is the only activation BERT checkpoints of this family use.
    #[serde(default = "d::hidden_act")]
    pub hidden_act: String,
    #[serde(default = "d::max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default = "d::type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "d::layer_norm_eps")]
    pub layer_norm_eps: f32,
    /// Only `absolute` position embeddings are supported.
    #[serde(default = "d::position_embedding_type")]
    pub position_embedding_type: String,
}

/// `BertConfig`'s defaults (transformers, configuration_bert.py).
mod d {
    pub fn vocab_size() -> usize {
        30522
    }
    pub fn hidden_size() -> usize {
        768
    }
    pub fn num_hidden_layers() -> usize {
        12
    }
    pub fn num_attention_heads() -> usize {
        12
    }
    pub fn intermediate_size() -> usize {
        3072
    }
    pub fn hidden_act() -> String {
        "gelu".into()
    }
    pub fn max_position_embeddings() -> usize {
        512
    }
    pub fn type_vocab_size() -> usize {
        2
    }
    pub fn layer_norm_eps() -> f32 {
        1e-12
    }
    pub fn position_embedding_type() -> String {
        "absolute".into()
    }
}

impl BertConfig {
    /// MiniLM-L6-H384 (`all-MiniLM-L6-v2`'s encoder).
    pub fn minilm_l6() -> BertConfig {
        BertConfig {
            vocab_size: 30522,
            hidden_size: 384,
            num_hidden_layers: 6,
            num_attention_heads: 12,
            intermediate_size: 1536,
            hidden_act: "gelu".into(),
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            position_embedding_type: "absolute".into(),
        }
    }

    fn check(&self) -> Result<()> {
        let (w, h) = (self.hidden_size, self.num_attention_heads);
        if h == 0 || w % h != 0 {
            bail!("BERT config: num_attention_heads {h} does not divide hidden_size {w}");
        }
        if self.hidden_act != "gelu" {
            bail!(
                "BERT config: hidden_act '{}' is not supported (gelu)",
                self.hidden_act
            );
        }
        if self.position_embedding_type != "absolute" {
            bail!(
                "BERT config: position_embedding_type '{}' is not supported (absolute)",
                self.position_embedding_type
            );
        }
        if self.type_vocab_size == 0 || self.max_position_embeddings == 0 {
            bail!("BERT config: type_vocab_size and max_position_embeddings must be positive");
        }
        Ok(())
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    /// `attention.output.dense` and `attention.output.LayerNorm`.
    attn_out: Linear,
    attn_norm: LayerNorm,
    /// `intermediate.dense`.
    intermediate: Linear,
    /// `output.dense` and `output.LayerNorm`.
    out: Linear,
    out_norm: LayerNorm,
}

pub struct BertModel {
    pub cfg: BertConfig,
    device: Device,
    word_embeddings: Vec<f32>,
    position_embeddings: Vec<f32>,
    token_type_embeddings: Vec<f32>,
    embeddings_norm: LayerNorm,
    layers: Vec<Layer>,
}

impl BertModel {
    /// The encoder from the weights in `v`, at its root or under `bert.`.
    pub fn load(v: &Vars, cfg: &BertConfig) -> Result<Self> {
        cfg.check()?;
        let v = if !v.contains("embeddings.word_embeddings.weight")
            && v.contains("bert.embeddings.word_embeddings.weight")
        {
            v.pp("bert")
        } else {
            v.clone()
        };
        let (w, m, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        let emb = v.pp("embeddings");
        let table = Init::Uniform(-0.1, 0.1);
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = v.pp("encoder").pp("layer").pp(i);
                let (s, o) = (l.pp("attention").pp("self"), l.pp("attention").pp("output"));
                Ok(Layer {
                    query: s.linear("query", [w, w], true)?,
                    key: s.linear("key", [w, w], true)?,
                    value: s.linear("value", [w, w], true)?,
                    attn_out: o.linear("dense", [w, w], true)?,
                    attn_norm: o.layer_norm("LayerNorm", w, eps)?,
                    intermediate: l.pp("intermediate").linear("dense", [m, w], true)?,
                    out: l.pp("output").linear("dense", [w, m], true)?,
                    out_norm: l.pp("output").layer_norm("LayerNorm", w, eps)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let table_of = |name: &str, rows: usize| -> Result<Vec<f32>> {
            Ok(emb.pp(name).get("weight", &[rows, w], table)?.into_owned())
        };
        Ok(BertModel {
            word_embeddings: table_of("word_embeddings", cfg.vocab_size)?,
            position_embeddings: table_of("position_embeddings", cfg.max_position_embeddings)?,
            token_type_embeddings: table_of("token_type_embeddings", cfg.type_vocab_size)?,
            embeddings_norm: emb.layer_norm("LayerNorm", w, eps)?,
            layers,
            device: v.device().clone(),
            cfg: cfg.clone(),
        })
    }

    /// The last hidden state `[1, tokens, hidden]` of one sequence (token type 0). `mask[i]` is
    /// false for padding: no token attends to it (BERT's extended attention mask), though its
    /// own state is computed like every other.
    pub fn forward(&self, ids: &[u32], mask: &[bool]) -> Result<Tensor> {
        let (l, w) = (ids.len(), self.cfg.hidden_size);
        if l == 0 || l > self.cfg.max_position_embeddings {
            bail!(
                "the BERT encoder takes 1 to {} tokens, got {l}",
                self.cfg.max_position_embeddings
            );
        }
        if mask.len() != l || !mask.iter().any(|&m| m) {
            bail!(
                "the attention mask must have one entry per token ({l}) with at least one \
                 real token, got {} entries",
                mask.len()
            );
        }
        let mut x = Vec::with_capacity(l * w);
        let typ = &self.token_type_embeddings[..w];
        for (pos, &id) in ids.iter().enumerate() {
            if id as usize >= self.cfg.vocab_size {
                bail!(
                    "token id {id} at position {pos} is outside the vocabulary of {}",
                    self.cfg.vocab_size
                );
            }
            let tok = &self.word_embeddings[id as usize * w..][..w];
            let p = &self.position_embeddings[pos * w..][..w];
            x.extend((0..w).map(|c| tok[c] + p[c] + typ[c]));
        }
        let x = Tensor::from_vec(&self.device, &[l, w], x)?;
        let mut x = self.embeddings_norm.forward(&x)?;
        // transformers' extended mask adds finfo(f32).min to padded keys' scores.
        let bias: Vec<f32> = mask
            .iter()
            .map(|&m| if m { 0.0 } else { f32::MIN })
            .collect();
        let bias = Tensor::from_vec(&self.device, &[1, l], bias)?;
        let heads = self.cfg.num_attention_heads;
        for layer in &self.layers {
            let rows = |t: Tensor| t.reshape(&[1, l, w]);
            let q = rows(layer.query.forward(&x)?)?;
            let k = rows(layer.key.forward(&x)?)?;
            let v = rows(layer.value.forward(&x)?)?;
            let mask = AttnMask {
                causal: false,
                key_bias: Some(&bias),
            };
            let a = ops::attention(&q, &k, &v, heads, mask)?.reshape(&[l, w])?;
            x = layer
                .attn_norm
                .forward(&ops::add(&x, &layer.attn_out.forward(&a)?)?)?;
            let h = ops::unary(&layer.intermediate.forward(&x)?, Unary::Gelu)?;
            x = layer
                .out_norm
                .forward(&ops::add(&x, &layer.out.forward(&h)?)?)?;
        }
        x.reshape(&[1, l, w])
    }
}
