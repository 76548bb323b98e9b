//! 2-D convolution (PyTorch `nn.Conv2d` semantics: OIHW weights, zero padding, optional bias).
//!
//! GPU: `kernels/conv2d*_g*p*.wgsl`, implicit-GEMM kernels (three kinds by conv shape, see
//! [`ConvKernel`]; one per register tile, chosen per adapter by autotune) on weights packed
//! `[K][Cout/4]` as vec4.
//! CPU twin: im2col over bands of output rows + `gemm` (a 1×1 stride-1 conv is a plain GEMM).
use super::gpu_empty;
use crate::backend::cpu::{MatRef, sgemm};
use crate::backend::{Device, WeightStorage};
use crate::tensor::Tensor;
use anyhow::{Result, bail};
use rayon::prelude::*;

/// Register tiles (vec4s of output channels, output pixels per invocation), each generated as the
/// three [`ConvKernel`] kinds by tools/gen_conv2d.py. Which tile runs is chosen per
/// adapter by [`gpu_tile`]: `SPADEWORK_CONV_TILE=GxP`, else a cached autotune result, else a
/// short autotune at first use (written to the cache).
pub const TILES: [(usize, usize); 4] = [(4, 8), (2, 8), (4, 4), (1, 4)];
/// Weights and bias are packed for the widest tile (4 vec4s = 16 output channels), so every tile
/// reads the same buffers.
const PACK_CO4: usize = 4;

/// Output channels in vec4s, padded to the widest tile ([`PACK_CO4`] vec4s).
pub(crate) fn packed_cout4(cout: usize) -> usize {
    cout.div_ceil(4 * PACK_CO4) * PACK_CO4
}

/// Uploads `weight` `[cout, k]` (row-major: OIHW for a conv, `[out, in]` for a linear layer) in
/// the layout of the register-blocked conv and linear kernels: `[k][cout4]` vec4s, output channels
/// zero-padded to [`packed_cout4`]; the bias is zero-padded to match and stays f32. With
/// [`WeightStorage::F16`] each vec4 is 4 halves in two u32s (the weight tensor's shape then
/// counts 32-bit words: `[k, width / 2]`); a weight outside the f16 range is an error.
pub(crate) fn upload_packed(
    device: &Device,
    weight: &[f32],
    bias: Option<&[f32]>,
    cout: usize,
    k: usize,
    storage: WeightStorage,
) -> Result<(Tensor, Option<Tensor>)> {
    let width = packed_cout4(cout) * 4;
    let mut packed = vec![0f32; k * width];
    for co in 0..cout {
        for kk in 0..k {
            packed[kk * width + co] = weight[co * k + kk];
        }
    }
    let bias = match bias {
        Some(b) => {
            let mut v = b.to_vec();
            v.resize(width, 0.0);
            Some(Tensor::from_vec(device, &[width], v)?)
        }
        None => None,
    };
    let weight = match (storage, device) {
        (WeightStorage::F16, Device::Gpu(ctx)) => {
            ctx.check_storage(storage)?;
            if let Some((i, v)) = weight
                .iter()
                .enumerate()
                .find(|(_, v)| v.is_finite() && v.abs() > f32::from(half::f16::MAX))
            {
                bail!(
                    "weight {v} (output {}, index {}) is outside the f16 range (±65504); \
                     use f32 weight storage",
                    i / k,
                    i % k
                );
            }
            let halves: Vec<u16> = packed
                .iter()
                .map(|&v| half::f16::from_f32(v).to_bits())
                .collect();
            let buf = ctx.upload_bytes(bytemuck::cast_slice(&halves))?;
            Tensor::gpu(vec![k, width / 2], buf)
        }
        _ => Tensor::from_vec(device, &[k, width], packed)?,
    };
    Ok((weight, bias))
}

/// The three generated kernel kinds (tools/gen_conv2d.py writes one file per kind and tile).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvKernel {
    /// `conv2d_g{G}p{P}`: any kernel size, stride and padding; P pixels in flat output order.
    General,
    /// `conv2d3x3_g{G}p{P}`: 3×3 stride 1; the tile's pixels are one row's, and each input row
    /// segment is loaded once for the three kx taps.
    Row3x3,
    /// `conv2d1x1_g{G}p{P}`: 1×1 stride 1 unpadded, a GEMM with unmasked contiguous loads.
    Gemm1x1,
}

