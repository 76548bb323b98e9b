//! Multi-head scaled dot-product attention (kernels/attention.wgsl), PyTorch's
//! `F.scaled_dot_product_attention` on the `[B, H, L, D]` view of `[B, L, H·D]` rows: the layout
//! a `Linear` projection produces, so no transposes are needed around it. Self-attention
//! (text encoders, UNet levels) and cross-attention (UNet queries over text tokens) alike.
use super::gpu_empty;
use crate::backend::Device;
use crate::backend::cpu::{MatRef, sgemm};
use crate::tensor::{Tensor, same_device};
use anyhow::{Result, bail};
use rayon::prelude::*;

crate::kernel_params! {
    /// attention.wgsl's `Params`.
    pub struct AttentionParams {
        pub lq: u32, pub lk: u32, pub heads: u32, pub d4: u32,
        /// Bit 0: causal; bit 1: a key bias is bound.
        pub flags: u32,
        pub scale: f32,
        pub _p0: u32, pub _p1: u32,
    }
}

/// The largest head size of the WGSL kernel's entry points (`main_wide_*` above 128).
pub const GPU_MAX_HEAD_DIM: usize = 512;

/// The largest head size of the `main_r*` entry points; larger heads use `main_wide_r*`.
pub const GPU_NARROW_MAX_HEAD_DIM: usize = 128;

/// The kernel's entry points by query rows per invocation (tools/gen_attention.py), largest
/// first: a block of R rows is used when there are at least 4 workgroups (4 × 64 × R queries) per
/// head, so short sequences still spread over the device.
const ATTN_BLOCKS: [(usize, &str); 3] = [(8, "main_r8"), (4, "main_r4"), (1, "main_r1")];

/// The same for head sizes above [`GPU_NARROW_MAX_HEAD_DIM`] (rows of up to 512 values).
const ATTN_WIDE_BLOCKS: [(usize, &str); 3] = [
    (4, "main_wide_r4"),
    (2, "main_wide_r2"),
    (1, "main_wide_r1"),
];

