//! The Stable Diffusion pipeline (diffusers `StableDiffusionPipeline`, text to image): a
//! diffusers folder (`model_index.json`, `tokenizer/`, `text_encoder/`, `unet/`, `vae/`,
//! `scheduler/`) in, an image out, step for step as diffusers runs it:
//!
//! 1. the prompt and the negative prompt through the tokenizer (77 tokens) and the text encoder
//!    (its last hidden state), batched `[negative, prompt]` for classifier-free guidance;
//! 2. the initial latents (given, or N(0, I) from [`Rng`]) times the scheduler's
//!    `init_noise_sigma`;
//! 3. for each timestep: the UNet on `scale_model_input(latents)` (the batch of two under
//!    guidance), `ε = ε_uncond + g · (ε_text − ε_uncond)`, `latents = scheduler.step(ε, …)`;
//! 4. `vae.decode(latents / scaling_factor)`: the image `[1, 3, H, W]`, about [-1, 1], not
//!    clamped.
//!
//! Guidance runs when `guidance > 1` (diffusers' `do_classifier_free_guidance`); otherwise the
//! UNet sees the prompt alone. The VAE always keeps f32 weights on the GPU (SD's VAE overflows in
//! half precision); the text encoder and the UNet take the storage the caller asks for.
use crate::backend::{Device, WeightStorage};
use crate::models::clip::ClipTokenizer;
use crate::models::clip::tokenizer::MAX_TOKENS;
use crate::models::vae::Tiling;
use crate::models::{
    AutoencoderKL, AutoencoderKLConfig, ClipTextConfig, ClipTextEncoder, UNet2DConditionConfig,
    UNet2DConditionModel,
};
use crate::ops;
use crate::pipelines::single_file::SingleFile;
use crate::rng::Rng;
use crate::schedulers::{self, SchedulerConfig};
use crate::tensor::Tensor;
use crate::weights::folder::component_weights;
use crate::weights::vars::Vars;
use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// The `_class_name`s of `model_index.json` this pipeline loads.
pub const PIPELINE_CLASSES: &[&str] = &[
    "StableDiffusionPipeline",
    "StableDiffusionImg2ImgPipeline",
    "StableDiffusionInpaintPipeline",
];

pub struct StableDiffusionPipeline {
    pub dir: PathBuf,
    pub device: Device,
    pub tokenizer: ClipTokenizer,
    pub text_encoder: ClipTextEncoder,
    pub unet: UNet2DConditionModel,
    pub vae: AutoencoderKL,
    /// `scheduler/scheduler_config.json`, which `--scheduler` names reinterpret.
    pub scheduler_config: SchedulerConfig,
}

/// Where the initial latents come from.
pub enum Latents {
    /// `[1, unet in_channels, height / f, width / f]`, before `init_noise_sigma` (diffusers'
    /// `latents=` argument).
    Given(Tensor),
    /// N(0, I) from [`Rng`] with this seed (the same stream then feeds stochastic schedulers).
    Seed(u64),
}

/// img2img's start (diffusers `StableDiffusionImg2ImgPipeline`): the image is encoded, its
/// posterior sampled and scaled by `scaling_factor`, and noised with the scheduler's `add_noise`
/// to the first of the last `⌊steps · strength⌋` timesteps, which then run.
pub struct InitImage {
    /// `[1, 3, height, width]` in [-1, 1].
    pub image: Tensor,
    /// 0 (keep the image) to 1 (all steps: the image is nearly forgotten).
    pub strength: f32,
    /// The posterior sample's noise and `add_noise`'s, `[2, C, h, w]`; drawn from the seed's
    /// [`Rng`] when absent.
    pub noise: Option<Tensor>,
}

/// Inpainting (diffusers `StableDiffusionInpaintPipeline`): the image is kept where the mask is
/// below 0.5 and painted where it is 1. A 9-channel (inpainting) UNet sees the mask and the
/// masked image's latents beside the latents at every step; a standard 4-channel UNet runs as
/// for text to image, and after each step the latents outside the mask are replaced by the
/// image's, noised to the next step's level.
pub struct Inpaint {
    /// `[1, 3, height, width]` in [-1, 1].
    pub image: Tensor,
    /// `[1, 1, height, width]`: ≥ 0.5 repaint, < 0.5 keep (binarised as diffusers does).
    pub mask: Tensor,
    /// As img2img's (1: start from pure noise, diffusers' default).
    pub strength: f32,
    /// The posterior samples' noise `[2, C, h, w]`: the image's, then the masked image's; drawn
    /// from the seed's [`Rng`] when absent.
    pub noise: Option<Tensor>,
}

