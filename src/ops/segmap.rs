//! The generator's input: one-hot label channels plus the optional instance-edge channel
//! (kernels/segmap.wgsl; SPADE_SPEC §4.2).
use super::gpu_empty;
use crate::backend::{Device, gpu::groups_1d};
use crate::tensor::Tensor;
use anyhow::{Result, bail};

crate::kernel_params! {
    /// segmap.wgsl's `Params`.
    pub struct SegmapParams { pub h: u32, pub w: u32, pub classes: u32, pub edge_ch: u32 }
}

/// Builds `[1, channels, h, w]`: channels `0..classes` one-hot from `labels`, and when `instance`
/// is given, its edge map in the last channel (`channels == classes + 1`).
pub fn seg_input(
    device: &Device,
    labels: &[u32],
    instance: Option<&[u32]>,
    h: usize,
    w: usize,
    classes: usize,
    channels: usize,
) -> Result<Tensor> {
    if labels.len() != h * w {
        bail!("label map has {} pixels, expected {h}x{w}", labels.len());
    }
    let want = classes + instance.is_some() as usize;
    if channels != want {
        bail!(
            "seg_input: {channels} channels requested but {classes} classes + {} edge channel",
            instance.is_some() as usize
        );
    }
    if let Some((i, &l)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| l as usize >= classes)
    {
        bail!(
            "label id {l} at pixel (x={}, y={}) is not < the model's {classes} label channels",
            i % w,
            i / w
        );
    }
    if let Some(inst) = instance
        && inst.len() != h * w
    {
        bail!("instance map has {} pixels, expected {h}x{w}", inst.len());
    }
    match device {
        Device::Cpu => {
            let mut out = one_hot_cpu(labels, classes);
            if let Some(inst) = instance {
                out.extend(edges_cpu(inst, h, w));
            }
            Ok(Tensor::cpu(vec![1, channels, h, w], out))
        }
        Device::Gpu(ctx) => {
            let out = gpu_empty(ctx, &[1, channels, h, w])?;
            let ids = ctx.upload_bytes(bytemuck::cast_slice(labels))?;
            let params = SegmapParams {
                h: h as u32,
                w: w as u32,
                classes: classes as u32,
                edge_ch: classes as u32,
            };
            ctx.dispatch(
                "segmap.wgsl",
                "one_hot",
                &[ids.buffer()],
                out.buf(),
                &params,
                groups_1d(h * w * classes, 256),
            )?;
            if let Some(inst) = instance {
                let ids = ctx.upload_bytes(bytemuck::cast_slice(inst))?;
                ctx.dispatch(
                    "segmap.wgsl",
                    "edges",
                    &[ids.buffer()],
                    out.buf(),
                    &params,
                    groups_1d(h * w, 256),
                )?;
            }
            Ok(out)
        }
    }
}

/// CPU twin of `one_hot`: `[classes, h*w]`.
pub fn one_hot_cpu(labels: &[u32], classes: usize) -> Vec<f32> {
    let hw = labels.len();
    let mut out = vec![0f32; classes * hw];
    for (i, &l) in labels.iter().enumerate() {
        out[l as usize * hw + i] = 1.0;
    }
    out
}

/// CPU twin of `edges`: 1 where any in-image 4-neighbour has a different instance id.
pub fn edges_cpu(inst: &[u32], h: usize, w: usize) -> Vec<f32> {
    let mut e = vec![0f32; h * w];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if x + 1 < w && inst[i] != inst[i + 1] {
                e[i] = 1.0;
                e[i + 1] = 1.0;
            }
            if y + 1 < h && inst[i] != inst[i + w] {
                e[i] = 1.0;
                e[i + w] = 1.0;
            }
        }
    }
    e
}