/// The entry point and its query rows per invocation for `lq` queries of head size `head_dim`.
/// The wide entries take a block of R rows as soon as it fills one workgroup per head (64 × R
/// queries): on lavapipe at 256 tokens × 8 heads × 160, R = 4 runs 11.5 GFLOP/s against 4.1 for
/// R = 2 and 2.4 for R = 1 (the per-key work grows with D, so fewer, fuller invocations pay).
pub fn gpu_entry(lq: usize, head_dim: usize) -> (usize, &'static str) {
    let (blocks, per_row): (&[(usize, &'static str)], usize) = if head_dim > GPU_NARROW_MAX_HEAD_DIM
    {
        (&ATTN_WIDE_BLOCKS, 64)
    } else {
        (&ATTN_BLOCKS, 4 * 64)
    };
    blocks
        .iter()
        .copied()
        .find(|&(r, _)| r == 1 || lq >= per_row * r)
        .unwrap()
}

/// Which keys a query sees beyond all of them.
#[derive(Clone, Copy, Default)]
pub struct AttnMask<'a> {
    /// Key j is visible to query i only if j ≤ i (CLIP's text encoder; PyTorch `is_causal`).
    pub causal: bool,
    /// `[B, Lk]`, added to every query's scores: 0 for a real token, a large negative number
    /// (or -inf) for padding, as BERT's extended attention mask.
    pub key_bias: Option<&'a Tensor>,
}

/// The shapes of one attention call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnShape {
    pub batch: usize,
    pub lq: usize,
    pub lk: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl AttnShape {
    /// FLOPs: q·kᵀ and p·v, 2 per multiply-add each (softmax not counted).
    pub fn flops(&self, causal: bool) -> f64 {
        let pairs = if causal {
            // Query i sees min(i + 1, lk) keys.
            (0..self.lq).map(|i| (i + 1).min(self.lk)).sum::<usize>() as f64
        } else {
            (self.lq * self.lk) as f64
        };
        4.0 * pairs * (self.batch * self.heads * self.head_dim) as f64
    }
}

/// q: `[B, Lq, H·D]`, k and v: `[B, Lk, H·D]` → `[B, Lq, H·D]`, with scale 1/√D.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    mask: AttnMask,
) -> Result<Tensor> {
    let s = attn_shape(q.shape(), k.shape(), v.shape(), heads)?;
    let mut ts = vec![q, k, v];
    if let Some(b) = mask.key_bias {
        if b.shape() != [s.batch, s.lk] {
            bail!(
                "attention key bias must be [batch, keys] = [{}, {}], got {:?}",
                s.batch,
                s.lk,
                b.shape()
            );
        }
        ts.push(b);
    }
    let device = same_device(&ts)?;
    let c = s.heads * s.head_dim;
    let scale = 1.0 / (s.head_dim as f32).sqrt();
    match device {
        Device::Cpu => Ok(Tensor::cpu(
            vec![s.batch, s.lq, c],
            attention_cpu(
                q.host(),
                k.host(),
                v.host(),
                s,
                scale,
                mask.causal,
                mask.key_bias.map(|b| b.host()),
            ),
        )),
        Device::Gpu(ctx) => {
            if s.head_dim % 4 != 0 || s.head_dim > GPU_MAX_HEAD_DIM {
                bail!(
                    "attention on the GPU needs a head size that is a multiple of 4 and at most \
                     {GPU_MAX_HEAD_DIM}, got {} ({c} channels / {heads} heads); use --backend cpu",
                    s.head_dim
                );
            }
            let out = gpu_empty(&ctx, &[s.batch, s.lq, c])?;
            let flags = mask.causal as u32 | (mask.key_bias.is_some() as u32) << 1;
            let params = AttentionParams {
                lq: s.lq as u32,
                lk: s.lk as u32,
                heads: s.heads as u32,
                d4: (s.head_dim / 4) as u32,
                flags,
                scale,
                ..Default::default()
            };
            let bias = mask.key_bias.map(|b| b.buf()).unwrap_or(q.buf());
            let (rows, entry) = gpu_entry(s.lq, s.head_dim);
            ctx.dispatch_specialized(
                "attention.wgsl",
                entry,
                &[("D4", (s.head_dim / 4) as f64)],
                &[q.buf(), k.buf(), v.buf(), bias],
                out.buf(),
                &params,
                [
                    s.lq.div_ceil(64 * rows) as u32,
                    s.heads as u32,
                    s.batch as u32,
                ],
            )?;
            Ok(out)
        }
    }
}

fn attn_shape(q: &[usize], k: &[usize], v: &[usize], heads: usize) -> Result<AttnShape> {
    let [b, lq, c] = *q else {
        bail!("attention query must be [batch, tokens, channels], got {q:?}")
    };
    let [bk, lk, ck] = *k else {
        bail!("attention key must be [batch, tokens, channels], got {k:?}")
    };
    if v != k {
        bail!("attention value shape {v:?} differs from key shape {k:?}");
    }
    if bk != b || ck != c {
        bail!("attention key {k:?} does not match query {q:?} in batch or channels");
    }
    if heads == 0 || c % heads != 0 {
        bail!("attention: {c} channels do not split into {heads} heads");
    }
    Ok(AttnShape {
        batch: b,
        lq,
        lk,
        heads,
        head_dim: c / heads,
    })
}

/// Query rows per block in the CPU twin: bounds the score block to rows × Lk floats.
const CPU_ROWS: usize = 256;

/// CPU twin: per (batch, head, block of query rows), S = q·kᵀ·scale + bias (sgemm), a row
/// softmax, then S·v (sgemm). A row whose every key is masked (-inf) is 0, as in the kernel.
pub fn attention_cpu(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    s: AttnShape,
    scale: f32,
    causal: bool,
    key_bias: Option<&[f32]>,
) -> Vec<f32> {
    let AttnShape {
        batch,
        lq,
        lk,
        heads,
        head_dim: d,
    } = s;
    let c = heads * d;
    let mut out = vec![0f32; batch * lq * c];
    if lk == 0 || d == 0 {
        return out;
    }
    // Work items: (batch, head, first query row); each writes its own rows × D block.
    let items: Vec<(usize, usize, usize)> = (0..batch)
        .flat_map(|b| {
            (0..heads).flat_map(move |h| (0..lq).step_by(CPU_ROWS).map(move |i| (b, h, i)))
        })
        .collect();
    let blocks: Vec<Vec<f32>> = items
        .par_iter()
        .map(|&(b, h, i0)| {
            let rows = CPU_ROWS.min(lq - i0);
            let mut sc = vec![0f32; rows * lk];
            sgemm(
                rows,
                lk,
                d,
                &mut sc,
                lk,
                false,
                MatRef {
                    data: &q[(b * lq + i0) * c + h * d..],
                    rs: c as isize,
                    cs: 1,
                },
                MatRef {
                    data: &k[b * lk * c + h * d..],
                    rs: 1,
                    cs: c as isize,
                },
                1,
            );
            for (r, row) in sc.chunks_mut(lk).enumerate() {
                let visible = if causal { (i0 + r + 1).min(lk) } else { lk };
                let (seen, hidden) = row.split_at_mut(visible);
                hidden.fill(0.0);
                softmax_in_place(seen, scale, key_bias.map(|kb| &kb[b * lk..]));
            }
            let mut o = vec![0f32; rows * d];
            sgemm(
                rows,
                d,
                lk,
                &mut o,
                d,
                false,
                MatRef {
                    data: &sc,
                    rs: lk as isize,
                    cs: 1,
                },
                MatRef {
                    data: &v[b * lk * c + h * d..],
                    rs: c as isize,
                    cs: 1,
                },
                1,
            );
            o
        })
        .collect();
    for (&(b, h, i0), o) in items.iter().zip(&blocks) {
        for (r, orow) in o.chunks(d).enumerate() {
            let at = (b * lq + i0 + r) * c + h * d;
            out[at..at + d].copy_from_slice(orow);
        }
    }
    out
}

/// softmax(row · scale + bias) in place; a row whose every entry is -inf becomes 0. Compiled
/// for AVX2+FMA too, chosen at run time.
fn softmax_in_place(row: &mut [f32], scale: f32, bias: Option<&[f32]>) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for (checked just above).
        return unsafe { softmax_avx2(row, scale, bias) };
    }
    softmax_portable(row, scale, bias)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_avx2(row: &mut [f32], scale: f32, bias: Option<&[f32]>) {
    softmax_portable(row, scale, bias)
}

