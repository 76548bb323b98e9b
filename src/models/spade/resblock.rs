//! SPADEResnetBlock(fin, fout) (SPADE_SPEC §4): two SPADE → leaky-ReLU → 3×3 conv steps, and a
//! learned shortcut (SPADE → 1×1 conv without bias) when fin != fout. Keys under the block (e.g.
//! `up_0`): `conv_0`, `conv_1`, `conv_s`, `norm_0`, `norm_1`, `norm_s`.
use super::config::SpadeConfig;
use super::input::Level;
use super::norm::Spade;
use crate::ops::{self, Conv2d};
use crate::tensor::Tensor;
use crate::weights::vars::Vars;
use anyhow::Result;

/// Negative slope of the block and final activations.
pub const LRELU: f32 = 0.2;

/// SPADEResnetBlock(fin, fout): learned shortcut iff fin != fout.
pub struct SpadeResnetBlock {
    conv_0: Conv2d,
    conv_1: Conv2d,
    conv_s: Option<Conv2d>,
    pub(super) norm_0: Spade,
    pub(super) norm_1: Spade,
    pub(super) norm_s: Option<Spade>,
}

impl SpadeResnetBlock {
    /// `v`: the weights under the block's key (e.g. `up_0`).
    pub(super) fn load(v: &Vars, fin: usize, fout: usize, cfg: &SpadeConfig) -> Result<Self> {
        let fmid = fin.min(fout);
        let learned = fin != fout;
        Ok(SpadeResnetBlock {
            conv_0: v.conv2d("conv_0", [fmid, fin, 3, 3], true, 1, 1)?,
            conv_1: v.conv2d("conv_1", [fout, fmid, 3, 3], true, 1, 1)?,
            conv_s: if learned {
                Some(v.conv2d("conv_s", [fout, fin, 1, 1], false, 1, 0)?)
            } else {
                None
            },
            norm_0: Spade::load(&v.pp("norm_0"), fin, cfg)?,
            norm_1: Spade::load(&v.pp("norm_1"), fmid, cfg)?,
            norm_s: if learned {
                Some(Spade::load(&v.pp("norm_s"), fin, cfg)?)
            } else {
                None
            },
        })
    }

    pub(super) fn forward(&self, x: &Tensor, seg: Level) -> Result<Tensor> {
        // The shortcut has no activation; the main branch applies lrelu after each SPADE.
        let x_s = match (&self.conv_s, &self.norm_s) {
            (Some(conv_s), Some(norm_s)) => Some(conv_s.forward(&norm_s.forward(x, seg, None)?)?),
            _ => None,
        };
        let dx = self
            .conv_0
            .forward(&self.norm_0.forward(x, seg, Some(LRELU))?)?;
        let dx = self
            .conv_1
            .forward(&self.norm_1.forward(&dx, seg, Some(LRELU))?)?;
        ops::add(x_s.as_ref().unwrap_or(x), &dx)
    }
}
