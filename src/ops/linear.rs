//! Fully connected layer, PyTorch `nn.Linear` (kernels/linear.wgsl).
use super::gpu_empty;
use crate::backend::Device;
use crate::backend::cpu::{MatRef, sgemm};
use crate::tensor::Tensor;
use anyhow::{Result, bail};

pub struct Linear {
    pub fin: usize,
    pub fout: usize,
    weight: Tensor, // [fout, fin]
    bias: Option<Tensor>,
}

impl Linear {
    pub fn new(
        device: &Device,
        weight: &[f32],
        [fout, fin]: [usize; 2],
        bias: Option<&[f32]>,
    ) -> Result<Linear> {
        if weight.len() != fout * fin {
            bail!(
                "linear weight has {} values, expected {fout}x{fin}",
                weight.len()
            );
        }
        let bias = match bias {
            Some(b) if b.len() != fout => {
                bail!("linear bias has {} values, expected {fout}", b.len())
            }
            Some(b) => Some(Tensor::from_vec(device, &[fout], b.to_vec())?),
            None => None,
        };
        Ok(Linear {
            fin,
            fout,
            weight: Tensor::from_vec(device, &[fout, fin], weight.to_vec())?,
            bias,
        })
    }

    /// x: [N, fin] → [N, fout].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, fin) = match x.shape() {
            [n, f] => (*n, *f),
            s => bail!("linear expects [N, {}], got {:?}", self.fin, s),
        };
        if fin != self.fin {
            bail!("linear expects {} input features, got {fin}", self.fin);
        }
        match x.device() {
            Device::Cpu => Ok(Tensor::cpu(
                vec![n, self.fout],
                linear_cpu(
                    x.host(),
                    n,
                    self.weight.host(),
                    self.bias.as_ref().map(|b| b.host()),
                    self.fout,
                    fin,
                ),
            )),
            Device::Gpu(ctx) => {
                let y = gpu_empty(&ctx, &[n, self.fout])?;
                let bias = self
                    .bias
                    .as_ref()
                    .map(|b| b.buf())
                    .unwrap_or(self.weight.buf());
                let params = [
                    n as u32,
                    fin as u32,
                    self.fout as u32,
                    self.bias.is_some() as u32,
                ];
                ctx.dispatch(
                    "linear.wgsl",
                    "main",
                    &[x.buf(), self.weight.buf(), bias],
                    y.buf(),
                    &params,
                    [self.fout.div_ceil(64) as u32, n as u32, 1],
                )?;
                Ok(y)
            }
        }
    }
}

/// CPU twin: y = x · Wᵀ + b.
pub fn linear_cpu(
    x: &[f32],
    n: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    fout: usize,
    fin: usize,
) -> Vec<f32> {
    let mut y = vec![0f32; n * fout];
    if let Some(b) = bias {
        for row in y.chunks_mut(fout) {
            row.copy_from_slice(b);
        }
    }
    // y[n×fout] = x[n×fin] · Wᵀ[fin×fout]; Wᵀ viewed through strides.
    sgemm(
        n,
        fout,
        fin,
        &mut y,
        fout,
        bias.is_some(),
        MatRef {
            data: x,
            rs: fin as isize,
            cs: 1,
        },
        MatRef {
            data: w,
            rs: 1,
            cs: fin as isize,
        },
        rayon::current_num_threads(),
    );
    y
}