/// What [`StableDiffusionPipeline::generate`] runs.
pub struct GenerateParams<'a> {
    pub prompt: &'a str,
    pub negative_prompt: &'a str,
    pub steps: usize,
    /// Classifier-free guidance scale; ≤ 1 runs without guidance.
    pub guidance: f32,
    pub width: usize,
    pub height: usize,
    pub latents: Latents,
    /// A `--scheduler` name ([`schedulers::SCHEDULER_NAMES`]) instead of the folder's scheduler.
    pub scheduler: Option<&'a str>,
    /// img2img: start from this image's latents, noised to the level `strength` sets.
    pub init: Option<InitImage>,
    /// Inpainting: repaint the masked part of an image.
    pub inpaint: Option<Inpaint>,
    /// How the VAE decodes the final latents (in tiles for large images).
    pub vae_tiling: Tiling,
    /// Show a progress bar over the steps on stderr (hidden when stderr is not a terminal).
    pub progress: bool,
}

impl GenerateParams<'_> {
    /// 25 steps at guidance 7.5 from seed 0, the folder's scheduler, no negative prompt.
    pub fn new(prompt: &str, width: usize, height: usize) -> GenerateParams<'_> {
        GenerateParams {
            prompt,
            negative_prompt: "",
            steps: 25,
            guidance: 7.5,
            width,
            height,
            latents: Latents::Seed(0),
            scheduler: None,
            init: None,
            inpaint: None,
            vae_tiling: Tiling::Off,
            progress: false,
        }
    }
}

/// diffusers' get_timesteps: img2img and inpainting run the timesteps from index
/// `steps − ⌊steps · strength⌋` (every supported scheduler has order 1; PNDM's list repeats its
/// first step).
fn first_step(steps: usize, strength: f32) -> usize {
    steps - ((steps as f64 * strength as f64) as usize).min(steps)
}

/// Fails when `strength` leaves none of `steps` to run.
fn check_runs_a_step(steps: usize, strength: f32) -> Result<()> {
    if (steps as f32 * strength) < 1.0 {
        bail!("strength {strength} of {steps} steps runs no step (⌊steps · strength⌋ = 0)");
    }
    Ok(())
}

/// Inpainting's inputs in latent space.
struct InpaintLatents {
    /// The binarised mask at the latent size `[1, 1, h, w]` (nearest, as diffusers).
    mask: Tensor,
    /// The VAE posterior sample of the masked image × scaling_factor.
    masked_latents: Tensor,
    /// The image's (for a 4-channel UNet, or a strength below 1).
    image_latents: Option<Tensor>,
    /// The initial noise (the given latents, or drawn).
    noise: Tensor,
    /// [`Inpaint::strength`].
    strength: f32,
}

/// An image and what the caller should be told about its inputs.
pub struct Generated {
    /// `[1, out_channels, height, width]`, the VAE's output before clamping.
    pub image: Tensor,
    /// E.g. a prompt cut at the 77-token limit.
    pub warnings: Vec<String>,
    /// The diffusers class of the scheduler that ran.
    pub scheduler: &'static str,
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a valid config", path.display()))
}

fn component_dir(dir: &Path, name: &str) -> Result<PathBuf> {
    let d = dir.join(name);
    if !d.is_dir() {
        bail!(
            "{}: missing the '{name}' folder of a diffusers Stable Diffusion pipeline",
            d.display()
        );
    }
    Ok(d)
}

