//! Pasting a box of one tensor into another in place (kernels/window.wgsl): the write-back of a
//! window recomputed around a paint stroke (SIGE-style sparse recompute of SPADE's γ/β).
use crate::backend::{Device, gpu::groups_1d};
use crate::tensor::Tensor;
use anyhow::{Result, bail};

crate::kernel_params! {
    /// window.wgsl's `Params`: a `bh`×`bw` box of `planes` planes from the `sh`×`sw` source at
    /// (`sy0`, `sx0`) to the `dh`×`dw` destination at (`dy0`, `dx0`).
    pub struct WindowParams {
        pub planes: u32, pub bh: u32, pub bw: u32, pub _p0: u32,
        pub sh: u32, pub sw: u32, pub sy0: u32, pub sx0: u32,
        pub dh: u32, pub dw: u32, pub dy0: u32, pub dx0: u32,
    }
}

/// A box of `h` × `w` pixels with its top-left corner at (`y`, `x`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixRect {
    pub y: usize,
    pub x: usize,
    pub h: usize,
    pub w: usize,
}

/// Copies the `h` × `w` box at (`src_y`, `src_x`) of every plane of `src` [N, C, sh, sw] to
/// `dst` [N, C, dh, dw] at `at` (`at.h`, `at.w` give the box size); the rest of `dst` is kept.
pub fn paste(
    dst: &mut Tensor,
    at: PixRect,
    src: &Tensor,
    (src_y, src_x): (usize, usize),
) -> Result<()> {
    let (n, c, dh, dw) = dst.nchw()?;
    let (sn, sc, sh, sw) = src.nchw()?;
    if (n, c) != (sn, sc) {
        bail!(
            "paste: source {:?} and destination {:?} differ in batch or channels",
            src.shape(),
            dst.shape()
        );
    }
    if at.y + at.h > dh || at.x + at.w > dw || src_y + at.h > sh || src_x + at.w > sw {
        bail!(
            "paste: box {at:?} from ({src_y}, {src_x}) does not fit source {sh}x{sw} and \
             destination {dh}x{dw}"
        );
    }
    if at.h == 0 || at.w == 0 {
        return Ok(());
    }
    let planes = n * c;
    match (dst.device(), src.device()) {
        (Device::Cpu, Device::Cpu) => {
            paste_cpu(
                dst.host_mut(),
                [planes, dh, dw],
                at,
                src.host(),
                [sh, sw],
                (src_y, src_x),
            );
            Ok(())
        }
        (Device::Gpu(ctx), Device::Gpu(_)) => {
            let u = |v: usize| v as u32;
            let params = WindowParams {
                planes: u(planes),
                bh: u(at.h),
                bw: u(at.w),
                _p0: 0,
                sh: u(sh),
                sw: u(sw),
                sy0: u(src_y),
                sx0: u(src_x),
                dh: u(dh),
                dw: u(dw),
                dy0: u(at.y),
                dx0: u(at.x),
            };
            ctx.dispatch(
                "window.wgsl",
                "paste",
                &[src.buf()],
                dst.buf(),
                &params,
                groups_1d(planes * at.h * at.w, 256),
            )
        }
        _ => bail!("paste: source and destination are on different devices"),
    }
}

/// The CPU twin of [`paste`] on host slices: `dst` [planes, dh, dw], `src` [planes, sh, sw].
pub fn paste_cpu(
    dst: &mut [f32],
    [planes, dh, dw]: [usize; 3],
    at: PixRect,
    src: &[f32],
    [sh, sw]: [usize; 2],
    (src_y, src_x): (usize, usize),
) {
    for p in 0..planes {
        for r in 0..at.h {
            let s = (p * sh + src_y + r) * sw + src_x;
            let d = (p * dh + at.y + r) * dw + at.x;
            dst[d..d + at.w].copy_from_slice(&src[s..s + at.w]);
        }
    }
}
