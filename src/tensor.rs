//! An f32 tensor (row-major, NCHW for images) that lives on one [`Device`].
use crate::backend::Device;
use crate::backend::gpu::GpuBuf;
use anyhow::{Result, bail};

pub struct Tensor {
    shape: Vec<usize>,
    pub(crate) data: Data,
}

pub(crate) enum Data {
    Cpu(Vec<f32>),
    Gpu(GpuBuf),
}

impl Tensor {
    /// A tensor on `device` holding `data` (length must equal the shape's product).
    pub fn from_vec(device: &Device, shape: &[usize], data: Vec<f32>) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            bail!(
                "tensor data has {} values but shape {:?} needs {}",
                data.len(),
                shape,
                n
            );
        }
        Ok(match device {
            Device::Cpu => Tensor {
                shape: shape.to_vec(),
                data: Data::Cpu(data),
            },
            Device::Gpu(ctx) => Tensor {
                shape: shape.to_vec(),
                data: Data::Gpu(ctx.upload(&data)?),
            },
        })
    }

    pub(crate) fn cpu(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor {
            shape,
            data: Data::Cpu(data),
        }
    }

    pub(crate) fn gpu(shape: Vec<usize>, buf: GpuBuf) -> Tensor {
        Tensor {
            shape,
            data: Data::Gpu(buf),
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// (N, C, H, W) of a 4-D tensor.
    pub fn nchw(&self) -> Result<(usize, usize, usize, usize)> {
        match self.shape[..] {
            [n, c, h, w] => Ok((n, c, h, w)),
            _ => bail!("expected a 4-D NCHW tensor, got shape {:?}", self.shape),
        }
    }

    pub fn device(&self) -> Device {
        match &self.data {
            Data::Cpu(_) => Device::Cpu,
            Data::Gpu(b) => Device::Gpu(b.ctx().clone()),
        }
    }

    /// Copies the values to the host (waits for the GPU).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        match &self.data {
            Data::Cpu(v) => Ok(v.clone()),
            Data::Gpu(b) => b.ctx().download(b, self.numel()),
        }
    }

    /// Same data, new shape with the same element count (free).
    pub fn reshape(self, shape: &[usize]) -> Result<Tensor> {
        if shape.iter().product::<usize>() != self.numel() {
            bail!("cannot reshape {:?} to {:?}", self.shape, shape);
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            data: self.data,
        })
    }

    pub(crate) fn host(&self) -> &[f32] {
        match &self.data {
            Data::Cpu(v) => v,
            Data::Gpu(_) => panic!("host() on a GPU tensor"),
        }
    }

    pub(crate) fn host_mut(&mut self) -> &mut [f32] {
        match &mut self.data {
            Data::Cpu(v) => v,
            Data::Gpu(_) => panic!("host_mut() on a GPU tensor"),
        }
    }

    pub(crate) fn buf(&self) -> &wgpu::Buffer {
        match &self.data {
            Data::Gpu(b) => b.buffer(),
            Data::Cpu(_) => panic!("buf() on a CPU tensor"),
        }
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dev = match self.data {
            Data::Cpu(_) => "cpu",
            Data::Gpu(_) => "gpu",
        };
        write!(f, "Tensor({:?}, {dev})", self.shape)
    }
}

/// Checks that all tensors live on the same kind of device; returns it.
pub(crate) fn same_device(ts: &[&Tensor]) -> Result<Device> {
    let d = ts[0].device();
    for t in ts {
        if t.device().is_gpu() != d.is_gpu() {
            bail!("tensors on different devices: {:?}", ts);
        }
    }
    Ok(d)
}

/// The index and value of the first NaN or infinity in `v`, if any.
pub fn first_non_finite(v: &[f32]) -> Option<(usize, f32)> {
    v.iter().position(|x| !x.is_finite()).map(|i| (i, v[i]))
}

/// On the CPU backend, fails when `x` holds a NaN or an infinity, naming `layer` as the first
/// layer that produced one (models call it after each block: a scan of the host data, cheap
/// beside the block). GPU tensors pass unchecked; their image is checked at the end.
pub fn check_layer(x: Tensor, layer: &str) -> anyhow::Result<Tensor> {
    if let Data::Cpu(v) = &x.data
        && let Some((i, bad)) = first_non_finite(v)
    {
        anyhow::bail!(
            "layer {layer} is the first to produce a non-finite value ({bad} at flat index {i} of \
             its output {:?}); the inputs or the weights of that layer produce NaN or infinity",
            x.shape()
        );
    }
    Ok(x)
}

/// Fails when `v` holds a NaN or an infinity, naming `what`, how many and the first one's index
/// (a non-finite image would otherwise be written as a silent black one).
pub fn check_finite(v: &[f32], what: &str) -> anyhow::Result<()> {
    if let Some((i, x)) = first_non_finite(v) {
        let n = v.iter().filter(|x| !x.is_finite()).count();
        anyhow::bail!(
            "{what} has {n} non-finite values (the first, {x}, at index {i} of {}); the inputs or \
             the weights produce NaN or infinity",
            v.len()
        );
    }
    Ok(())
}