impl StableDiffusionPipeline {
    /// The pipeline in the diffusers folder `dir` on `device`; the text encoder's and the UNet's
    /// GPU weights stored as `storage`; `variant` (e.g. `fp16`) picks the weight files'
    /// variant where a component has it.
    pub fn load(
        dir: &Path,
        device: &Device,
        storage: WeightStorage,
        variant: Option<&str>,
    ) -> Result<StableDiffusionPipeline> {
        let index_path = dir.join("model_index.json");
        if !index_path.exists() {
            bail!(
                "{}: not a diffusers pipeline folder (expected model_index.json with tokenizer/, \
                 text_encoder/, unet/, vae/ and scheduler/ next to it)",
                dir.display()
            );
        }
        let index: serde_json::Value = read_json(&index_path)?;
        match index["_class_name"].as_str() {
            Some(c) if PIPELINE_CLASSES.contains(&c) => {}
            Some(c) => bail!(
                "{}: _class_name '{c}' is not a Stable Diffusion pipeline this loads ({})",
                index_path.display(),
                PIPELINE_CLASSES.join(", ")
            ),
            None => bail!("{}: no _class_name", index_path.display()),
        }

        let tokenizer = ClipTokenizer::from_folder(&component_dir(dir, "tokenizer")?)?;

        let te_dir = component_dir(dir, "text_encoder")?;
        let te_cfg: ClipTextConfig = read_json(&te_dir.join("config.json"))?;
        let unet_dir = component_dir(dir, "unet")?;
        let unet_cfg: UNet2DConditionConfig = read_json(&unet_dir.join("config.json"))?;
        let vae_dir = component_dir(dir, "vae")?;
        let vae_cfg: AutoencoderKLConfig = read_json(&vae_dir.join("config.json"))?;
        let sched_path = component_dir(dir, "scheduler")?.join("scheduler_config.json");
        let scheduler_config = SchedulerConfig::load(&sched_path)?;
        let cfg_path = |d: &Path| d.join("config.json").display().to_string();
        Self::check_widths(
            (&cfg_path(&te_dir), &te_cfg),
            (&cfg_path(&unet_dir), &unet_cfg),
            (&cfg_path(&vae_dir), &vae_cfg),
        )?;

        let store = component_weights(&te_dir, variant)?;
        // transformers ≥ 5 saves CLIPTextModel without the `text_model.` prefix of the
        // checkpoints Stable Diffusion ships with; both are read.
        let vars = if store.contains("text_model.embeddings.token_embedding.weight") {
            Vars::new(&store, device)
        } else {
            Vars::with_rename(&store, device, |k: &str| {
                k.strip_prefix("text_model.").unwrap_or(k).to_string()
            })
        }
        .with_storage(storage);
        let text_encoder = ClipTextEncoder::load(&vars, &te_cfg)
            .with_context(|| format!("loading {}", te_dir.display()))?;
        vars.finish("is text_encoder/config.json the checkpoint's?")?;

        let store = component_weights(&unet_dir, variant)?;
        let vars = Vars::new(&store, device).with_storage(storage);
        let unet = UNet2DConditionModel::load(&vars, &unet_cfg)
            .with_context(|| format!("loading {}", unet_dir.display()))?;

        let store = component_weights(&vae_dir, variant)?;
        let vars = Vars::new(&store, device).with_storage(WeightStorage::F32);
        let vae = AutoencoderKL::load(&vars, &vae_cfg)
            .with_context(|| format!("loading {}", vae_dir.display()))?;

        // The scheduler must be one we run (a --scheduler override is checked per run).
        schedulers::from_config(&scheduler_config, None)
            .with_context(|| format!("in {}", sched_path.display()))?;

        Ok(StableDiffusionPipeline {
            dir: dir.to_path_buf(),
            device: device.clone(),
            tokenizer,
            text_encoder,
            unet,
            vae,
            scheduler_config,
        })
    }

    /// A diffusers folder ([`Self::load`]) or a single-file checkpoint
    /// ([`Self::load_single_file`]), whichever `path` is.
    pub fn open(
        path: &Path,
        device: &Device,
        storage: WeightStorage,
        variant: Option<&str>,
    ) -> Result<StableDiffusionPipeline> {
        if path.is_file() {
            if let Some(v) = variant {
                bail!(
                    "--variant {v} names weight files in a diffusers folder; {} is a single file",
                    path.display()
                );
            }
            Self::load_single_file(path, device, storage)
        } else {
            Self::load(path, device, storage, variant)
        }
    }

