//! 2-D convolution (PyTorch `nn.Conv2d` semantics: OIHW weights, zero padding, optional bias).
//!
//! GPU: `kernels/conv2d.wgsl`, an implicit-GEMM kernel on weights packed `[K][Cout/4]` as vec4.
//! CPU twin: im2col over bands of output rows + `gemm` (a 1×1 stride-1 conv is a plain GEMM).
use super::gpu_empty;
use crate::backend::Device;
use crate::backend::cpu::{MatRef, sgemm};
use crate::tensor::Tensor;
use anyhow::{Result, bail};
use rayon::prelude::*;

/// A convolution layer with its weights already on the device, packed for its kernel.
pub struct Conv2d {
    pub cout: usize,
    pub cin: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    /// CPU: OIHW as uploaded. GPU: `[K][cout4]` vec4 packing.
    weight: Tensor,
    bias: Option<Tensor>,
}

/// Output size of a convolution along one axis.
pub fn out_size(input: usize, k: usize, stride: usize, pad: usize) -> Option<usize> {
    (input + 2 * pad).checked_sub(k).map(|v| v / stride + 1)
}

impl Conv2d {
    /// `weight` is OIHW with `shape = [cout, cin, kh, kw]`; `bias` has `cout` values.
    pub fn new(
        device: &Device,
        weight: &[f32],
        shape: [usize; 4],
        bias: Option<&[f32]>,
        stride: usize,
        pad: usize,
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
        let (weight, bias) = match device {
            Device::Cpu => (
                Tensor::cpu(shape.to_vec(), weight.to_vec()),
                bias.map(|b| Tensor::cpu(vec![cout], b.to_vec())),
            ),
            Device::Gpu(_) => {
                let cout4 = cout.div_ceil(16) * 4; // 16 channels per invocation
                let k = cin * kh * kw;
                let mut packed = vec![0f32; k * cout4 * 4];
                for co in 0..cout {
                    for kk in 0..k {
                        packed[kk * cout4 * 4 + co] = weight[co * k + kk];
                    }
                }
                let b = bias.map(|b| {
                    let mut v = b.to_vec();
                    v.resize(cout4 * 4, 0.0);
                    v
                });
                (
                    Tensor::from_vec(device, &[k, cout4 * 4], packed)?,
                    match b {
                        Some(v) => Some(Tensor::from_vec(device, &[v.len()], v)?),
                        None => None,
                    },
                )
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
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
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
                let cout4 = self.cout.div_ceil(16) * 4;
                let npix = oh * ow;
                let bias_buf = self
                    .bias
                    .as_ref()
                    .map(|b| b.buf())
                    .unwrap_or(self.weight.buf());
                let params = [
                    n,
                    c,
                    h,
                    w,
                    self.cout,
                    oh,
                    ow,
                    cout4,
                    self.kh,
                    self.kw,
                    self.stride,
                    self.pad,
                    self.bias.is_some() as usize,
                    0,
                    0,
                    0,
                ]
                .map(|v| v as u32);
                let groups = [
                    (cout4 / 4).div_ceil(8) as u32,
                    npix.div_ceil(4).div_ceil(8) as u32,
                    n as u32,
                ];
                ctx.dispatch(
                    "conv2d.wgsl",
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

/// Floats of im2col scratch per band (≈ 8 MiB): bounds memory whatever the image size.
const IM2COL_BAND_FLOATS: usize = 2 << 20;

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
        let mut col = vec![0f32; k * rows_per_band * ow];
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
    }
    out
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
