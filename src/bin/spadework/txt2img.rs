//! `spadework txt2img`: a prompt to a PNG. Without `--weights`, the built-in stack (MiniLM → the
//! layout cascade → the SPADE landscape model; the layout can be written out and painted on);
//! with `--weights`, a Stable Diffusion pipeline (a diffusers folder or a single-file
//! checkpoint).
use crate::device_args::DeviceArgs;
use anyhow::{Context, Result};
use spadework::backend::Device;
use spadework::io::{image as img, npy};
use spadework::models::vae::Tiling;
use spadework::pipelines::stable_diffusion::{
    GenerateParams, InitImage, Inpaint, Latents, StableDiffusionPipeline,
};
use spadework::tensor::Tensor;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Txt2ImgArgs {
    /// A diffusers Stable Diffusion folder (model_index.json, tokenizer/, text_encoder/, unet/,
    /// vae/, scheduler/), or a single-file SD 1.x / 2.x checkpoint in the original LDM layout
    /// (.safetensors or .ckpt; a .ckpt's pickle is read without running it). Without it: the
    /// built-in text → layout → landscape stack (no download).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// What the image shows.
    pub prompt: String,
    /// What guidance steers away from.
    #[arg(long, default_value = "")]
    pub negative_prompt: String,
    /// Denoising steps (default 25 with --weights; 10 per layout stage built in).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Classifier-free guidance scale (≤ 1: no guidance, one UNet pass per step; default 7.5
    /// with --weights, 1 for the built-in layout model).
    #[arg(long, allow_negative_numbers = true)]
    pub guidance: Option<f32>,
    /// Built in: also write the layout as a palette PNG of ADE20K ids (open it with `render
    /// --map` or `paint --map`); with --samples K, NAME-0.png … NAME-(K-1).png.
    #[arg(long)]
    pub layout_out: Option<PathBuf>,
    /// Built in: Imagen's dynamic thresholding of the layout's x̂₀ at this percentile (e.g.
    /// 0.995); default: neither this nor --static-threshold.
    #[arg(long, conflicts_with = "static_threshold")]
    pub dynamic_threshold: Option<f64>,
    /// Built in: Imagen's static thresholding, the layout's x̂₀ clipped to [-1, 1] at every step.
    #[arg(long)]
    pub static_threshold: bool,
    /// Built in: the noise-conditioning augmentation level the super-resolution stage is told,
    /// in [0, 1) of the schedule.
    #[arg(long, default_value_t = 0.1)]
    pub layout_aug: f64,
    /// Built in: skip the super-resolution stage (the 32² base layout upsampled by nearest; the
    /// cascade's ablation).
    #[arg(long)]
    pub no_sr: bool,
    /// Built in: a layout cascade folder (tools/train_layout.py export) instead of the built-in.
    #[arg(long)]
    pub layout_model: Option<PathBuf>,
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
    /// With --mask: the image to inpaint.
    #[arg(long)]
    pub init_image: Option<PathBuf>,
    /// Inpainting: white (≥ 50 % grey) is repainted, black kept; resized (nearest) to the
    /// image's size if it differs.
    #[arg(long, requires = "init_image")]
    pub mask: Option<PathBuf>,
    /// How far the image is noised (0 keeps it, 1 runs every step); default 0.8 for img2img,
    /// 1 for inpainting.
    #[arg(long, requires = "init_image")]
    pub strength: Option<f32>,
    /// Make K images (seeds seed, seed + 1, …) and write them as one grid.
    #[arg(long, default_value_t = 1, conflicts_with_all = ["latents", "raw"])]
    pub samples: usize,
    /// Decode the latents in tiles (diffusers' enable_tiling): `auto` (tiles of the VAE's
    /// sample_size) or a tile side in latent pixels. Bounds the VAE's memory for large images.
    #[arg(long, num_args = 0..=1, default_missing_value = "auto")]
    pub vae_tiling: Option<String>,
    /// Override what the UNet predicts (the scheduler config's `prediction_type`): e.g. an SD 2.x
    /// `512-base` single file, which shapes cannot tell from the 768 v-prediction model.
    #[arg(long, value_parser = ["epsilon", "v_prediction", "sample"])]
    pub prediction_type: Option<String>,
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
    /// The most pixels an input image may have (checked from its header before decoding).
    #[arg(long, default_value_t = spadework::io::image::DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,
}

