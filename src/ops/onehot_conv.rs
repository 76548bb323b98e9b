//! Convolution of a one-hot label map (+ optional edge channel) as a gather
//! (kernels/onehot_conv.wgsl; SPADE_SPEC §6). SPADE's `fc` and every `mlp_shared` conv read the
//! one-hot map; a gather adds one weight column per tap instead of semantic_nc multiply-adds.
//!
//! The label map lives in an f32 tensor `[1, 2, H, W]`: channel 0 holds the label *channel index*
//! (small exact integers), channel 1 the instance-edge bit (zeros when the model has no edges).
use super::gpu_empty;
use crate::backend::Device;
use crate::tensor::Tensor;
use anyhow::{Result, bail};
use rayon::prelude::*;

crate::kernel_params! {
    /// onehot_conv.wgsl's `Params`.
    pub struct OneHotConvParams {
        pub h: u32, pub w: u32, pub channels: u32, pub cout: u32,
        pub cout4: u32, pub kh: u32, pub kw: u32, pub pad: u32,
        pub has_edge: u32, pub edge_ch: u32, pub relu: u32, pub _p1: u32,
    }
}

pub struct OneHotConv {
    pub cout: usize,
    /// Input channels of the dense equivalent: one-hot classes (+1 edge channel if `has_edge`).
    pub channels: usize,
    pub has_edge: bool,
    pub kh: usize,
    pub kw: usize,
    pub pad: usize,
    /// Apply ReLU to the output (fused).
    pub relu: bool,
    /// `[tap][channel][cout]` (GPU: cout padded to a multiple of 4).
    weight: Tensor,
    bias: Tensor,
}

impl OneHotConv {
    /// `weight` OIHW `[cout, channels, kh, kw]` as for the dense conv; the last input channel is the
    /// edge channel when `has_edge`.
    pub fn new(
        device: &Device,
        weight: &[f32],
        shape: [usize; 4],
        bias: &[f32],
        has_edge: bool,
        pad: usize,
        relu: bool,
    ) -> Result<OneHotConv> {
        let [cout, channels, kh, kw] = shape;
        if weight.len() != cout * channels * kh * kw || bias.len() != cout {
            bail!("onehot_conv: weight/bias sizes do not match shape {shape:?}");
        }
        let cpad = if device.is_gpu() {
            cout.div_ceil(4) * 4
        } else {
            cout
        };
        let taps = kh * kw;
        let mut packed = vec![0f32; taps * channels * cpad];
        for co in 0..cout {
            for ci in 0..channels {
                for t in 0..taps {
                    packed[(t * channels + ci) * cpad + co] =
                        weight[(co * channels + ci) * taps + t];
                }
            }
        }
        let mut b = bias.to_vec();
        b.resize(cpad, 0.0);
        Ok(OneHotConv {
            cout,
            channels,
            has_edge,
            kh,
            kw,
            pad,
            relu,
            weight: Tensor::from_vec(device, &[packed.len()], packed)?,
            bias: Tensor::from_vec(device, &[cpad], b)?,
        })
    }

    /// seg: `[1, 2, H, W]` (label channel index, edge bit) → `[1, cout, H, W]`.
    pub fn forward(&self, seg: &Tensor) -> Result<Tensor> {
        let (n, two, h, w) = seg.nchw()?;
        if n != 1 || two != 2 {
            bail!(
                "onehot_conv expects a [1, 2, H, W] label map, got {:?}",
                seg.shape()
            );
        }
        match seg.device() {
            Device::Cpu => Ok(Tensor::cpu(
                vec![1, self.cout, h, w],
                self.forward_cpu(seg.host(), h, w),
            )),
            Device::Gpu(ctx) => {
                let y = gpu_empty(&ctx, &[1, self.cout, h, w])?;
                let cout4 = self.cout.div_ceil(4);
                let u = |v: usize| v as u32;
                let params = OneHotConvParams {
                    h: u(h),
                    w: u(w),
                    channels: u(self.channels),
                    cout: u(self.cout),
                    cout4: u(cout4),
                    kh: u(self.kh),
                    kw: u(self.kw),
                    pad: u(self.pad),
                    has_edge: self.has_edge as u32,
                    edge_ch: u(self.channels - 1),
                    relu: self.relu as u32,
                    _p1: 0,
                };
                let py = (h * w).div_ceil(64);
                let groups = [
                    cout4.div_ceil(4) as u32,
                    py.min(65535) as u32,
                    py.div_ceil(65535) as u32,
                ];
                ctx.dispatch(
                    "onehot_conv.wgsl",
                    "main",
                    &[seg.buf(), self.weight.buf(), self.bias.buf()],
                    y.buf(),
                    &params,
                    groups,
                )?;
                Ok(y)
            }
        }
    }

    /// CPU twin: per output row, accumulate weight columns into a `[W][cout]` buffer, then
    /// transpose into NCHW.
    fn forward_cpu(&self, seg: &[f32], h: usize, w: usize) -> Vec<f32> {
        let (cout, ch) = (self.cout, self.channels);
        let wt = self.weight.host();
        let bias = self.bias.host();
        let hw = h * w;
        let (ids, edges) = seg.split_at(hw);
        let rows: Vec<Vec<f32>> = (0..h)
            .into_par_iter()
            .map(|oy| {
                let mut acc = vec![0f32; w * cout];
                for a in acc.chunks_mut(cout) {
                    a.copy_from_slice(bias);
                }
                for ky in 0..self.kh {
                    let iy = oy as isize + ky as isize - self.pad as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    for kx in 0..self.kw {
                        let tap = ky * self.kw + kx;
                        for (ox, a) in acc.chunks_mut(cout).enumerate() {
                            let ix = ox as isize + kx as isize - self.pad as isize;
                            if ix < 0 || ix >= w as isize {
                                continue;
                            }
                            let src = iy as usize * w + ix as usize;
                            let l = (ids[src] as usize).min(ch - 1);
                            let col = &wt[(tap * ch + l) * cout..][..cout];
                            a.iter_mut().zip(col).for_each(|(x, y)| *x += y);
                            if self.has_edge && edges[src] > 0.5 {
                                let col = &wt[(tap * ch + ch - 1) * cout..][..cout];
                                a.iter_mut().zip(col).for_each(|(x, y)| *x += y);
                            }
                        }
                    }
                }
                if self.relu {
                    acc.iter_mut().for_each(|v| *v = v.max(0.0));
                }
                acc
            })
            .collect();
        let mut out = crate::backend::cpu::unwritten(cout * hw);
        out.par_chunks_mut(hw).enumerate().for_each(|(co, plane)| {
            for (oy, r) in rows.iter().enumerate() {
                for ox in 0..w {
                    plane[oy * w + ox].write(r[ox * cout + co]);
                }
            }
        });
        // SAFETY: `rows` has the h rows of the image, so each plane's h·w elements are written.
        unsafe { crate::backend::cpu::assume_written(out) }
    }
}

/// The `[1, 2, H, W]` label-map tensor: label channel indices and edge bits.
pub fn label_map(
    device: &Device,
    labels: &[u32],
    edges: Option<&[f32]>,
    h: usize,
    w: usize,
) -> Result<Tensor> {
    if labels.len() != h * w || edges.is_some_and(|e| e.len() != h * w) {
        bail!("label map size does not match {h}x{w}");
    }
    let mut v: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
    match edges {
        Some(e) => v.extend_from_slice(e),
        None => v.resize(2 * h * w, 0.0),
    }
    Tensor::from_vec(device, &[1, 2, h, w], v)
}
