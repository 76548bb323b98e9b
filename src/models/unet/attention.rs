//! The UNet's transformer (diffusers attention_processor.py, attention.py,
//! transformers/transformer_2d.py): `Attention`, the GEGLU `FeedForward`, `BasicTransformerBlock`
//! and `Transformer2DModel`, which runs the blocks on the pixels of a feature map as tokens.
use super::{conv_flops, linear_flops};
use crate::ops::attention::AttnShape;
use crate::ops::{self, AttnMask, Conv2d, GroupNorm, LayerNorm, Linear};
use crate::tensor::Tensor;
use crate::weights::vars::Vars;
use anyhow::{Result, bail};

/// Multi-head attention without biases on q, k, v:
/// `to_out.0(softmax(q·kᵀ/√d)·v)`, q = to_q(x), k = to_k(ctx), v = to_v(ctx), where ctx is the
/// text tokens (cross-attention) or x itself (self-attention). Scores are float32 throughout,
/// so `upcast_attention` changes nothing here.
pub struct Attention {
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    pub to_out_0: Linear,
    pub heads: usize,
}

impl Attention {
    /// `query_dim`-wide queries; keys and values from `context_dim`-wide tokens.
    pub fn load(
        v: &Vars,
        query_dim: usize,
        context_dim: usize,
        heads: usize,
        dim_head: usize,
    ) -> Result<Self> {
        let inner = heads * dim_head;
        Ok(Attention {
            to_q: v.linear("to_q", [inner, query_dim], false)?,
            to_k: v.linear("to_k", [inner, context_dim], false)?,
            to_v: v.linear("to_v", [inner, context_dim], false)?,
            to_out_0: v.pp("to_out").linear("0", [query_dim, inner], true)?,
            heads,
        })
    }

    /// FLOPs on `b` × `lq` queries over `lk` keys.
    pub fn flops(&self, b: usize, lq: usize, lk: usize) -> f64 {
        let inner = self.to_q.fout;
        let shape = AttnShape {
            batch: b,
            lq,
            lk,
            heads: self.heads,
            head_dim: inner / self.heads,
        };
        linear_flops(&self.to_q, b * lq)
            + linear_flops(&self.to_k, b * lk)
            + linear_flops(&self.to_v, b * lk)
            + shape.flops(false)
            + linear_flops(&self.to_out_0, b * lq)
    }

    /// x: `[B, L, query_dim]`; context: `[B, Lk, context_dim]`, or None for self-attention.
    pub fn forward(&self, x: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let ctx = context.unwrap_or(x);
        let q = self.to_q.forward(x)?;
        let k = self.to_k.forward(ctx)?;
        let v = self.to_v.forward(ctx)?;
        let a = ops::attention(&q, &k, &v, self.heads, AttnMask::default())?;
        self.to_out_0.forward(&a)
    }
}

/// `FeedForward(dim, activation_fn="geglu")`: `net.0` = GEGLU (a projection to 2·4·dim, then
/// h·GELU(gate)), `net.1` = dropout, `net.2` = the projection back to dim.
pub struct FeedForward {
    pub net_0_proj: Linear,
    pub net_2: Linear,
}

