//! The γ/β cache of the paint loop. γ/β depend on the map only, not on z or the trunk: the same
//! map with a new style reuses them, and a changed map recomputes only the window its changes
//! reach (two k×k convs: 2·pad pixels around the changed box), SIGE-style, and pastes it into the
//! cached tensor in place.
use crate::ops;
use crate::tensor::Tensor;
use anyhow::Result;
use std::sync::{Arc, Mutex};

/// γ/β depend on the map only, not on z or the trunk: the same map with a new style reuses them,
/// and a changed map recomputes only the window its changes reach (two k×k convs: 2·pad pixels
/// around the changed box), SIGE-style, and pastes it into the cached tensor in place.
pub(super) struct GammaBetaCache {
    /// The [2, h, w] label map (channel index, edge bit) the values belong to.
    seg: Vec<f32>,
    h: usize,
    w: usize,
    gb: Arc<Tensor>,
}

/// A pixel box [y0, y1) × [x0, x1).
#[derive(Clone, Copy, Debug, PartialEq)]
struct PixBox {
    y0: usize,
    y1: usize,
    x0: usize,
    x1: usize,
}

impl PixBox {
    fn grow(self, d: usize, h: usize, w: usize) -> PixBox {
        PixBox {
            y0: self.y0.saturating_sub(d),
            y1: (self.y1 + d).min(h),
            x0: self.x0.saturating_sub(d),
            x1: (self.x1 + d).min(w),
        }
    }
    fn area(&self) -> usize {
        (self.y1 - self.y0) * (self.x1 - self.x0)
    }
}

/// The bounding box of the pixels where two [c, h, w] maps differ.
fn changed_box(a: &[f32], b: &[f32], c: usize, h: usize, w: usize) -> Option<PixBox> {
    let mut bx: Option<PixBox> = None;
    for ch in 0..c {
        for y in 0..h {
            let (ra, rb) = (&a[(ch * h + y) * w..][..w], &b[(ch * h + y) * w..][..w]);
            if ra == rb {
                continue;
            }
            let x0 = (0..w).find(|&x| ra[x] != rb[x]).unwrap();
            let x1 = (0..w).rfind(|&x| ra[x] != rb[x]).unwrap() + 1;
            bx = Some(match bx {
                None => PixBox {
                    y0: y,
                    y1: y + 1,
                    x0,
                    x1,
                },
                Some(p) => PixBox {
                    y0: p.y0.min(y),
                    y1: p.y1.max(y + 1),
                    x0: p.x0.min(x0),
                    x1: p.x1.max(x1),
                },
            });
        }
    }
    bx
}

/// Copies box `b` of a [c, h, w] array.
fn crop(v: &[f32], c: usize, h: usize, w: usize, b: PixBox) -> Vec<f32> {
    let mut out = Vec::with_capacity(c * b.area());
    for ch in 0..c {
        for y in b.y0..b.y1 {
            out.extend_from_slice(&v[(ch * h + y) * w + b.x0..(ch * h + y) * w + b.x1]);
        }
    }
    out
}

/// γ/β of the [1, c, h, w] label map `seg` (whose host copy is `host`) for a SPADE whose two
/// convs pad by `pad`: from the cache in `slot` where the map is unchanged, recomputed by
/// `gamma_beta` (on the whole map or a window of it) where it changed.
pub(super) fn gamma_beta_cached(
    slot: &Mutex<Option<GammaBetaCache>>,
    pad: usize,
    seg: &Tensor,
    host: &[f32],
    gamma_beta: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Arc<Tensor>> {
    let (_, c, h, w) = seg.nchw()?;
    let mut slot = slot.lock().unwrap();
    if let Some(cache) = slot.as_mut()
        && (cache.h, cache.w) == (h, w)
    {
        let Some(changed) = changed_box(&cache.seg, host, c, h, w) else {
            return Ok(cache.gb.clone());
        };
        // The outputs a change reaches, and the input window that computes them exactly: on
        // sides inside the map the window's zero padding only spoils the 2·pad rim we drop.
        let out = changed.grow(2 * pad, h, w);
        let win = out.grow(2 * pad, h, w);
        if win.area() < h * w
            && let Some(gb) = Arc::get_mut(&mut cache.gb)
        {
            let (wh, ww) = (win.y1 - win.y0, win.x1 - win.x0);
            let part = Tensor::from_vec(&seg.device(), &[1, c, wh, ww], crop(host, c, h, w, win))?;
            let part = gamma_beta(&part)?;
            let at = ops::PixRect {
                y: out.y0,
                x: out.x0,
                h: out.y1 - out.y0,
                w: out.x1 - out.x0,
            };
            ops::paste(gb, at, &part, (out.y0 - win.y0, out.x0 - win.x0))?;
            cache.seg = host.to_vec();
            return Ok(cache.gb.clone());
        }
    }
    let gb = Arc::new(gamma_beta(seg)?);
    *slot = Some(GammaBetaCache {
        seg: host.to_vec(),
        h,
        w,
        gb: gb.clone(),
    });
    Ok(gb)
}