impl ConvKernel {
    pub const ALL: [ConvKernel; 3] = [ConvKernel::General, ConvKernel::Row3x3, ConvKernel::Gemm1x1];

    /// The kind that runs a conv of this kernel size, stride and padding.
    pub fn for_shape(kh: usize, kw: usize, stride: usize, pad: usize) -> ConvKernel {
        match (kh, kw, stride, pad) {
            (3, 3, 1, _) => ConvKernel::Row3x3,
            (1, 1, 1, 0) => ConvKernel::Gemm1x1,
            _ => ConvKernel::General,
        }
    }

    /// The kernel file of this kind for a tile (one of [`TILES`]) and weight storage.
    pub fn file(self, (g, p): (usize, usize), storage: WeightStorage) -> &'static str {
        const FILES: [[[&str; 3]; 4]; 2] = [
            [
                [
                    "conv2d_g4p8.wgsl",
                    "conv2d3x3_g4p8.wgsl",
                    "conv2d1x1_g4p8.wgsl",
                ],
                [
                    "conv2d_g2p8.wgsl",
                    "conv2d3x3_g2p8.wgsl",
                    "conv2d1x1_g2p8.wgsl",
                ],
                [
                    "conv2d_g4p4.wgsl",
                    "conv2d3x3_g4p4.wgsl",
                    "conv2d1x1_g4p4.wgsl",
                ],
                [
                    "conv2d_g1p4.wgsl",
                    "conv2d3x3_g1p4.wgsl",
                    "conv2d1x1_g1p4.wgsl",
                ],
            ],
            [
                [
                    "conv2d_g4p8_f16.wgsl",
                    "conv2d3x3_g4p8_f16.wgsl",
                    "conv2d1x1_g4p8_f16.wgsl",
                ],
                [
                    "conv2d_g2p8_f16.wgsl",
                    "conv2d3x3_g2p8_f16.wgsl",
                    "conv2d1x1_g2p8_f16.wgsl",
                ],
                [
                    "conv2d_g4p4_f16.wgsl",
                    "conv2d3x3_g4p4_f16.wgsl",
                    "conv2d1x1_g4p4_f16.wgsl",
                ],
                [
                    "conv2d_g1p4_f16.wgsl",
                    "conv2d3x3_g1p4_f16.wgsl",
                    "conv2d1x1_g1p4_f16.wgsl",
                ],
            ],
        ];
        let t = TILES
            .iter()
            .position(|&t| t == (g, p))
            .unwrap_or_else(|| panic!("no conv2d kernel for tile {g}x{p}"));
        FILES[storage as usize][t][self as usize]
    }
}

crate::kernel_params! {
    /// The `Params` of every conv2d*.wgsl kernel (tools/gen_conv2d.py writes them all alike).
    pub struct ConvParams {
        pub n: u32, pub cin: u32, pub h: u32, pub w: u32,
        pub cout: u32, pub oh: u32, pub ow: u32, pub cout4: u32,
        pub kh: u32, pub kw: u32, pub stride: u32, pub pad: u32,
        pub has_bias: u32, pub _p0: u32, pub _p1: u32, pub _p2: u32,
    }
}

/// A convolution layer with its weights already on the device, packed for its kernel.
pub struct Conv2d {
    pub cout: usize,
    pub cin: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    /// CPU: OIHW as given, except 3×3 stride-1 convs: [`ky_major`]. GPU: `[K][cout4]` vec4
    /// packing ([`upload_packed`]).
    weight: Tensor,
    bias: Option<Tensor>,
    /// How the GPU weights are stored (always f32 on the CPU).
    pub storage: WeightStorage,
}

/// Output size of a convolution along one axis.
pub fn out_size(input: usize, k: usize, stride: usize, pad: usize) -> Option<usize> {
    (input + 2 * pad).checked_sub(k).map(|v| v / stride + 1)
}

impl Conv2d {
    /// `weight` is OIHW with `shape = [cout, cin, kh, kw]`; `bias` has `cout` values. Weights
    /// are stored as f32 (see [`Self::with_storage`]).
    pub fn new(
        device: &Device,
        weight: &[f32],
        shape: [usize; 4],
        bias: Option<&[f32]>,
        stride: usize,
        pad: usize,
    ) -> Result<Conv2d> {
        Self::with_storage(device, weight, shape, bias, stride, pad, WeightStorage::F32)
    }

