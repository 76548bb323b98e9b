//! `spadework render`: a label map (and instance map, style) through a SPADE model to a PNG.
use crate::device_args::DeviceArgs;
use anyhow::{Result, bail};
use spadework::backend::Device;
use spadework::io::{image as img, map_png, npy};
use spadework::models::spade::input as labels;
use spadework::pipelines::spade::{SpadePipeline, ZSource};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct RenderArgs {
    /// Model file written by `spadework convert` (default: the built-in landscape model).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Label map PNG: 8/16-bit label ids, a palette PNG (indices), or colours of the model's palette.
    #[arg(long)]
    pub map: PathBuf,
    /// Instance map PNG (8/16-bit ids) for models with an instance-edge channel.
    #[arg(long)]
    pub instance: Option<PathBuf>,
    /// Style image (VAE models with an encoder): its mean latent becomes z.
    #[arg(long, conflicts_with_all = ["seed", "z"])]
    pub style: Option<PathBuf>,
    /// Seed for z ~ N(0, I) (VAE models). Default 0.
    #[arg(long, conflicts_with = "z")]
    pub seed: Option<u64>,
    /// z as a .npy (float32/64, z_dim values).
    #[arg(long)]
    pub z: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// For models with a class list: remap ids the model does not know to this class (name or id).
    #[arg(long)]
    pub unknown_as: Option<String>,
    /// Output PNG.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Also write the float32 NCHW output before quantisation (.npy).
    #[arg(long)]
    pub raw: Option<PathBuf>,
    /// The most pixels an input image may have (checked from its header before decoding).
    #[arg(long, default_value_t = spadework::io::image::DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,
}

pub fn render(a: RenderArgs) -> Result<()> {
    spadework::io::check_outputs(
        &[
            ("--map", Some(&a.map)),
            ("--weights", a.weights.as_deref()),
            ("--instance", a.instance.as_deref()),
            ("--style", a.style.as_deref()),
            ("--z", a.z.as_deref()),
        ],
        &[("-o", Some(&a.output)), ("--raw", a.raw.as_deref())],
    )?;
    spadework::io::image::set_max_pixels(a.max_pixels);
    let t0 = Instant::now();
    let device = a.device.select()?;
    spadework::note!("using {}", device.describe());
    let model = SpadePipeline::from_store(
        &spadework::pipelines::spade::load_store(a.weights.as_deref())?,
        &device,
        a.device.gpu_weights,
    )?;
    let t_load = t0.elapsed();
    let map = map_png::read_map_png(&a.map)?;
    let inst = a
        .instance
        .as_ref()
        .map(|p| map_png::read_map_png(p).map(|m| (m, p.display().to_string())))
        .transpose()?;
    let map_name = a.map.display().to_string();
    if inst.is_none() && !model.cfg.no_instance && model.cfg.texture_field.is_none() {
        spadework::note!(
            "note: no --instance given; using the label map's class boundaries as instance edges"
        );
    }
    let prepared = labels::prepare(
        &model.cfg,
        &map,
        &map_name,
        inst.as_ref().map(|(m, n)| (m, n.as_str())),
        a.unknown_as.as_deref(),
    )?;
    let z = if let Some(p) = &a.z {
        let z = npy::read_f32(p)?.1;
        spadework::tensor::check_finite(&z, &format!("--z {}", p.display()))?;
        Some(ZSource::Given(z))
    } else if let Some(s) = &a.style {
        let (mu, _) = model.encode_style(s)?;
        Some(ZSource::Given(mu))
    } else {
        a.seed.map(ZSource::Seed)
    };
    if model.cfg.use_vae && z.is_none() {
        spadework::note!("note: VAE model and no --seed/--z/--style: using seed 0");
    } else if !model.cfg.use_vae
        && (a.z.is_some() || (a.seed.is_some() && model.cfg.texture_field.is_none()))
    {
        bail!("this model is not a VAE generator; --seed/--z have no effect");
    }
    let t1 = Instant::now();
    // A texture-field model's noise follows --seed also when --z or --style sets the look.
    let (out, (h, w)) = model.render_seeded(&prepared, z.as_ref(), a.seed.unwrap_or(0))?;
    let t_render = t1.elapsed();
    spadework::tensor::check_finite(&out, "the rendered image")?;
    if let Some(raw) = &a.raw {
        npy::write_f32(raw, &[1, 3, h, w], &out)?;
    }
    img::save_rgb_png(&a.output, &img::to_rgb8(&out, h, w), h, w)?;
    let peak = match &device {
        Device::Gpu(ctx) => format!(
            ", peak device memory {:.1} MiB",
            ctx.peak_bytes() as f64 / 1048576.0
        ),
        Device::Cpu => String::new(),
    };
    spadework::note!(
        "rendered {w}x{h} in {:.1} ms (load {:.1} ms{peak}) -> {}",
        t_render.as_secs_f64() * 1e3,
        t_load.as_secs_f64() * 1e3,
        a.output.display()
    );
    Ok(())
}
