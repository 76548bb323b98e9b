//! One module per op family: shape rules, the CPU twin (`*_cpu` functions on host slices, also the
//! test oracle for the WGSL kernel), and the GPU dispatch of `kernels/<family>.wgsl`.
pub mod attention;
pub mod conv2d;
pub mod elementwise;
pub mod group_norm;
pub mod layout;
pub mod linear;
pub mod norm;
pub mod onehot_conv;
pub mod resize;
pub mod segmap;
pub mod spade;
pub mod window;

pub use attention::{AttnMask, attention};
pub use conv2d::Conv2d;
pub use elementwise::{
    BinaryOp, Unary, add, add_bcast, binary, geglu, leaky_relu, lincomb, mul, mul_bcast, relu,
    silu, tanh, unary,
};
pub use group_norm::GroupNorm;
pub use layout::{chunk, concat, narrow, nchw_to_tokens, pad2d, permute, tokens_to_nchw};
pub use linear::Linear;
pub use norm::{LayerNorm, ParamFreeNorm, instance_norm, layer_norm};
pub use onehot_conv::OneHotConv;
pub use resize::{NearestRule, resize_nearest, upsample2x};
pub use segmap::seg_input;
pub use spade::modulate;
pub use window::{PixRect, paste};

use crate::backend::gpu::GpuContext;
use crate::tensor::Tensor;
use anyhow::Result;
use std::sync::Arc;

/// A new GPU tensor of `shape` (contents undefined until a kernel writes it).
pub(crate) fn gpu_empty(ctx: &Arc<GpuContext>, shape: &[usize]) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    Ok(Tensor::gpu(shape.to_vec(), ctx.alloc((n * 4) as u64)?))
}