    /// A single-file checkpoint in the original LDM layout (`.safetensors` or `.ckpt`; see
    /// [`SingleFile`]): its components under diffusers' names, configs inferred from their
    /// shapes, CLIP's tokenizer from the bundled merges, the scheduler SD uses by default.
    pub fn load_single_file(
        path: &Path,
        device: &Device,
        storage: WeightStorage,
    ) -> Result<StableDiffusionPipeline> {
        let f = SingleFile::read(path)?;
        let what = path.display().to_string();
        Self::check_widths(
            (&format!("{what} (text encoder)"), &f.text_config),
            (&format!("{what} (UNet)"), &f.unet_config),
            (&format!("{what} (VAE)"), &f.vae_config),
        )?;
        let tokenizer = ClipTokenizer::bundled(f.text_config.vocab_size, f.pad)?;
        let hint = "is this a Stable Diffusion 1.x / 2.x checkpoint?";
        let vars = Vars::new(&f.text, device).with_storage(storage);
        let text_encoder = ClipTextEncoder::load(&vars, &f.text_config)?;
        vars.finish(hint)?;
        let vars = Vars::new(&f.unet, device).with_storage(storage);
        let unet = UNet2DConditionModel::load(&vars, &f.unet_config)?;
        vars.finish(hint)?;
        let vars = Vars::new(&f.vae, device).with_storage(WeightStorage::F32);
        let vae = AutoencoderKL::load(&vars, &f.vae_config)?;
        vars.finish(hint)?;
        Ok(StableDiffusionPipeline {
            dir: path.to_path_buf(),
            device: device.clone(),
            tokenizer,
            text_encoder,
            unet,
            vae,
            scheduler_config: f.scheduler_config,
        })
    }

    /// The widths the components share: text encoder hidden_size = UNet cross_attention_dim,
    /// VAE latent_channels = UNet out_channels = in_channels (2 · latent_channels + 1 for
    /// inpainting).
    fn check_widths(
        (te_what, te): (&str, &ClipTextConfig),
        (unet_what, unet): (&str, &UNet2DConditionConfig),
        (vae_what, vae): (&str, &AutoencoderKLConfig),
    ) -> Result<()> {
        let blocks = unet.down_block_types.len();
        let cross = unet
            .cross_attention_dim
            .spread(blocks, "cross_attention_dim")?;
        if let Some(&c) = cross.iter().find(|&&c| c != te.hidden_size) {
            bail!(
                "the text encoder's hidden_size {} ({}) differs from the UNet's \
                 cross_attention_dim {c} ({}): the components are from different models",
                te.hidden_size,
                te_what,
                unet_what
            );
        }
        // The inpainting UNet takes the latents, the mask and the masked image's latents.
        let inputs = [vae.latent_channels, 2 * vae.latent_channels + 1];
        if !inputs.contains(&unet.in_channels) || vae.latent_channels != unet.out_channels {
            bail!(
                "the VAE's latent_channels {} ({}) differs from the UNet's in_channels {} / \
                 out_channels {} ({})",
                vae.latent_channels,
                vae_what,
                unet.in_channels,
                unet.out_channels,
                unet_what
            );
        }
        Ok(())
    }

    /// Image pixels per latent pixel: 2^(VAE levels − 1) (diffusers' `vae_scale_factor`).
    pub fn vae_scale_factor(&self) -> usize {
        1 << self.vae.config.block_out_channels.len().saturating_sub(1)
    }

    /// The image side diffusers uses when none is given: the UNet's `sample_size` × the VAE
    /// scale factor (64 × 8 = 512 for SD 1.x).
    pub fn default_size(&self) -> usize {
        let s = match &self.unet.cfg.sample_size {
            Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(64) as usize,
            Some(serde_json::Value::Array(a)) => {
                a.first().and_then(|n| n.as_u64()).unwrap_or(64) as usize
            }
            _ => 64,
        };
        s * self.vae_scale_factor()
    }

    /// The shape of the initial latents of a `width`×`height` image.
    pub fn latent_shape(&self, width: usize, height: usize) -> [usize; 4] {
        let f = self.vae_scale_factor();
        [1, self.vae.config.latent_channels, height / f, width / f]
    }

    /// Whether the UNet is an inpainting one (latents + mask + masked image latents in).
    pub fn is_inpainting(&self) -> bool {
        self.unet.cfg.in_channels == 2 * self.vae.config.latent_channels + 1
    }

