//! BERT and the sentence encoder built on it: all-MiniLM-L6-v2 (sentence-transformers; a
//! 6-layer, 384-wide MiniLM), the frozen text encoder of the built-in text-to-image stack.
//! A sentence-transformers model is a `Transformer` (BERT), mean `Pooling` over the real tokens
//! and `Normalize` (unit length); the per-token hidden states are kept for cross-attention.
//!
//! The pretrained weights are compiled into the binary (`assets/minilm/`, Apache-2.0, int8 with
//! per-row scales; tools/minilm_reference.py writes them and measures what int8 costs).
pub mod model;
pub mod tokenizer;

pub use model::{BertConfig, BertModel};
pub use tokenizer::{Encoding, WordPieceTokenizer};

use crate::backend::Device;
use crate::tensor::Tensor;
use crate::weights::store::WeightStore;
use crate::weights::vars::Vars;
use anyhow::{Context, Result, anyhow, bail};
use std::path::Path;

/// The built-in encoder's weights (int8 + scales, config under `bert_config` in the header).
static BUILTIN_WEIGHTS: &[u8] = include_bytes!("../../../assets/minilm/model.safetensors");
/// Its `tokenizer.json`, gzipped.
static BUILTIN_TOKENIZER: &[u8] = include_bytes!("../../../assets/minilm/tokenizer.json.gz");

/// The header key of a sentence encoder's [`BertConfig`] in a spadework weight file.
pub const CONFIG_KEY: &str = "bert_config";

/// A sentence's encoding.
pub struct SentenceEmbedding {
    /// The last hidden state `[1, tokens, hidden]` (padding positions included).
    pub tokens: Tensor,
    /// Which of `tokens` are real (`[CLS]`, the text, `[SEP]`).
    pub mask: Vec<bool>,
    /// The mean of the real tokens' states, scaled to unit length when the model normalises.
    pub pooled: Vec<f32>,
    /// Whether the text lost tokens to the length limit.
    pub truncated: bool,
}

pub struct SentenceEncoder {
    pub tokenizer: WordPieceTokenizer,
    pub model: BertModel,
    /// sentence-transformers' `Normalize` module: the pooled embedding has unit length.
    pub normalize: bool,
}

impl SentenceEncoder {
    /// all-MiniLM-L6-v2 as compiled into the binary.
    pub fn builtin(device: &Device) -> Result<SentenceEncoder> {
        let store = WeightStore::from_static(BUILTIN_WEIGHTS, "the built-in MiniLM encoder")?;
        let tokenizer =
            WordPieceTokenizer::from_bytes(BUILTIN_TOKENIZER, "the built-in MiniLM tokenizer")?;
        Self::from_store(&store, tokenizer, device)
    }

    /// A spadework weight file (the config under [`CONFIG_KEY`]) and a tokenizer.
    pub fn from_store(
        store: &WeightStore,
        tokenizer: WordPieceTokenizer,
        device: &Device,
    ) -> Result<SentenceEncoder> {
        let cfg = store
            .metadata
            .get(CONFIG_KEY)
            .ok_or_else(|| anyhow!("{}: no {CONFIG_KEY} in the header", store.source))?;
        let cfg: BertConfig = serde_json::from_str(cfg)
            .with_context(|| format!("{}: {CONFIG_KEY} is not a BERT config", store.source))?;
        let v = Vars::new(store, device);
        let model = BertModel::load(&v, &cfg)?;
        Ok(SentenceEncoder {
            tokenizer,
            model,
            normalize: true,
        })
    }

    /// A sentence-transformers folder: `config.json`, `model.safetensors`, `tokenizer.json`, and
    /// `modules.json` / `1_Pooling/config.json` when present (mean pooling only).
    pub fn from_folder(dir: &Path, device: &Device) -> Result<SentenceEncoder> {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .with_context(|| format!("cannot read {}", dir.join(name).display()))
        };
        let cfg: BertConfig = serde_json::from_str(&read("config.json")?)
            .with_context(|| format!("{}: not a BERT config.json", dir.display()))?;
        let mut normalize = false;
        if dir.join("modules.json").exists() {
            let modules: serde_json::Value = serde_json::from_str(&read("modules.json")?)
                .with_context(|| format!("{}/modules.json: not JSON", dir.display()))?;
            let types = modules
                .as_array()
                .map(|a| a.iter().filter_map(|m| m["type"].as_str()).collect())
                .unwrap_or_else(Vec::new);
            normalize = types.iter().any(|t| t.ends_with(".Normalize"));
        }
        if dir.join("1_Pooling/config.json").exists() {
            let p: serde_json::Value = serde_json::from_str(&read("1_Pooling/config.json")?)
                .with_context(|| format!("{}/1_Pooling/config.json: not JSON", dir.display()))?;
            if p["pooling_mode_mean_tokens"] != serde_json::Value::Bool(true) {
                bail!(
                    "{}/1_Pooling/config.json: only mean pooling (pooling_mode_mean_tokens) is \
                     supported",
                    dir.display()
                );
            }
        }
        let store = WeightStore::load(&dir.join("model.safetensors"))?;
        let model = BertModel::load(&Vars::new(&store, device), &cfg)?;
        let tokenizer = WordPieceTokenizer::from_file(&dir.join("tokenizer.json"))?;
        Ok(SentenceEncoder {
            tokenizer,
            model,
            normalize,
        })
    }

    /// `text` encoded in exactly `len` tokens (truncated or padded).
    pub fn encode(&self, text: &str, len: usize) -> Result<SentenceEmbedding> {
        let enc = self.tokenizer.encode(text, len)?;
        let tokens = self.model.forward(&enc.ids, &enc.mask)?;
        let states = tokens.to_vec()?;
        let pooled = mean_pool(&states, &enc.mask, self.normalize);
        Ok(SentenceEmbedding {
            tokens,
            truncated: enc.truncated(),
            mask: enc.mask,
            pooled,
        })
    }
}

/// sentence-transformers' mean pooling (the mean of the real tokens' rows of `states`,
/// `[tokens, width]` row-major) and, with `normalize`, `F.normalize` (unit length, eps 1e-12).
pub fn mean_pool(states: &[f32], mask: &[bool], normalize: bool) -> Vec<f32> {
    let w = states.len() / mask.len().max(1);
    let mut sum = vec![0f64; w];
    let mut n = 0usize;
    for (row, _) in states.chunks(w).zip(mask).filter(|(_, m)| **m) {
        for (s, v) in sum.iter_mut().zip(row) {
            *s += *v as f64;
        }
        n += 1;
    }
    let mut mean: Vec<f32> = sum.iter().map(|s| (s / n.max(1) as f64) as f32).collect();
    if normalize {
        let norm = mean.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        let d = norm.max(1e-12) as f32;
        mean.iter_mut().for_each(|v| *v /= d);
    }
    mean
}
