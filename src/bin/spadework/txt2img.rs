//! `spadework txt2img`: a prompt through a Stable Diffusion pipeline (a diffusers folder or a
//! single-file checkpoint) to a PNG.
use crate::device_args::DeviceArgs;
use anyhow::{Context, Result};
use spadework::backend::Device;
use spadework::io::{image as img, npy};
use spadework::pipelines::stable_diffusion::{
    GenerateParams, InitImage, Latents, StableDiffusionPipeline,
};
use spadework::tensor::Tensor;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Txt2ImgArgs {
    /// A diffusers Stable Diffusion folder (model_index.json, tokenizer/, text_encoder/, unet/,
    /// vae/, scheduler/), or a single-file SD 1.x / 2.x checkpoint in the original LDM layout
    /// (.safetensors or .ckpt; a .ckpt's pickle is read without running it).
    #[arg(long)]
    pub weights: PathBuf,
    /// What the image shows.
    pub prompt: String,
    /// What guidance steers away from.
    #[arg(long, default_value = "")]
    pub negative_prompt: String,
    #[arg(long, default_value_t = 25)]
    pub steps: usize,
    /// Classifier-free guidance scale (≤ 1: no guidance, one UNet pass per step).
    #[arg(long, default_value_t = 7.5, allow_negative_numbers = true)]
    pub guidance: f32,
    /// Replace the folder's scheduler: ddim, pndm, euler, euler-a, dpm++2m, dpm++2m-karras, lcm.
    #[arg(long)]
    pub scheduler: Option<String>,
    /// Image width (a multiple of 8; default: the UNet's sample_size × the VAE factor).
    #[arg(long)]
    pub width: Option<usize>,
    #[arg(long)]
    pub height: Option<usize>,
    /// Seed of the initial latents (and of stochastic schedulers' noise). Default 0.
    #[arg(long, conflicts_with = "latents")]
    pub seed: Option<u64>,
    /// The initial latents as a .npy [1, 4, height / 8, width / 8] (before the scheduler's
    /// init_noise_sigma, as diffusers' `latents=`).
    #[arg(long)]
    pub latents: Option<PathBuf>,
    /// img2img: start from this image (PNG/JPEG, the output's size; default size: the image's).
    #[arg(long)]
    pub init_image: Option<PathBuf>,
    /// img2img: how far the image is noised (0 keeps it, 1 runs every step).
    #[arg(long, default_value_t = 0.8, requires = "init_image")]
    pub strength: f32,
    /// Weight file variant (e.g. fp16: diffusion_pytorch_model.fp16.safetensors).
    #[arg(long)]
    pub variant: Option<String>,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Output PNG.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Also write the VAE's float32 NCHW output before clamping (.npy).
    #[arg(long)]
    pub raw: Option<PathBuf>,
}

pub fn txt2img(a: Txt2ImgArgs) -> Result<()> {
    let t0 = Instant::now();
    let device = a.device.select()?;
    eprintln!("using {}", device.describe());
    let pipe = StableDiffusionPipeline::open(
        &a.weights,
        &device,
        a.device.gpu_weights,
        a.variant.as_deref(),
    )?;
    let t_load = t0.elapsed();
    let init = a.init_image.as_ref().map(|p| read_image(p)).transpose()?;
    let size = pipe.default_size();
    let (width, height) = match &init {
        Some((_, w, h)) => (a.width.unwrap_or(*w), a.height.unwrap_or(*h)),
        None => (a.width.unwrap_or(size), a.height.unwrap_or(size)),
    };
    let init = match init {
        Some((data, w, h)) => {
            if (w, h) != (width, height) {
                anyhow::bail!(
                    "the init image is {w}x{h}, the output {width}x{height}: give an image of \
                     the output's size"
                );
            }
            Some(InitImage {
                image: Tensor::from_vec(&device, &[1, 3, h, w], data)?,
                strength: a.strength,
                noise: None,
            })
        }
        None => None,
    };
    let latents = match &a.latents {
        Some(p) => {
            let (shape, data) = npy::read_f32(p)?;
            let want = pipe.latent_shape(width, height);
            if shape != want {
                anyhow::bail!(
                    "{}: the latents must have shape {want:?} for a {width}x{height} image, got \
                     {shape:?}",
                    p.display()
                );
            }
            Latents::Given(Tensor::from_vec(&device, &shape, data)?)
        }
        None => Latents::Seed(a.seed.unwrap_or(0)),
    };
    let params = GenerateParams {
        prompt: &a.prompt,
        negative_prompt: &a.negative_prompt,
        steps: a.steps,
        guidance: a.guidance,
        width,
        height,
        latents,
        scheduler: a.scheduler.as_deref(),
        init,
        progress: std::io::stderr().is_terminal(),
    };
    pipe.check_params(&params)?;
    let t1 = Instant::now();
    let out = pipe.generate(&params)?;
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    let image = out.image.to_vec()?;
    let t_run = t1.elapsed();
    if let Some(raw) = &a.raw {
        npy::write_f32(raw, out.image.shape(), &image)?;
    }
    img::save_rgb_png(&a.output, &to_rgb8(&image, height, width), height, width)
        .with_context(|| format!("writing {}", a.output.display()))?;
    let peak = match &device {
        Device::Gpu(ctx) => format!(
            ", peak device memory {:.1} MiB",
            ctx.peak_bytes() as f64 / 1048576.0
        ),
        Device::Cpu => String::new(),
    };
    eprintln!(
        "{width}x{height}, {} steps of {} in {:.1} ms ({:.1} ms/step; load {:.1} ms{peak}) -> {}",
        a.steps,
        out.scheduler,
        t_run.as_secs_f64() * 1e3,
        t_run.as_secs_f64() * 1e3 / a.steps as f64,
        t_load.as_secs_f64() * 1e3,
        a.output.display()
    );
    Ok(())
}

/// diffusers' `postprocess`: `(x / 2 + 0.5)` clamped to [0, 1], × 255, rounded; HWC.
fn to_rgb8(chw: &[f32], h: usize, w: usize) -> Vec<u8> {
    let mut out = vec![0u8; h * w * 3];
    for c in 0..3 {
        for i in 0..h * w {
            let v = (chw[c * h * w + i] / 2.0 + 0.5).clamp(0.0, 1.0);
            out[i * 3 + c] = (v * 255.0).round() as u8;
        }
    }
    out
}

/// An RGB image as `[3, H, W]` in [-1, 1] (diffusers' preprocessing: x / 255 · 2 − 1), its width
/// and height.
fn read_image(path: &std::path::Path) -> Result<(Vec<f32>, usize, usize)> {
    let img = image::open(path)
        .with_context(|| format!("cannot read init image {}", path.display()))?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut out = vec![0f32; 3 * h * w];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * h * w + i] = p[c] as f32 / 255.0 * 2.0 - 1.0;
        }
    }
    Ok((out, w, h))
}
