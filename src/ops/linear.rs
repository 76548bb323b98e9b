//! Fully connected layer, PyTorch `nn.Linear` (kernels/linear.wgsl).
use super::gpu_empty;
use crate::backend::Device;
use crate::backend::cpu::{MatRef, sgemm};
use crate::tensor::Tensor;
use anyhow::{Result, bail};

pub struct Linear {
    pub fin: usize,
    pub fout: usize,
    /// CPU: transposed, [fin, fout]. GPU: packed [fin][fout4] as vec4 (`conv2d::upload_packed`).
    weight: Tensor,
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
        if let Some(b) = bias
            && b.len() != fout
        {
            bail!("linear bias has {} values, expected {fout}", b.len())
        }
        let (weight, bias) = match device {
            // Transposed, [fin, fout]: the GEMM then reads it in place instead of packing all
            // the weights on every call (27 % of the text encoder's time in `perf`).
            Device::Cpu => (
                Tensor::cpu(vec![fin, fout], transpose(weight, fout, fin)),
                bias.map(|b| Tensor::cpu(vec![fout], b.to_vec())),
            ),
            // The conv kernels' layout: the kernel's tile is 4 vec4s of features, as theirs.
            Device::Gpu(_) => super::conv2d::upload_packed(
                device,
                weight,
                bias,
                fout,
                fin,
                crate::backend::WeightStorage::F32,
            )?,
        };
        Ok(Linear {
            fin,
            fout,
            weight,
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
                    super::conv2d::packed_cout4(self.fout) as u32,
                    0,
                    0,
                    0,
                ];
                ctx.dispatch(
                    "linear.wgsl",
                    "main",
                    &[x.buf(), self.weight.buf(), bias],
                    y.buf(),
                    &params,
                    [
                        (super::conv2d::packed_cout4(self.fout) / 4).div_ceil(8) as u32,
                        n.div_ceil(4).div_ceil(8) as u32,
                        1,
                    ],
                )?;
                Ok(y)
            }
        }
    }
}

/// `[rows, cols]` row-major → `[cols, rows]`.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

/// The CPU twin: `y[n, fout] = x[n, fin] · wt + bias`, with the weight transposed (`wt` is
/// `[fin, fout]`, i.e. PyTorch's `weight.T`).
pub fn linear_cpu(
    x: &[f32],
    n: usize,
    wt: &[f32],
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
            data: wt,
            rs: fout as isize,
            cs: 1,
        },
        rayon::current_num_threads(),
    );
    y
}