    /// The text encoder's last hidden state `[1, 77, width]` for `text`, and whether the text
    /// was cut at the 77-token limit (with its length in tokens).
    pub fn encode_text(&self, text: &str) -> Result<(Tensor, Option<usize>)> {
        let tokens = self.tokenizer.encode(text)?;
        let cut = tokens.truncated().then_some(tokens.untruncated);
        Ok((self.text_encoder.forward(&tokens.ids)?, cut))
    }

    /// diffusers' `encode_prompt`: `[negative; prompt]` `[2, 77, width]` under guidance, else
    /// the prompt's `[1, 77, width]`.
    pub fn encode_prompt(
        &self,
        prompt: &str,
        negative_prompt: &str,
        guidance: bool,
        warnings: &mut Vec<String>,
    ) -> Result<Tensor> {
        let (cond, cut) = self.encode_text(prompt)?;
        if let Some(n) = cut {
            warnings.push(format!(
                "the prompt is {n} tokens long; CLIP takes {MAX_TOKENS} (with the start and end \
                 tokens), so the end of the prompt was cut"
            ));
        }
        if !guidance {
            return Ok(cond);
        }
        let (uncond, cut) = self.encode_text(negative_prompt)?;
        if let Some(n) = cut {
            warnings.push(format!(
                "the negative prompt is {n} tokens long; CLIP takes {MAX_TOKENS}, so its end was cut"
            ));
        }
        ops::concat(&[&uncond, &cond], 0)
    }

    /// Checks `p`'s numbers as diffusers' `check_inputs` does.
    pub fn check_params(&self, p: &GenerateParams) -> Result<()> {
        if p.width == 0
            || p.height == 0
            || !p.width.is_multiple_of(8)
            || !p.height.is_multiple_of(8)
        {
            bail!(
                "width and height must be positive multiples of 8, got {}x{}",
                p.width,
                p.height
            );
        }
        let f = self.vae_scale_factor();
        if !p.width.is_multiple_of(f) || !p.height.is_multiple_of(f) {
            bail!(
                "width and height must be multiples of the VAE scale factor {f}, got {}x{}",
                p.width,
                p.height
            );
        }
        if p.steps == 0 {
            bail!("the number of steps must be at least 1");
        }
        if !p.guidance.is_finite() || p.guidance < 0.0 {
            bail!("the guidance scale must be ≥ 0, got {}", p.guidance);
        }
        if let Some(init) = &p.init {
            if matches!(p.latents, Latents::Given(_)) {
                bail!("img2img starts from the init image's latents: give a seed, not latents");
            }
            if !(0.0..=1.0).contains(&init.strength) {
                bail!("the strength must be in [0, 1], got {}", init.strength);
            }
            let want = [1, self.vae.config.in_channels, p.height, p.width];
            if init.image.shape() != want {
                bail!(
                    "the init image must have shape {want:?}, got {:?}",
                    init.image.shape()
                );
            }
            check_runs_a_step(p.steps, init.strength)?;
        }
        if let Some(ip) = &p.inpaint {
            if p.init.is_some() {
                bail!(
                    "give either an img2img init image or an inpainting image and mask, not both"
                );
            }
            if !(ip.strength > 0.0 && ip.strength <= 1.0) {
                bail!("the strength must be in (0, 1], got {}", ip.strength);
            }
            check_runs_a_step(p.steps, ip.strength)?;
            let want = [1, self.vae.config.in_channels, p.height, p.width];
            if ip.image.shape() != want {
                bail!(
                    "the inpainting image must have shape {want:?}, got {:?}",
                    ip.image.shape()
                );
            }
            let want = [1, 1, p.height, p.width];
            if ip.mask.shape() != want {
                bail!(
                    "the mask must have shape {want:?}, got {:?}",
                    ip.mask.shape()
                );
            }
        } else if self.is_inpainting() {
            bail!(
                "this is an inpainting UNet ({} input channels): give an image and a mask \
                 (--init-image and --mask)",
                self.unet.cfg.in_channels
            );
        }
        if let Latents::Given(t) = &p.latents {
            let want = self.latent_shape(p.width, p.height);
            if t.shape() != want {
                bail!(
                    "the latents must have shape {want:?} for a {}x{} image, got {:?}",
                    p.width,
                    p.height,
                    t.shape()
                );
            }
        }
        Ok(())
    }

