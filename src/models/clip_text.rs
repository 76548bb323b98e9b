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
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::weights::store::WeightStore;
use anyhow::{Result, bail};

/// The text tower's shape.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClipTextConfig {
    pub vocab: usize,
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    /// Positions (tokens) the position embedding covers: 77 for CLIP.
    pub max_positions: usize,
    /// The MLP's hidden width (4 × width in CLIP).
    pub mlp_width: usize,
    /// `quick_gelu` (OpenAI CLIP, SD 1.x) or `gelu` (OpenCLIP, SD 2.x).
    pub quick_gelu: bool,
    pub eps: f32,
}

impl ClipTextConfig {
    /// OpenAI CLIP ViT-L/14's text tower, Stable Diffusion 1.x's text encoder.
    pub fn vit_l14() -> ClipTextConfig {
        ClipTextConfig {
            vocab: 49408,
            width: 768,
            layers: 12,
            heads: 12,
            max_positions: 77,
            mlp_width: 3072,
            quick_gelu: true,
            eps: 1e-5,
        }
    }

    /// Multiply-adds × 2 of a forward over `tokens` tokens (linear layers and attention).
    pub fn flops(&self, tokens: usize) -> f64 {
        let (l, w, m) = (tokens as f64, self.width as f64, self.mlp_width as f64);
        let attn = ops::attention::AttnShape {
            batch: 1,
            lq: tokens,
            lk: tokens,
            heads: self.heads,
            head_dim: self.width / self.heads,
        }
        .flops(true);
        self.layers as f64 * (2.0 * l * (4.0 * w * w + 2.0 * w * m) + attn)
    }

    /// Every tensor of the checkpoint: (name, shape).
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (w, m) = (self.width, self.mlp_width);
        let mut v = vec![
            (
                "text_model.embeddings.token_embedding.weight".into(),
                vec![self.vocab, w],
            ),
            (
                "text_model.embeddings.position_embedding.weight".into(),
                vec![self.max_positions, w],
            ),
        ];
        for i in 0..self.layers {
            let p = format!("text_model.encoder.layers.{i}");
            for ln in ["layer_norm1", "layer_norm2"] {
                v.push((format!("{p}.{ln}.weight"), vec![w]));
                v.push((format!("{p}.{ln}.bias"), vec![w]));
            }
            for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                v.push((format!("{p}.self_attn.{proj}.weight"), vec![w, w]));
                v.push((format!("{p}.self_attn.{proj}.bias"), vec![w]));
            }
            v.push((format!("{p}.mlp.fc1.weight"), vec![m, w]));
            v.push((format!("{p}.mlp.fc1.bias"), vec![m]));
            v.push((format!("{p}.mlp.fc2.weight"), vec![w, m]));
            v.push((format!("{p}.mlp.fc2.bias"), vec![w]));
        }
        v.push(("text_model.final_layer_norm.weight".into(), vec![w]));
        v.push(("text_model.final_layer_norm.bias".into(), vec![w]));
        v
    }
}

/// Random weights of the given shape (uniform ±√(3/fan-in), layer norms near identity), for
/// benchmarks and tests.
pub fn random_weights(cfg: &ClipTextConfig, seed: u64) -> WeightStore {
    let mut rng = Rng::new(seed);
    let mut store = WeightStore::new(format!("random CLIP text weights (seed {seed})"));
    for (name, shape) in cfg.tensors() {
        let n: usize = shape.iter().product();
        let v = if name.contains("layer_norm") {
            if name.ends_with("weight") {
                rng.uniform_vec(n, 0.9, 1.1)
            } else {
                rng.uniform_vec(n, -0.1, 0.1)
            }
        } else if name.ends_with("bias") {
            rng.uniform_vec(n, -0.05, 0.05)
        } else if name.contains("embedding") {
            rng.uniform_vec(n, -0.5, 0.5)
        } else {
            let a = (3.0 / shape[1] as f32).sqrt();
            rng.uniform_vec(n, -a, a)
        };
        store.insert(name, shape, v);
    }
    store
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
}