    /// [`Self::new`] with the GPU weight storage given (ignored on the CPU).
    pub fn with_storage(
        device: &Device,
        weight: &[f32],
        shape: [usize; 4],
        bias: Option<&[f32]>,
        stride: usize,
        pad: usize,
        storage: WeightStorage,
    ) -> Result<Conv2d> {
        let [cout, cin, kh, kw] = shape;
        if weight.len() != cout * cin * kh * kw {
            bail!(
                "conv2d weight has {} values, shape {:?} needs {}",
                weight.len(),
                shape,
                cout * cin * kh * kw
            );
        }
        if let Some(b) = bias
            && b.len() != cout
        {
            bail!("conv2d bias has {} values, expected {cout}", b.len());
        }
        if stride == 0 {
            bail!("conv2d stride must be ≥ 1");
        }
        let (weight, bias, storage) = match device {
            Device::Cpu => (
                Tensor::cpu(
                    shape.to_vec(),
                    if (kh, kw, stride) == (3, 3, 1) {
                        ky_major(weight, cout, cin)
                    } else {
                        weight.to_vec()
                    },
                ),
                bias.map(|b| Tensor::cpu(vec![cout], b.to_vec())),
                WeightStorage::F32,
            ),
            Device::Gpu(_) => {
                let (w, b) = upload_packed(device, weight, bias, cout, cin * kh * kw, storage)?;
                (w, b, storage)
            }
        };
        Ok(Conv2d {
            cout,
            cin,
            kh,
            kw,
            stride,
            pad,
            weight,
            bias,
            storage,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let tile = match x.device() {
            Device::Gpu(ctx) => gpu_tile(&ctx),
            Device::Cpu => TILES[0],
        };
        self.forward_tile(x, tile)
    }

    /// [`Self::forward`] with a given GPU register tile (one of [`TILES`]; ignored on the CPU).
    pub fn forward_tile(&self, x: &Tensor, tile: (usize, usize)) -> Result<Tensor> {
        let (n, c, h, w) = x.nchw()?;
        if c != self.cin {
            bail!(
                "conv2d expects {} input channels, got {} (input shape {:?})",
                self.cin,
                c,
                x.shape()
            );
        }
        let (Some(oh), Some(ow)) = (
            out_size(h, self.kh, self.stride, self.pad),
            out_size(w, self.kw, self.stride, self.pad),
        ) else {
            bail!(
                "conv2d kernel {}x{} larger than padded input {}x{}",
                self.kh,
                self.kw,
                h,
                w
            );
        };
        match x.device() {
            Device::Cpu if (self.kh, self.kw, self.stride) == (3, 3, 1) => {
                let out = conv3x3_cpu(
                    x.host(),
                    [n, c, h, w],
                    self.weight.host(),
                    self.bias.as_ref().map(|b| b.host()),
                    self.cout,
                    self.pad,
                );
                Ok(Tensor::cpu(vec![n, self.cout, oh, ow], out))
            }
            Device::Cpu => {
                let out = conv2d_cpu(
                    x.host(),
                    [n, c, h, w],
                    self.weight.host(),
                    self.bias.as_ref().map(|b| b.host()),
                    [self.cout, self.kh, self.kw],
                    self.stride,
                    self.pad,
                );
                Ok(Tensor::cpu(vec![n, self.cout, oh, ow], out))
            }
            Device::Gpu(ctx) => {
                if !self.weight.device().is_gpu() {
                    bail!("conv2d: weights are on the CPU but the input is on the GPU");
                }
                let y = gpu_empty(&ctx, &[n, self.cout, oh, ow])?;
                let cout4 = packed_cout4(self.cout);
                let npix = oh * ow;
                let bias_buf = self
                    .bias
                    .as_ref()
                    .map(|b| b.buf())
                    .unwrap_or(self.weight.buf());
                let u = |v: usize| v as u32;
                let params = ConvParams {
                    n: u(n),
                    cin: u(c),
                    h: u(h),
                    w: u(w),
                    cout: u(self.cout),
                    oh: u(oh),
                    ow: u(ow),
                    cout4: u(cout4),
                    kh: u(self.kh),
                    kw: u(self.kw),
                    stride: u(self.stride),
                    pad: u(self.pad),
                    has_bias: self.bias.is_some() as u32,
                    ..Default::default()
                };
                let kind = ConvKernel::for_shape(self.kh, self.kw, self.stride, self.pad);
                let pixel_tiles = match kind {
                    // The row kernel's tiles do not cross output rows.
                    ConvKernel::Row3x3 => oh * ow.div_ceil(tile.1),
                    ConvKernel::General | ConvKernel::Gemm1x1 => npix.div_ceil(tile.1),
                };
                let groups = [
                    (cout4 / tile.0).div_ceil(8) as u32,
                    pixel_tiles.div_ceil(8) as u32,
                    n as u32,
                ];
                ctx.dispatch(
                    kind.file(tile, self.storage),
                    "main",
                    &[x.buf(), self.weight.buf(), bias_buf],
                    y.buf(),
                    &params,
                    groups,
                )?;
                Ok(y)
            }
        }
    }
}

/// The conv tile for this adapter (see [`TILES`]).
pub fn gpu_tile(ctx: &std::sync::Arc<crate::backend::GpuContext>) -> (usize, usize) {
    *ctx.conv_tile.get_or_init(|| choose_tile(ctx))
}

fn parse_tile(s: &str) -> Option<(usize, usize)> {
    let (g, p) = s.trim().split_once('x')?;
    let t = (g.parse().ok()?, p.parse().ok()?);
    TILES.contains(&t).then_some(t)
}

fn choose_tile(ctx: &std::sync::Arc<crate::backend::GpuContext>) -> (usize, usize) {
    if let Ok(v) = std::env::var("SPADEWORK_CONV_TILE") {
        match parse_tile(&v) {
            Some(t) => return t,
            None => {
                crate::note!("warning: SPADEWORK_CONV_TILE={v} is not one of {TILES:?}; autotuning")
            }
        }
    }
    let i = &ctx.info;
    // The key names the adapter, its driver and the kernels' source, so a driver or kernel
    // update re-tunes.
    let sources: String = TILES
        .iter()
        .flat_map(|&t| ConvKernel::ALL.map(|k| k.file(t, WeightStorage::F32)))
        .filter_map(|name| {
            crate::backend::gpu::KERNELS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, s)| *s)
        })
        .collect();
    let key = format!(
        "{} | {:?} | {} | {} | kernels {:016x}",
        i.name,
        i.backend,
        i.driver,
        i.driver_info,
        crate::backend::fnv1a(sources.as_bytes())
    );
    let path = crate::backend::cache_dir().join("conv_autotune.json");
    let mut cache: std::collections::BTreeMap<String, serde_json::Value> =
        std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
    if let Some(t) = cache
        .get(&key)
        .and_then(|v| v["tile"].as_str())
        .and_then(parse_tile)
    {
        return t;
    }
    match autotune(ctx) {
        Ok(times) => {
            let best = times
                .iter()
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|t| t.0)
                .unwrap_or(TILES[0]);
            let desc: Vec<String> = times
                .iter()
                .map(|((g, p), ms)| format!("{g}x{p} {ms:.1} ms"))
                .collect();
            crate::note!(
                "conv autotune on {}: {} -> {}x{} (cached in {})",
                i.name,
                desc.join(", "),
                best.0,
                best.1,
                path.display()
            );
            let ms: serde_json::Map<String, serde_json::Value> = times
                .iter()
                .map(|((g, p), ms)| (format!("{g}x{p}"), serde_json::json!(ms)))
                .collect();
            cache.insert(
                key,
                serde_json::json!({"tile": format!("{}x{}", best.0, best.1), "ms": ms}),
            );
            if let Ok(s) = serde_json::to_string_pretty(&cache) {
                // Best effort: a read-only cache dir only costs a re-tune next time.
                let _ = crate::io::write_atomic(&path, s.as_bytes());
            }
            best
        }
        Err(e) => {
            crate::note!(
                "warning: conv autotune failed ({e:#}); using {:?}",
                TILES[0]
            );
            TILES[0]
        }
    }
}