    /// diffusers' inpainting preparation: the mask binarised (≥ 0.5) and sampled nearest to the
    /// latent size, the masked image (`image · (mask < 0.5)`) and, where needed, the image
    /// encoded and sampled, the initial noise.
    fn prepare_inpaint(
        &self,
        ip: &Inpaint,
        shape: &[usize; 4],
        rng: &mut Rng,
        latents: &Latents,
    ) -> Result<InpaintLatents> {
        let numel: usize = shape.iter().product();
        let [_, _, h, w] = *shape;
        let (ih, iw) = (ip.mask.shape()[2], ip.mask.shape()[3]);
        let m = ip.mask.to_vec()?;
        let keep: Vec<f32> = m.iter().map(|&v| if v < 0.5 { 1.0 } else { 0.0 }).collect();
        let f = self.vae_scale_factor();
        let mut small = vec![0f32; h * w];
        for y in 0..h {
            for x in 0..w {
                small[y * w + x] = 1.0 - keep[(y * f).min(ih - 1) * iw + (x * f).min(iw - 1)];
            }
        }
        let noise = match &ip.noise {
            Some(t) => t.to_vec()?,
            None => rng.normal_vec(2 * numel),
        };
        if noise.len() != 2 * numel {
            bail!(
                "the inpainting noise must have shape [2, {}, {h}, {w}], got {} values",
                shape[1],
                noise.len()
            );
        }
        let init = match latents {
            Latents::Given(t) => ops::lincomb(&[(1.0, t)])?,
            Latents::Seed(_) => Tensor::from_vec(&self.device, shape, rng.normal_vec(numel))?,
        };
        let keep = Tensor::from_vec(&self.device, &[1, 1, ih, iw], keep)?;
        let masked = ops::mul_bcast(&ip.image, &keep)?;
        let sf = self.vae.config.scaling_factor;
        let post = |n: &[f32]| Tensor::from_vec(&self.device, shape, n.to_vec());
        let masked_latents = self.vae.encode(&masked)?.sample(&post(&noise[numel..])?)?;
        let masked_latents = ops::lincomb(&[(sf, &masked_latents)])?;
        let image_latents = if !self.is_inpainting() || ip.strength < 1.0 {
            let z = self
                .vae
                .encode(&ip.image)?
                .sample(&post(&noise[..numel])?)?;
            Some(ops::lincomb(&[(sf, &z)])?)
        } else {
            None
        };
        Ok(InpaintLatents {
            mask: Tensor::from_vec(&self.device, &[1, 1, h, w], small)?,
            masked_latents,
            image_latents,
            noise: init,
            strength: ip.strength,
        })
    }