/// The max and the sum run in 8 independent lanes so that they vectorize (f32 reductions in
/// order do not).
#[inline(always)]
fn softmax_portable(row: &mut [f32], scale: f32, bias: Option<&[f32]>) {
    const L: usize = 8;
    match bias {
        Some(b) => row
            .iter_mut()
            .zip(b)
            .for_each(|(x, &b)| *x = *x * scale + b),
        None => row.iter_mut().for_each(|x| *x *= scale),
    }
    let mut lanes = [f32::NEG_INFINITY; L];
    let mut chunks = row.chunks_exact(L);
    for c in &mut chunks {
        for i in 0..L {
            lanes[i] = lanes[i].max(c[i]);
        }
    }
    let m = chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    if m == f32::NEG_INFINITY {
        row.fill(0.0);
        return;
    }
    let mut sums = [0f32; L];
    let mut chunks = row.chunks_exact_mut(L);
    for c in &mut chunks {
        for i in 0..L {
            c[i] = exp_vec(c[i] - m);
            sums[i] += c[i];
        }
    }
    let rem = chunks.into_remainder();
    rem.iter_mut().for_each(|x| *x = exp_vec(*x - m));
    let inv = 1.0 / (sums.iter().sum::<f32>() + rem.iter().sum::<f32>());
    row.iter_mut().for_each(|x| *x *= inv);
}

/// e^x for x ≤ 0 (softmax after subtracting the row max), branch-free so that loops over slices
/// vectorize: x = n·ln2 + r with |r| ≤ ln2/2, e^r by Cephes' degree-6 polynomial (relative error
/// ~2e-7 over the range), 2^n through the exponent bits. Below -87 it returns ~1e-38, not 0.
#[inline(always)]
fn exp_vec(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest without a rounding instruction: 1.5·2²³ pushes the fraction out.
    let n = (x * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // 2^n from the exponent bits; n + 127 ∈ [1, 254] sits in the low mantissa bits of
    // 1.5·2²³ + n + 127 (no float→int conversion, which is scalar with Rust's saturation).
    let biased = (n + (127.0 + 12_582_912.0)).to_bits() - 0x4B40_0000;
    er * f32::from_bits(biased << 23)
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_vec_matches_std() {
        for i in 0..=200_000 {
            let x = -87.0 + 87.0 * i as f32 / 200_000.0;
            let (a, b) = (super::exp_vec(x), x.exp());
            assert!((a - b).abs() <= 4e-7 * b, "exp({x}): {a} vs {b}");
        }
    }
}