/// Times every tile on a 3×3, 128→128 conv at 32² (0.3 GFLOP): one run to compile, then the
/// best of two.
fn autotune(
    ctx: &std::sync::Arc<crate::backend::GpuContext>,
) -> Result<Vec<((usize, usize), f64)>> {
    let d = Device::Gpu(ctx.clone());
    let (c, hw) = (128, 32);
    let wt: Vec<f32> = (0..c * c * 9)
        .map(|i| ((i % 17) as f32 - 8.0) * 1e-3)
        .collect();
    let conv = Conv2d::new(&d, &wt, [c, c, 3, 3], None, 1, 1)?;
    let x = Tensor::from_vec(&d, &[1, c, hw, hw], vec![0.5; c * hw * hw])?;
    let mut out = Vec::new();
    for &t in &TILES {
        conv.forward_tile(&x, t)?;
        d.sync()?;
        let mut best = f64::INFINITY;
        for _ in 0..2 {
            let t0 = std::time::Instant::now();
            conv.forward_tile(&x, t)?;
            d.sync()?;
            best = best.min(t0.elapsed().as_secs_f64() * 1e3);
        }
        out.push((t, best));
    }
    Ok(out)
}

/// Floats of im2col scratch per band (32 MiB): bounds memory whatever the image size. Measured
/// (`spadework bench --backend cpu --only conv3x3 --runs 10`): 256→128 @128 runs at 206 GFLOP/s
/// with 32 MiB bands against 178 with 8 MiB bands (wider GEMMs); the other SPADE shapes within
/// noise.
const IM2COL_BAND_FLOATS: usize = 8 << 20;