pub fn txt2img(a: Txt2ImgArgs) -> Result<()> {
    let Some(weights) = a.weights.clone() else {
        return builtin(a);
    };
    for (flag, given) in [
        ("--layout-out", a.layout_out.is_some()),
        ("--dynamic-threshold", a.dynamic_threshold.is_some()),
        ("--static-threshold", a.static_threshold),
        ("--layout-model", a.layout_model.is_some()),
        ("--no-sr", a.no_sr),
    ] {
        if given {
            anyhow::bail!("{flag} is for the built-in text-to-image stack (without --weights)");
        }
    }
    let (steps, guidance) = (a.steps.unwrap_or(25), a.guidance.unwrap_or(7.5));
    spadework::io::check_outputs(
        &[
            ("--weights", Some(&weights)),
            ("--latents", a.latents.as_deref()),
            ("--init-image", a.init_image.as_deref()),
            ("--mask", a.mask.as_deref()),
        ],
        &[("-o", Some(&a.output)), ("--raw", a.raw.as_deref())],
    )?;
    spadework::io::image::set_max_pixels(a.max_pixels);
    let t0 = Instant::now();
    let device = a.device.select()?;
    spadework::note!("using {}", device.describe());
    let mut pipe = StableDiffusionPipeline::open(
        &weights,
        &device,
        a.device.gpu_weights,
        a.variant.as_deref(),
    )?;
    if let Some(p) = &a.prediction_type {
        pipe.scheduler_config.prediction_type = p.clone();
    }
    let t_load = t0.elapsed();
    let init = a.init_image.as_ref().map(|p| read_image(p)).transpose()?;
    let size = pipe.default_size();
    let (width, height) = match &init {
        Some((_, w, h)) => (a.width.unwrap_or(*w), a.height.unwrap_or(*h)),
        None => (a.width.unwrap_or(size), a.height.unwrap_or(size)),
    };
    let (init, inpaint) = match init {
        Some((data, w, h)) => {
            if (w, h) != (width, height) {
                anyhow::bail!(
                    "the init image is {w}x{h}, the output {width}x{height}: give an image of \
                     the output's size"
                );
            }
            let image = Tensor::from_vec(&device, &[1, 3, h, w], data)?;
            match &a.mask {
                Some(m) => {
                    let mask = read_mask(m, w, h)?;
                    let mask = Tensor::from_vec(&device, &[1, 1, h, w], mask)?;
                    let strength = a.strength.unwrap_or(1.0);
                    (
                        None,
                        Some(Inpaint {
                            image,
                            mask,
                            strength,
                            noise: None,
                        }),
                    )
                }
                None => {
                    let strength = a.strength.unwrap_or(0.8);
                    (
                        Some(InitImage {
                            image,
                            strength,
                            noise: None,
                        }),
                        None,
                    )
                }
            }
        }
        None => (None, None),
    };
    let vae_tiling = match a.vae_tiling.as_deref() {
        None => Tiling::Off,
        Some("auto") => Tiling::Auto,
        Some(t) => match t.parse::<usize>() {
            Ok(tile) if tile >= 8 => Tiling::Tiles {
                tile,
                overlap: 0.25,
            },
            _ => anyhow::bail!(
                "--vae-tiling takes 'auto' or a tile side in latent pixels (at least 8), got '{t}'"
            ),
        },
    };
    if a.samples == 0 || a.samples > 64 {
        anyhow::bail!("--samples must be between 1 and 64, got {}", a.samples);
    }
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
    let mut params = GenerateParams {
        prompt: &a.prompt,
        negative_prompt: &a.negative_prompt,
        steps,
        guidance,
        width,
        height,
        latents,
        scheduler: a.scheduler.as_deref(),
        init,
        inpaint,
        vae_tiling,
        progress: std::io::stderr().is_terminal(),
    };
    pipe.check_params(&params)?;
    let t1 = Instant::now();
    let seed = a.seed.unwrap_or(0);
    let mut images = Vec::with_capacity(a.samples);
    let mut scheduler = "";
    for k in 0..a.samples {
        if a.samples > 1 {
            params.latents = Latents::Seed(seed + k as u64);
            spadework::note!("sample {}/{} (seed {})", k + 1, a.samples, seed + k as u64);
        }
        let out = pipe.generate(&params)?;
        if k == 0 {
            for w in &out.warnings {
                spadework::note!("warning: {w}");
            }
        }
        scheduler = out.scheduler;
        let image = out.image.to_vec()?;
        spadework::tensor::check_finite(&image, "the decoded image")?;
        if let Some(raw) = &a.raw {
            npy::write_f32(raw, out.image.shape(), &image)?;
        }
        images.push(to_rgb8(&image, height, width));
    }
    let t_run = t1.elapsed();
    let (grid, gh, gw) = grid(&images, height, width);
    img::save_rgb_png(&a.output, &grid, gh, gw)
        .with_context(|| format!("writing {}", a.output.display()))?;
    let peak = match &device {
        Device::Gpu(ctx) => format!(
            ", peak device memory {:.1} MiB",
            ctx.peak_bytes() as f64 / 1048576.0
        ),
        Device::Cpu => String::new(),
    };
    let runs = (steps * a.samples) as f64;
    spadework::note!(
        "{} × {width}x{height}, {} steps of {scheduler} in {:.1} ms ({:.1} ms/step; load {:.1} ms{peak}) -> {}",
        a.samples,
        steps,
        t_run.as_secs_f64() * 1e3,
        t_run.as_secs_f64() * 1e3 / runs,
        t_load.as_secs_f64() * 1e3,
        a.output.display()
    );
    Ok(())
}

