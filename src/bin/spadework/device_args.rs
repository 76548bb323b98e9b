//! The device flags every subcommand that runs a model takes.
use anyhow::Result;
use spadework::backend::{BackendChoice, Device, WeightStorage};

#[derive(clap::Args)]
pub struct DeviceArgs {
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Adapter name substring (e.g. "llvmpipe", "nvidia").
    #[arg(long)]
    pub adapter: Option<String>,
    /// GPU weight storage: f16 halves weight memory and runs the convs faster (each weight
    /// rounded to f16, compute stays f32); f32 is exact.
    #[arg(long, value_enum, default_value_t = WeightStorage::F32)]
    pub gpu_weights: WeightStorage,
}

impl DeviceArgs {
    /// The device the flags choose.
    pub fn select(&self) -> Result<Device> {
        Device::select(self.backend, self.adapter.as_deref())
    }
}