impl FeedForward {
    pub fn load(v: &Vars, dim: usize) -> Result<Self> {
        let inner = 4 * dim;
        let net = v.pp("net");
        Ok(FeedForward {
            net_0_proj: net.pp("0").linear("proj", [2 * inner, dim], true)?,
            net_2: net.linear("2", [dim, inner], true)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = ops::geglu(&self.net_0_proj.forward(x)?)?;
        self.net_2.forward(&h)
    }
}

/// `BasicTransformerBlock` (`norm_type="layer_norm"`), on tokens `[B, L, dim]`:
///
///   x = x + attn1(norm1(x))            self-attention (or cross with only_cross_attention)
///   x = x + attn2(norm2(x), text)      cross-attention to the text tokens
///   x = x + ff(norm3(x))               GEGLU feed-forward
pub struct BasicTransformerBlock {
    pub norm1: LayerNorm,
    pub attn1: Attention,
    pub norm2: LayerNorm,
    pub attn2: Attention,
    pub norm3: LayerNorm,
    pub ff: FeedForward,
    pub only_cross_attention: bool,
}

/// What a Transformer2DModel takes from its block.
#[derive(Clone, Copy, Debug)]
pub struct TransformerArgs {
    pub heads: usize,
    pub cross_attention_dim: usize,
    pub groups: usize,
    pub use_linear_projection: bool,
    pub only_cross_attention: bool,
}

impl BasicTransformerBlock {
    pub fn load(v: &Vars, dim: usize, dim_head: usize, a: TransformerArgs) -> Result<Self> {
        let ctx = a.cross_attention_dim;
        let attn1_ctx = if a.only_cross_attention { ctx } else { dim };
        Ok(BasicTransformerBlock {
            norm1: v.layer_norm("norm1", dim, 1e-5)?,
            attn1: Attention::load(&v.pp("attn1"), dim, attn1_ctx, a.heads, dim_head)?,
            norm2: v.layer_norm("norm2", dim, 1e-5)?,
            attn2: Attention::load(&v.pp("attn2"), dim, ctx, a.heads, dim_head)?,
            norm3: v.layer_norm("norm3", dim, 1e-5)?,
            ff: FeedForward::load(&v.pp("ff"), dim)?,
            only_cross_attention: a.only_cross_attention,
        })
    }

    /// FLOPs on `b` × `l` tokens with `lk` text tokens.
    pub fn flops(&self, b: usize, l: usize, lk: usize) -> f64 {
        let attn1_keys = if self.only_cross_attention { lk } else { l };
        self.attn1.flops(b, l, attn1_keys)
            + self.attn2.flops(b, l, lk)
            + linear_flops(&self.ff.net_0_proj, b * l)
            + linear_flops(&self.ff.net_2, b * l)
    }

    /// x: `[B, L, dim]`, text: `[B, Lk, cross_attention_dim]`.
    pub fn forward(&self, x: &Tensor, text: &Tensor) -> Result<Tensor> {
        let attn1_ctx = self.only_cross_attention.then_some(text);
        let x = ops::add(&self.attn1.forward(&self.norm1.forward(x)?, attn1_ctx)?, x)?;
        let x = ops::add(
            &self.attn2.forward(&self.norm2.forward(&x)?, Some(text))?,
            &x,
        )?;
        ops::add(&self.ff.forward(&self.norm3.forward(&x)?)?, &x)
    }
}

/// proj_in / proj_out: a 1×1 conv on the feature map (SD 1.x) or a linear layer on the tokens
/// (`use_linear_projection`, SD 2.x).
pub enum Projection {
    Conv(Conv2d),
    Linear(Linear),
}

impl Projection {
    fn load(v: &Vars, name: &str, out: usize, cin: usize, linear: bool) -> Result<Self> {
        Ok(if linear {
            Projection::Linear(v.linear(name, [out, cin], true)?)
        } else {
            Projection::Conv(v.conv2d(name, [out, cin, 1, 1], true, 1, 0)?)
        })
    }
}

/// `Transformer2DModel` on continuous input `[B, C, H, W]`:
///
///   h = norm(x)                                  GroupNorm, eps 1e-6
///   tokens = proj_in(h) as [B, H·W, inner]       (conv before / linear after the reshape)
///   tokens = transformer_blocks(tokens, text)
///   out = proj_out(tokens) as [B, C, H, W] + x
///
/// with inner = heads × (C / heads).
pub struct Transformer2DModel {
    pub norm: GroupNorm,
    pub proj_in: Projection,
    pub transformer_blocks: Vec<BasicTransformerBlock>,
    pub proj_out: Projection,
}

impl Transformer2DModel {
    pub fn load(v: &Vars, channels: usize, num_layers: usize, a: TransformerArgs) -> Result<Self> {
        let dim_head = channels / a.heads;
        let inner = a.heads * dim_head;
        let linear = a.use_linear_projection;
        Ok(Transformer2DModel {
            norm: v.group_norm("norm", a.groups, channels, 1e-6)?,
            proj_in: Projection::load(v, "proj_in", inner, channels, linear)?,
            transformer_blocks: (0..num_layers)
                .map(|i| {
                    BasicTransformerBlock::load(
                        &v.pp("transformer_blocks").pp(i),
                        inner,
                        dim_head,
                        a,
                    )
                })
                .collect::<Result<_>>()?,
            proj_out: Projection::load(v, "proj_out", channels, inner, linear)?,
        })
    }

    /// FLOPs on `[b, C, h, w]` with `lk` text tokens.
    pub fn flops(&self, b: usize, h: usize, w: usize, lk: usize) -> f64 {
        let proj = |p: &Projection| match p {
            Projection::Conv(c) => conv_flops(c, b, h, w),
            Projection::Linear(l) => linear_flops(l, b * h * w),
        };
        let blocks: f64 = self
            .transformer_blocks
            .iter()
            .map(|t| t.flops(b, h * w, lk))
            .sum();
        proj(&self.proj_in) + blocks + proj(&self.proj_out)
    }

    /// x: `[B, C, H, W]`, text: `[B, Lk, cross_attention_dim]` → `[B, C, H, W]`.
    pub fn forward(&self, x: &Tensor, text: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = x.nchw()?;
        if text.shape().len() != 3 || text.shape()[0] != b {
            bail!(
                "Transformer2DModel: text tokens must be [{b}, tokens, width], got {:?}",
                text.shape()
            );
        }
        let hs = self.norm.forward(x)?;
        let mut tokens = match &self.proj_in {
            Projection::Conv(c) => ops::nchw_to_tokens(&c.forward(&hs)?)?,
            Projection::Linear(l) => l.forward(&ops::nchw_to_tokens(&hs)?)?,
        };
        for block in &self.transformer_blocks {
            tokens = block.forward(&tokens, text)?;
        }
        let out = match &self.proj_out {
            Projection::Conv(c) => c.forward(&ops::tokens_to_nchw(&tokens, h, w)?)?,
            Projection::Linear(l) => ops::tokens_to_nchw(&l.forward(&tokens)?, h, w)?,
        };
        ops::add(&out, x)
    }
}