/// The built-in stack: MiniLM → layout cascade → SPADE (see the module docs).
fn builtin(a: Txt2ImgArgs) -> Result<()> {
    let sd_only = [
        ("--negative-prompt", !a.negative_prompt.is_empty()),
        ("--scheduler", a.scheduler.is_some()),
        ("--width", a.width.is_some()),
        ("--height", a.height.is_some()),
        ("--latents", a.latents.is_some()),
        ("--init-image", a.init_image.is_some()),
        ("--vae-tiling", a.vae_tiling.is_some()),
        ("--prediction-type", a.prediction_type.is_some()),
        ("--variant", a.variant.is_some()),
        ("--raw", a.raw.is_some()),
    ];
    if let Some((flag, _)) = sd_only.iter().find(|(_, given)| *given) {
        anyhow::bail!(
            "{flag} is for Stable Diffusion pipelines (--weights); the built-in stack renders a \
             128x128 landscape from a generated layout"
        );
    }
    if a.samples == 0 || a.samples > 64 {
        anyhow::bail!("--samples must be between 1 and 64, got {}", a.samples);
    }
    let layout_outs: Vec<PathBuf> = match &a.layout_out {
        None => Vec::new(),
        Some(p) if a.samples == 1 => vec![p.clone()],
        Some(p) => (0..a.samples).map(|k| numbered(p, k)).collect(),
    };
    let mut outs: Vec<(&str, Option<&std::path::Path>)> = vec![("-o", Some(&a.output))];
    outs.extend(
        layout_outs
            .iter()
            .map(|p| ("--layout-out", Some(p.as_path()))),
    );
    spadework::io::check_outputs(&[("--layout-model", a.layout_model.as_deref())], &outs)?;
    let t0 = Instant::now();
    let device = a.device.select()?;
    spadework::note!("using {}", device.describe());
    let stack = spadework::pipelines::text_to_image::TextToImage::builtin_parts(
        &device,
        a.device.gpu_weights,
        a.layout_model.as_deref(),
    )?;
    let t_load = t0.elapsed();
    let params = spadework::pipelines::layout_diffusion::LayoutParams {
        steps: a.steps.unwrap_or(10),
        guidance: a
            .guidance
            .unwrap_or(spadework::pipelines::layout_diffusion::LayoutParams::default().guidance),
        static_threshold: a.static_threshold,
        dynamic_threshold: a.dynamic_threshold,
        aug: a.layout_aug,
        base_only: a.no_sr,
        ..Default::default()
    };
    let seed = a.seed.unwrap_or(0);
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new((stack.unet_steps(&params) * a.samples) as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let palette = spadework::paint::files::Palette::for_model(&stack.spade.cfg);
    let mut tiles = Vec::with_capacity(a.samples);
    let mut times = spadework::pipelines::text_to_image::StageTimes::default();
    let (mut th, mut tw) = (0, 0);
    for k in 0..a.samples {
        let s = seed + k as u64;
        let out = stack.generate(&a.prompt, &params, s, &mut || bar.inc(1))?;
        if k == 0 && out.truncated {
            spadework::note!(
                "warning: the prompt is longer than the text encoder's {} tokens and was truncated",
                stack.cascade.meta.tokens
            );
        }
        spadework::tensor::check_finite(&out.image, "the rendered image")?;
        times.text += out.times.text;
        times.layout += out.times.layout;
        times.prior += out.times.prior;
        times.render += out.times.render;
        let canvas =
            spadework::paint::canvas::Canvas::from_ids(out.size, out.size, out.labels.clone())?;
        if let Some(p) = layout_outs.get(k) {
            spadework::paint::files::save_palette_png(p, &canvas, &palette)?;
        }
        let (h, w) = out.image_size;
        let image = to_rgb8(&out.image, h, w);
        if a.samples == 1 {
            (th, tw) = (h, w);
            tiles.push(image);
            continue;
        }
        // Each sample: layout | image.
        let layout: Vec<u8> = palette
            .colorize(&canvas)
            .iter()
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        let layout = resize_rgb_nearest(&layout, out.size, out.size, h, w);
        let (tile, gh, gw) = side_by_side(&layout, &image, h, w);
        (th, tw) = (gh, gw);
        tiles.push(tile);
    }
    bar.finish_and_clear();
    let (grid, gh, gw) = grid(&tiles, th, tw);
    img::save_rgb_png(&a.output, &grid, gh, gw)
        .with_context(|| format!("writing {}", a.output.display()))?;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3 / a.samples as f64;
    let total = times.text + times.layout + times.prior + times.render;
    spadework::note!(
        "{} sample(s), per sample {:.1} ms: text {:.1} ms, layout {:.1} ms ({} steps per stage, \
         guidance {}), look prior {:.1} ms, render {:.1} ms; load {:.1} ms -> {}",
        a.samples,
        ms(total),
        ms(times.text),
        ms(times.layout),
        params.steps,
        params.guidance,
        ms(times.prior),
        ms(times.render),
        t_load.as_secs_f64() * 1e3,
        a.output.display()
    );
    Ok(())
}

/// `dir/name.png` → `dir/name-k.png`.
fn numbered(p: &std::path::Path, k: usize) -> PathBuf {
    let stem = p
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    let ext = p
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    p.with_file_name(format!("{stem}-{k}{ext}"))
}

/// An RGB8 image resized by nearest neighbour.
fn resize_rgb_nearest(src: &[u8], sh: usize, sw: usize, h: usize, w: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(h * w * 3);
    for y in 0..h {
        for x in 0..w {
            let i = ((y * sh / h) * sw + x * sw / w) * 3;
            out.extend_from_slice(&src[i..i + 3]);
        }
    }
    out
}

/// Two RGB8 images of one size, left and right with a 2-pixel white gap.
fn side_by_side(a: &[u8], b: &[u8], h: usize, w: usize) -> (Vec<u8>, usize, usize) {
    let gw = 2 * w + 2;
    let mut out = vec![255u8; h * gw * 3];
    for y in 0..h {
        out[y * gw * 3..][..w * 3].copy_from_slice(&a[y * w * 3..][..w * 3]);
        out[(y * gw + w + 2) * 3..][..w * 3].copy_from_slice(&b[y * w * 3..][..w * 3]);
    }
    (out, h, gw)
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

/// RGB8 images of one size side by side, ⌈√K⌉ to a row (2-pixel white gaps); the grid and its
/// height and width.
fn grid(images: &[Vec<u8>], h: usize, w: usize) -> (Vec<u8>, usize, usize) {
    if images.len() == 1 {
        return (images[0].clone(), h, w);
    }
    const GAP: usize = 2;
    let cols = (images.len() as f64).sqrt().ceil() as usize;
    let rows = images.len().div_ceil(cols);
    let (gw, gh) = (cols * w + (cols - 1) * GAP, rows * h + (rows - 1) * GAP);
    let mut out = vec![255u8; gh * gw * 3];
    for (k, im) in images.iter().enumerate() {
        let (oy, ox) = ((k / cols) * (h + GAP), (k % cols) * (w + GAP));
        for y in 0..h {
            let dst = ((oy + y) * gw + ox) * 3;
            out[dst..dst + w * 3].copy_from_slice(&im[y * w * 3..(y + 1) * w * 3]);
        }
    }
    (out, gh, gw)
}

/// An inpainting mask as `[H, W]` in [0, 1] (luma, as PIL's `convert("L")`), nearest-resized
/// to `w`×`h` with a note when its size differs.
fn read_mask(path: &std::path::Path, w: usize, h: usize) -> Result<Vec<f32>> {
    let img = spadework::io::image::open_image(path, "mask")?.to_rgb8();
    let (mw, mh) = (img.width() as usize, img.height() as usize);
    if (mw, mh) != (w, h) {
        spadework::note!(
            "note: the mask {} is {mw}x{mh}; resized (nearest) to the image's {w}x{h}",
            path.display()
        );
    }
    let mut out = vec![0f32; h * w];
    for y in 0..h {
        for x in 0..w {
            let p = img.get_pixel((x * mw / w) as u32, (y * mh / h) as u32);
            let l = (p[0] as u32 * 299 + p[1] as u32 * 587 + p[2] as u32 * 114) / 1000;
            out[y * w + x] = l as f32 / 255.0;
        }
    }
    Ok(out)
}

/// An RGB image as `[3, H, W]` in [-1, 1] (diffusers' preprocessing: x / 255 · 2 − 1), its width
/// and height.
fn read_image(path: &std::path::Path) -> Result<(Vec<f32>, usize, usize)> {
    let img = spadework::io::image::open_image(path, "init image")?.to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut out = vec![0f32; 3 * h * w];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * h * w + i] = p[c] as f32 / 255.0 * 2.0 - 1.0;
        }
    }
    Ok((out, w, h))
}
