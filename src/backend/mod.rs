//! The two devices. Model code is written once against [`Tensor`](crate::Tensor) and the ops in
//! [`crate::ops`]; each op runs its WGSL kernel on [`Device::Gpu`] or its Rust twin on [`Device::Cpu`].
pub mod cpu;
pub mod gpu;
pub mod kernel_params;

use anyhow::{Result, bail};
use std::sync::Arc;

pub use gpu::{GpuContext, WeightStorage};

/// Where tensors live and ops run.
#[derive(Clone)]
pub enum Device {
    /// Pure Rust, multithreaded (rayon), GEMM by the `gemm` crate.
    Cpu,
    /// wgpu on one adapter, running the kernels in `kernels/`.
    Gpu(Arc<GpuContext>),
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}

/// `--backend auto|gpu|cpu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// A hardware GPU if there is one, else the CPU backend.
    Auto,
    /// Any wgpu adapter (hardware or software, e.g. lavapipe); fails if none starts.
    Gpu,
    /// The CPU backend.
    Cpu,
}

impl Device {
    /// Picks a device as `--backend`/`--adapter` ask. `auto` never picks a software adapter.
    pub fn select(choice: BackendChoice, adapter: Option<&str>) -> Result<Device> {
        match choice {
            BackendChoice::Cpu => Ok(Device::Cpu),
            BackendChoice::Gpu => Ok(Device::Gpu(Arc::new(GpuContext::new(adapter, false)?))),
            BackendChoice::Auto => match GpuContext::new(adapter, true) {
                Ok(ctx) => Ok(Device::Gpu(Arc::new(ctx))),
                Err(e) => {
                    if adapter.is_some() {
                        bail!("{e:#}");
                    }
                    Ok(Device::Cpu)
                }
            },
        }
    }

    /// One line for stderr: which backend and adapter run the work.
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu => format!(
                "cpu backend ({} threads, gemm {})",
                rayon::current_num_threads(),
                cpu::simd_level()
            ),
            Device::Gpu(ctx) => format!("gpu backend: {}", ctx.describe()),
        }
    }

    pub fn is_gpu(&self) -> bool {
        matches!(self, Device::Gpu(_))
    }

    /// Waits until all queued work is done (no-op on the CPU).
    pub fn sync(&self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::Gpu(ctx) => ctx.sync(),
        }
    }
}

/// Per-user cache directory (autotune results): `$SPADEWORK_CACHE_DIR`, else the platform's.
pub fn cache_dir() -> std::path::PathBuf {
    match std::env::var_os("SPADEWORK_CACHE_DIR") {
        Some(d) => d.into(),
        None => crate::io::user_dir(crate::io::UserDir::Cache),
    }
}

/// FNV-1a, for cache keys.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}