/// The CPU twin: `x` is NCHW `[n, cin, h, w]`, `weight` OIHW `[cout, cin, kh, kw]`.
pub fn conv2d_cpu(
    x: &[f32],
    [n, cin, h, w]: [usize; 4],
    weight: &[f32],
    bias: Option<&[f32]>,
    [cout, kh, kw]: [usize; 3],
    stride: usize,
    pad: usize,
) -> Vec<f32> {
    if (kh, kw, stride) == (3, 3, 1) {
        return conv3x3_cpu(
            x,
            [n, cin, h, w],
            &ky_major(weight, cout, cin),
            bias,
            cout,
            pad,
        );
    }
    let oh = out_size(h, kh, stride, pad).expect("checked by caller");
    let ow = out_size(w, kw, stride, pad).expect("checked by caller");
    let npix = oh * ow;
    let k = cin * kh * kw;
    let threads = rayon::current_num_threads();
    let mut out = vec![0f32; n * cout * npix];
    for b in 0..n {
        let xb = &x[b * cin * h * w..(b + 1) * cin * h * w];
        let ob = &mut out[b * cout * npix..(b + 1) * cout * npix];
        if let Some(bias) = bias {
            ob.par_chunks_mut(npix)
                .zip(bias.par_iter())
                .for_each(|(row, &bv)| row.fill(bv));
        }
        let lhs = MatRef {
            data: weight,
            rs: k as isize,
            cs: 1,
        };
        if kh == 1 && kw == 1 && stride == 1 && pad == 0 {
            sgemm(
                cout,
                npix,
                k,
                ob,
                npix,
                bias.is_some(),
                lhs,
                MatRef {
                    data: xb,
                    rs: npix as isize,
                    cs: 1,
                },
                threads,
            );
            continue;
        }
        let rows_per_band = (IM2COL_BAND_FLOATS / (k * ow).max(1)).clamp(1, oh);
        let mut col = take_scratch(k * rows_per_band * ow);
        for oy0 in (0..oh).step_by(rows_per_band) {
            let rows = rows_per_band.min(oh - oy0);
            let bp = rows * ow;
            let col = &mut col[..k * bp];
            col.par_chunks_mut(bp).enumerate().for_each(|(kk, dst)| {
                let ci = kk / (kh * kw);
                let ky = (kk / kw) % kh;
                let kx = kk % kw;
                let plane = &xb[ci * h * w..(ci + 1) * h * w];
                for r in 0..rows {
                    let iy = ((oy0 + r) * stride + ky) as isize - pad as isize;
                    let d = &mut dst[r * ow..(r + 1) * ow];
                    if iy < 0 || iy >= h as isize {
                        d.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                    if stride == 1 {
                        // ix = ox + kx - pad: one contiguous run inside the image, zeros around.
                        let lo = pad.saturating_sub(kx).min(ow);
                        let hi = (w + pad).saturating_sub(kx).clamp(lo, ow);
                        if lo == hi {
                            d.fill(0.0);
                            continue;
                        }
                        d[..lo].fill(0.0);
                        d[lo..hi].copy_from_slice(&src[lo + kx - pad..hi + kx - pad]);
                        d[hi..].fill(0.0);
                        continue;
                    }
                    for (ox, dv) in d.iter_mut().enumerate() {
                        let ix = (ox * stride + kx) as isize - pad as isize;
                        *dv = if ix >= 0 && ix < w as isize {
                            src[ix as usize]
                        } else {
                            0.0
                        };
                    }
                }
            });
            let dst = &mut ob[oy0 * ow..];
            sgemm(
                cout,
                bp,
                k,
                dst,
                npix,
                bias.is_some(),
                lhs,
                MatRef {
                    data: col,
                    rs: bp as isize,
                    cs: 1,
                },
                threads,
            );
        }
        give_back_scratch(col);
    }
    out
}

/// 3×3 weights OIHW `[cout, cin, 3, 3]` → `[ky][cout][cin][kx]`, the layout of
/// [`conv3x3_cpu`]'s three GEMMs (for each ky, a `[cout, cin·3]` row-major matrix).
pub fn ky_major(weight: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let mut out = vec![0f32; weight.len()];
    for ky in 0..3 {
        for co in 0..cout {
            for ci in 0..cin {
                for kx in 0..3 {
                    out[((ky * cout + co) * cin + ci) * 3 + kx] =
                        weight[((co * cin + ci) * 3 + ky) * 3 + kx];
                }
            }
        }
    }
    out
}

/// 3×3 stride-1 convolution as three GEMMs, one per kernel row, over a 3× partial im2col instead
/// of the 9× one: with the input zero-padded to width `wp = w + 2·pad`, the band's rows are
/// copied three times, shifted by kx = 0, 1, 2 (`Q[(ci, kx)][r][c] = P[ci][r][c + kx]`); the
/// GEMM of kernel row ky then reads `Q` from row ky on with one uniform stride per (ci, kx), and
/// computes every output row on the padded width (its last 2 columns are discarded when the band
/// is copied out, with the bias added). `wky` is [`ky_major`]'s layout.
pub fn conv3x3_cpu(
    x: &[f32],
    [n, cin, h, w]: [usize; 4],
    wky: &[f32],
    bias: Option<&[f32]>,
    cout: usize,
    pad: usize,
) -> Vec<f32> {
    conv3x3_bands(x, [n, cin, h, w], wky, bias, cout, pad, IM2COL_BAND_FLOATS)
}

/// [`conv3x3_cpu`] with a scratch budget of `band_floats` (tests force many small bands).
fn conv3x3_bands(
    x: &[f32],
    [n, cin, h, w]: [usize; 4],
    wky: &[f32],
    bias: Option<&[f32]>,
    cout: usize,
    pad: usize,
    band_floats: usize,
) -> Vec<f32> {
    let wp = w + 2 * pad;
    let oh = out_size(h, 3, 1, pad).expect("checked by caller");
    let ow = wp - 2;
    let npix = oh * ow;
    let k = 3 * cin;
    let threads = rayon::current_num_threads();
    // Written below, band by band: every (image, channel, row, column) once.
    let mut out = crate::backend::cpu::unwritten(n * cout * npix);
    // Rows per band: the shifted copies (rows + 2 input rows) and the GEMM output of the band
    // within the im2col budget.
    let rows = (band_floats.saturating_sub(2 * k * wp) / ((k + cout) * wp).max(1)).clamp(1, oh);
    let mut scratch = take_scratch(k * (rows + 2) * wp + cout * rows * wp);
    for b in 0..n {
        let xb = &x[b * cin * h * w..(b + 1) * cin * h * w];
        let ob = &mut out[b * cout * npix..(b + 1) * cout * npix];
        for oy0 in (0..oh).step_by(rows) {
            let r = rows.min(oh - oy0);
            let plane = (r + 2) * wp;
            let (q, d) = scratch.split_at_mut(k * plane);
            let d = &mut d[..cout * r * wp];
            q.par_chunks_mut(plane).enumerate().for_each(|(kk, dst)| {
                let (ci, kx) = (kk / 3, kk % 3);
                let src = &xb[ci * h * w..(ci + 1) * h * w];
                for pr in 0..r + 2 {
                    let row = &mut dst[pr * wp..(pr + 1) * wp];
                    let iy = (oy0 + pr) as isize - pad as isize;
                    if iy < 0 || iy >= h as isize {
                        row.fill(0.0);
                        continue;
                    }
                    // row[c] = x[ci][iy][c + kx − pad] where that is inside the image.
                    let lo = pad.saturating_sub(kx).min(wp);
                    let hi = (w + pad).saturating_sub(kx).clamp(lo, wp);
                    let srow = &src[iy as usize * w..(iy as usize + 1) * w];
                    row[..lo].fill(0.0);
                    row[lo..hi].copy_from_slice(&srow[lo + kx - pad..hi + kx - pad]);
                    row[hi..].fill(0.0);
                }
            });
            for ky in 0..3 {
                sgemm(
                    cout,
                    r * wp,
                    k,
                    d,
                    r * wp,
                    ky > 0,
                    MatRef {
                        data: &wky[ky * cout * k..(ky + 1) * cout * k],
                        rs: k as isize,
                        cs: 1,
                    },
                    MatRef {
                        data: &q[ky * wp..],
                        rs: plane as isize,
                        cs: 1,
                    },
                    threads,
                );
            }
            let d = &*d;
            ob.par_chunks_mut(npix).enumerate().for_each(|(co, o)| {
                let bv = bias.map_or(0.0, |bs| bs[co]);
                for rr in 0..r {
                    let src = &d[(co * r + rr) * wp..][..ow];
                    let dst = &mut o[(oy0 + rr) * ow..][..ow];
                    for (o, s) in dst.iter_mut().zip(src) {
                        o.write(s + bv);
                    }
                }
            });
        }
    }
    give_back_scratch(scratch);
    // SAFETY: the bands cover rows 0..oh of every image and channel, each row's ow columns.
    unsafe { crate::backend::cpu::assume_written(out) }
}

thread_local! {
    /// The calling thread's im2col scratch, kept between convs: a fresh zeroed buffer per conv
    /// cost a memset and page faults on every call (ade20k forward 1813 → 1615 ms without them).
    static SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// A buffer of at least `len` floats (contents unspecified: im2col writes every element the
/// GEMM reads).
fn take_scratch(len: usize) -> Vec<f32> {
    let mut v = SCRATCH.take();
    if v.len() < len {
        v = vec![0f32; len];
    }
    v
}

fn give_back_scratch(v: Vec<f32>) {
    SCRATCH.set(v);
}

/// Direct (quadruple-loop, f64-accumulating) convolution: the slow, obviously-correct oracle the
/// tests use to check both `conv2d_cpu` and the WGSL kernel.
pub fn conv2d_naive(
    x: &[f32],
    [n, cin, h, w]: [usize; 4],
    weight: &[f32],
    bias: Option<&[f32]>,
    [cout, kh, kw]: [usize; 3],
    stride: usize,
    pad: usize,
) -> Vec<f32> {
    let oh = out_size(h, kh, stride, pad).unwrap();
    let ow = out_size(w, kw, stride, pad).unwrap();
    let mut out = vec![0f32; n * cout * oh * ow];
    for b in 0..n {
        for co in 0..cout {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = bias.map(|b| b[co] as f64).unwrap_or(0.0);
                    for ci in 0..cin {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * stride + ky) as isize - pad as isize;
                                let ix = (ox * stride + kx) as isize - pad as isize;
                                if iy >= 0 && iy < h as isize && ix >= 0 && ix < w as isize {
                                    s += x[((b * cin + ci) * h + iy as usize) * w + ix as usize]
                                        as f64
                                        * weight[((co * cin + ci) * kh + ky) * kw + kx] as f64;
                                }
                            }
                        }
                    }
                    out[((b * cout + co) * oh + oy) * ow + ox] = s as f32;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv3x3_bands_of_any_height_match_the_oracle() {
        let (n, cin, h, w, cout) = (2, 3, 11, 7, 5);
        let x: Vec<f32> = (0..n * cin * h * w)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let wt: Vec<f32> = (0..cout * cin * 9)
            .map(|i| ((i * 53 % 89) as f32 - 44.0) / 44.0)
            .collect();
        let b: Vec<f32> = (0..cout).map(|i| i as f32 * 0.1 - 0.2).collect();
        for pad in [0, 1, 2] {
            let want = conv2d_naive(&x, [n, cin, h, w], &wt, Some(&b), [cout, 3, 3], 1, pad);
            let wp = w + 2 * pad;
            // 1, 2 and 4 output rows per band, and everything in one band.
            for rows in [1, 2, 4, 100] {
                let band = (2 + rows) * 3 * cin * wp + rows * cout * wp;
                let got = conv3x3_bands(
                    &x,
                    [n, cin, h, w],
                    &ky_major(&wt, cout, cin),
                    Some(&b),
                    cout,
                    pad,
                    band,
                );
                let d = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(d < 1e-4, "pad {pad}, {rows} rows per band: max |Δ| {d}");
            }
        }
    }
}
