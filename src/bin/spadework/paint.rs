//! `spadework paint`: the painting window.
use crate::device_args::DeviceArgs;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct PaintArgs {
    /// Model file written by `spadework convert` (default: the built-in landscape model).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Start from this map (palette, label-id or RGB PNG) instead of the autosaved painting.
    #[arg(long)]
    pub map: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Where the painting is autosaved (default: $SPADEWORK_AUTOSAVE_DIR, else the user's state dir).
    #[arg(long)]
    pub autosave_dir: Option<PathBuf>,
    /// Style seed (VAE models).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Size of a new painting, WxH.
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(usize, usize)>,
    /// Drive the window from a script of input events (JSON; see src/paint/replay.rs).
    #[arg(long)]
    pub replay: Option<PathBuf>,
}

pub fn parse_size(s: &str) -> std::result::Result<(usize, usize), String> {
    let (w, h) = s.split_once('x').ok_or("expected WxH, e.g. 512x256")?;
    let p = |v: &str| v.parse::<usize>().ok().filter(|&n| (1..=8192).contains(&n));
    match (p(w), p(h)) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err("expected WxH with sides 1-8192, e.g. 512x256".into()),
    }
}

pub fn paint(a: PaintArgs) -> Result<()> {
    let store = spadework::pipelines::spade::load_store(a.weights.as_deref())?;
    spadework::paint::app::run(spadework::paint::app::PaintOptions {
        store,
        map: a.map,
        backend: a.device.backend,
        adapter: a.device.adapter,
        gpu_weights: a.device.gpu_weights,
        autosave_dir: a
            .autosave_dir
            .unwrap_or_else(spadework::paint::autosave::Autosave::default_dir),
        replay: a.replay,
        seed: a.seed,
        size: a.size,
    })
}