fn layer_norm(s: &WeightStore, d: &Device, name: &str, cfg: &ClipTextConfig) -> Result<LayerNorm> {
    let w = cfg.width;
    LayerNorm::new(
        d,
        s.get(&format!("{name}.weight"), &[w])?,
        s.get(&format!("{name}.bias"), &[w])?,
        cfg.eps,
    )
}

fn linear(s: &WeightStore, d: &Device, name: &str, [o, i]: [usize; 2]) -> Result<Linear> {
    Linear::new(
        d,
        s.get(&format!("{name}.weight"), &[o, i])?,
        [o, i],
        Some(s.get(&format!("{name}.bias"), &[o])?),
    )
}

impl ClipTextEncoder {
    pub fn load(store: &WeightStore, cfg: &ClipTextConfig, device: &Device) -> Result<Self> {
        if cfg.heads == 0 || cfg.width % cfg.heads != 0 {
            bail!(
                "CLIP text config: {} heads do not divide the width {}",
                cfg.heads,
                cfg.width
            );
        }
        let (w, m) = (cfg.width, cfg.mlp_width);
        let mut layers = Vec::with_capacity(cfg.layers);
        for i in 0..cfg.layers {
            let p = format!("text_model.encoder.layers.{i}");
            let a = format!("{p}.self_attn");
            layers.push(Layer {
                layer_norm1: layer_norm(store, device, &format!("{p}.layer_norm1"), cfg)?,
                q_proj: linear(store, device, &format!("{a}.q_proj"), [w, w])?,
                k_proj: linear(store, device, &format!("{a}.k_proj"), [w, w])?,
                v_proj: linear(store, device, &format!("{a}.v_proj"), [w, w])?,
                out_proj: linear(store, device, &format!("{a}.out_proj"), [w, w])?,
                layer_norm2: layer_norm(store, device, &format!("{p}.layer_norm2"), cfg)?,
                fc1: linear(store, device, &format!("{p}.mlp.fc1"), [m, w])?,
                fc2: linear(store, device, &format!("{p}.mlp.fc2"), [w, m])?,
            });
        }
        Ok(ClipTextEncoder {
            token_embedding: store
                .get(
                    "text_model.embeddings.token_embedding.weight",
                    &[cfg.vocab, w],
                )?
                .to_vec(),
            position_embedding: store
                .get(
                    "text_model.embeddings.position_embedding.weight",
                    &[cfg.max_positions, w],
                )?
                .to_vec(),
            final_layer_norm: layer_norm(store, device, "text_model.final_layer_norm", cfg)?,
            layers,
            device: device.clone(),
            cfg: cfg.clone(),
        })
    }

    /// The last hidden state `[1, tokens, width]` for token ids (BOS … EOS, padding included:
    /// the mask is causal only, as Stable Diffusion runs it).
    pub fn forward(&self, ids: &[u32]) -> Result<Tensor> {
        let (l, w) = (ids.len(), self.cfg.width);
        if l == 0 || l > self.cfg.max_positions {
            bail!(
                "the text encoder takes 1 to {} tokens, got {l}",
                self.cfg.max_positions
            );
        }
        let mut x = Vec::with_capacity(l * w);
        for (pos, &id) in ids.iter().enumerate() {
            if id as usize >= self.cfg.vocab {
                bail!(
                    "token id {id} at position {pos} is outside the vocabulary of {}",
                    self.cfg.vocab
                );
            }
            let tok = &self.token_embedding[id as usize * w..][..w];
            let p = &self.position_embedding[pos * w..][..w];
            x.extend(tok.iter().zip(p).map(|(a, b)| a + b));
        }
        let act = if self.cfg.quick_gelu {
            Unary::QuickGelu
        } else {
            Unary::Gelu
        };
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
            let a = ops::attention(&q, &k, &v, self.cfg.heads, mask)?.reshape(&[l, w])?;
            x = ops::add(&x, &layer.out_proj.forward(&a)?)?;
            let h = layer.layer_norm2.forward(&x)?;
            let h = ops::unary(&layer.fc1.forward(&h)?, act)?;
            x = ops::add(&x, &layer.fc2.forward(&h)?)?;
        }
        self.final_layer_norm.forward(&x)?.reshape(&[1, l, w])
    }
}