    /// Text to image (see the module docs).
    pub fn generate(&self, p: &GenerateParams) -> Result<Generated> {
        self.check_params(p)?;
        let mut scheduler = schedulers::from_config(&self.scheduler_config, p.scheduler)?;
        let cfg_on = p.guidance > 1.0;
        let mut warnings = Vec::new();
        let text = self.encode_prompt(p.prompt, p.negative_prompt, cfg_on, &mut warnings)?;

        scheduler.set_timesteps(p.steps)?;
        let timesteps: Vec<f64> = scheduler.timesteps().to_vec();
        let shape = self.latent_shape(p.width, p.height);
        let numel: usize = shape.iter().product();
        let mut rng = match &p.latents {
            Latents::Seed(s) => Rng::new(*s),
            Latents::Given(_) => Rng::new(0),
        };
        let inpaint = match &p.inpaint {
            Some(ip) => Some(self.prepare_inpaint(ip, &shape, &mut rng, &p.latents)?),
            None => None,
        };
        let (mut latents, first) = match (&p.init, &inpaint) {
            (None, Some(ip)) => {
                let first = first_step(p.steps, ip.strength);
                // diffusers' prepare_latents: given latents are the noise, scaled as for text to
                // image; drawn noise starts from pure noise at strength 1, else from the image's
                // latents noised to the first timestep.
                let x = match (&p.latents, &ip.image_latents) {
                    (Latents::Seed(_), Some(z)) if ip.strength < 1.0 => {
                        scheduler.add_noise(z, &ip.noise, first)?
                    }
                    _ => ops::lincomb(&[(scheduler.init_noise_sigma() as f32, &ip.noise)])?,
                };
                (x, first)
            }
            (None, None) => {
                let x = match &p.latents {
                    Latents::Given(t) => ops::lincomb(&[(1.0, t)])?,
                    Latents::Seed(_) => {
                        Tensor::from_vec(&self.device, &shape, rng.normal_vec(numel))?
                    }
                };
                let x = ops::lincomb(&[(scheduler.init_noise_sigma() as f32, &x)])?;
                (x, 0)
            }
            (Some(init), _) => {
                let first = first_step(p.steps, init.strength);
                let noise = match &init.noise {
                    Some(t) => t.to_vec()?,
                    None => rng.normal_vec(2 * numel),
                };
                if noise.len() != 2 * numel {
                    bail!(
                        "the img2img noise must have shape [2, {}, {}, {}], got {} values",
                        shape[1],
                        shape[2],
                        shape[3],
                        noise.len()
                    );
                }
                let post_noise = Tensor::from_vec(&self.device, &shape, noise[..numel].to_vec())?;
                let add = Tensor::from_vec(&self.device, &shape, noise[numel..].to_vec())?;
                let z = self.vae.encode(&init.image)?.sample(&post_noise)?;
                let z = ops::lincomb(&[(self.vae.config.scaling_factor, &z)])?;
                (scheduler.add_noise(&z, &add, first)?, first)
            }
        };

        let bar = if p.progress {
            indicatif::ProgressBar::new((timesteps.len() - first) as u64)
        } else {
            indicatif::ProgressBar::hidden()
        };
        let g = p.guidance;
        for (i, &t) in timesteps.iter().enumerate().skip(first) {
            let input = if cfg_on {
                ops::concat(&[&latents, &latents], 0)?
            } else {
                ops::lincomb(&[(1.0, &latents)])?
            };
            let input = scheduler.scale_model_input(&input, i)?;
            let input = match &inpaint {
                Some(ip) if self.is_inpainting() => {
                    let n = input.shape()[0];
                    let masks = vec![&ip.mask; n];
                    let mask = ops::concat(&masks, 0)?;
                    let imgs = vec![&ip.masked_latents; n];
                    let masked = ops::concat(&imgs, 0)?;
                    ops::concat(&[&input, &mask, &masked], 1)?
                }
                _ => input,
            };
            let noise_pred = self.unet.forward(&input, &[t as f32], &text, None)?;
            let noise_pred = if cfg_on {
                let uncond = ops::narrow(&noise_pred, 0, 0, 1)?;
                let cond = ops::narrow(&noise_pred, 0, 1, 1)?;
                // uncond + g · (cond − uncond)
                let diff = ops::lincomb(&[(1.0, &cond), (-1.0, &uncond)])?;
                ops::lincomb(&[(1.0, &uncond), (g, &diff)])?
            } else {
                noise_pred
            };
            let noise = if scheduler.needs_noise(i) {
                Some(Tensor::from_vec(
                    &self.device,
                    &shape,
                    rng.normal_vec(numel),
                )?)
            } else {
                None
            };
            latents = scheduler.step(&noise_pred, i, &latents, noise.as_ref())?;
            if let Some(ip) = &inpaint
                && let Some(z) = &ip.image_latents
                && !self.is_inpainting()
            {
                // Outside the mask: the image's latents at the next step's noise level.
                let keep = if i + 1 < timesteps.len() {
                    scheduler.add_noise(z, &ip.noise, i + 1)?
                } else {
                    ops::lincomb(&[(1.0, z)])?
                };
                let diff = ops::lincomb(&[(1.0, &latents), (-1.0, &keep)])?;
                latents = ops::add_bcast(&keep, &ops::mul_bcast(&diff, &ip.mask)?)?;
            }
            bar.inc(1);
        }
        bar.finish_and_clear();

        let z = ops::lincomb(&[(1.0 / self.vae.config.scaling_factor, &latents)])?;
        let image = self.vae.decode_with(&z, p.vae_tiling)?;
        Ok(Generated {
            image,
            warnings,
            scheduler: scheduler.class_name(),
        })
    }
}
