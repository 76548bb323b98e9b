//! The built-in text-to-image stack, no download: a sentence → the frozen MiniLM encoder → the
//! layout cascade (a 128² segmentation map in ADE20K ids, [`super::layout_diffusion`]) and the
//! look prior (the style z, [`crate::models::prior`]) → the built-in SPADE landscape model
//! renders it. The layout is a map like any other: `render` and `paint --map` open it.
use super::layout_diffusion::{LayoutCascade, LayoutParams};
use super::spade::{SpadePipeline, ZSource};
use crate::backend::{Device, WeightStorage};
use crate::io::map_png::{MapImage, Pixels};
use crate::models::bert::{SentenceEmbedding, SentenceEncoder};
use crate::models::prior::{LookPrior, PriorConfig};
use crate::models::spade::input;
use crate::ops;
use crate::rng::Rng;
use crate::schedulers::{self, SchedulerConfig};
use crate::tensor::Tensor;
use crate::weights::store::WeightStore;
use crate::weights::vars::Vars;
use anyhow::{Context, Result, anyhow};
use std::path::Path;
use std::time::{Duration, Instant};

pub struct TextToImage {
    pub encoder: SentenceEncoder,
    pub cascade: LayoutCascade,
    /// The look prior; without it, z is drawn from N(0, I).
    pub prior: Option<Prior>,
    pub spade: SpadePipeline,
    /// The empty sentence's encoding: guidance's unconditional input.
    empty: SentenceEmbedding,
}

/// The built-in look prior (tools/train_prior.py export).
#[cfg(builtin_prior)]
static PRIOR: Option<&[u8]> = Some(include_bytes!("../../assets/prior.safetensors"));
#[cfg(not(builtin_prior))]
static PRIOR: Option<&[u8]> = None;

/// The look prior with its sampler.
pub struct Prior {
    pub model: LookPrior,
    pub scheduler: SchedulerConfig,
}

impl Prior {
    pub fn from_store(store: &WeightStore, device: &Device) -> Result<Prior> {
        let cfg = store
            .metadata
            .get("prior_config")
            .ok_or_else(|| anyhow!("{}: no prior_config in the header", store.source))?;
        let cfg: PriorConfig =
            serde_json::from_str(cfg).with_context(|| format!("{}: prior_config", store.source))?;
        let scheduler = SchedulerConfig::from_json(&cfg.scheduler.to_string())?;
        let v = Vars::new(store, device);
        let model = LookPrior::load(&v, &cfg)?;
        v.finish("")?;
        Ok(Prior { model, scheduler })
    }

    /// The built-in prior, if this build has one.
    pub fn builtin(device: &Device) -> Result<Option<Prior>> {
        PRIOR
            .map(|b| {
                Self::from_store(
                    &WeightStore::from_static(b, "the built-in look prior")?,
                    device,
                )
            })
            .transpose()
    }

    /// z `[1, z_dim]` from `noise` `[1, z_dim]` by DDIM with classifier-free guidance `g`
    /// against the empty sentence (the model predicts x̂₀).
    pub fn sample(
        &self,
        text: &Tensor,
        empty: &Tensor,
        noise: &Tensor,
        steps: usize,
        g: f32,
    ) -> Result<Tensor> {
        let mut sch = schedulers::from_config(&self.scheduler, None)?;
        sch.set_timesteps(steps)?;
        let ctx = ops::concat(&[text, empty], 0)?;
        let mut x = ops::lincomb(&[(sch.init_noise_sigma() as f32, noise)])?;
        for (i, &t) in sch.timesteps().to_vec().iter().enumerate() {
            let both = self
                .model
                .forward(&ops::concat(&[&x, &x], 0)?, t as f32, &ctx)?;
            let c = ops::narrow(&both, 0, 0, 1)?;
            let u = ops::narrow(&both, 0, 1, 1)?;
            let out = ops::lincomb(&[(1.0 - g, &u), (g, &c)])?;
            x = sch.step(&out, i, &x, None)?;
        }
        Ok(x)
    }
}

/// A prior trained on N(0, I) draws (`targets: "pool"`) picks z's direction; guidance can push
/// its length far past the draws' (|z| ≈ √d), where the generator blows out, so z is put back
/// at length √d. A zero vector is left as it is.
fn on_gaussian_shell(z: &mut [f32]) {
    let norm = z.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        let s = (z.len() as f32).sqrt() / norm;
        z.iter_mut().for_each(|v| *v *= s);
    }
}

/// Steps and guidance of the look prior. With the built-in prior (trained on the landscape
/// model's encoder means) a look classifier reads the named look off 70.3 % of the images at
/// guidance 4 (docs/text_to_image.md); other weights are not measured for it.
pub const PRIOR_STEPS: usize = 20;
pub const PRIOR_GUIDANCE: f32 = 4.0;

/// Wall-clock time per stage.
#[derive(Clone, Copy, Debug, Default)]
pub struct StageTimes {
    pub text: Duration,
    pub layout: Duration,
    pub prior: Duration,
    pub render: Duration,
}

pub struct TextToImageOutput {
    /// The layout, `size`² ADE20K ids, row-major.
    pub labels: Vec<u32>,
    pub size: usize,
    /// The rendered image `[3, h, w]` in [-1, 1] (before quantisation).
    pub image: Vec<f32>,
    pub image_size: (usize, usize),
    pub times: StageTimes,
    /// Whether the prompt lost tokens to the encoder's length.
    pub truncated: bool,
}

impl TextToImage {
    /// MiniLM, the layout cascade and the landscape model, all compiled into the binary.
    pub fn builtin(device: &Device, storage: WeightStorage) -> Result<TextToImage> {
        Self::builtin_parts(device, storage, None)
    }

    /// The built-in stack with the layout cascade from `layout_model` (a tools/train_layout.py
    /// export folder) when given.
    pub fn builtin_parts(
        device: &Device,
        storage: WeightStorage,
        layout_model: Option<&Path>,
    ) -> Result<TextToImage> {
        let store = super::spade::load_store(None)?;
        let cascade = match layout_model {
            Some(dir) => LayoutCascade::from_folder(dir, device)?,
            None => LayoutCascade::builtin(device)?,
        };
        let encoder = SentenceEncoder::builtin(device)?;
        let empty = encoder.encode("", cascade.meta.tokens)?;
        Ok(TextToImage {
            encoder,
            cascade,
            prior: Prior::builtin(device)?,
            spade: SpadePipeline::from_store(&store, device, storage)?,
            empty,
        })
    }

    /// The UNet steps a run makes (for a progress bar).
    pub fn unet_steps(&self, p: &LayoutParams) -> usize {
        p.steps * if p.base_only { 1 } else { 2 }
    }

    /// `prompt` → layout → image, from `seed` (the layout's noise and the style z).
    pub fn generate(
        &self,
        prompt: &str,
        p: &LayoutParams,
        seed: u64,
        progress: &mut dyn FnMut(),
    ) -> Result<TextToImageOutput> {
        let mut times = StageTimes::default();
        let t = Instant::now();
        let len = self.cascade.meta.tokens;
        let text = self.encoder.encode(prompt, len)?;
        let empty = &self.empty;
        let text_c = self.cascade.text_cond(&text.tokens, &text.pooled)?;
        let empty_c = self.cascade.text_cond(&empty.tokens, &empty.pooled)?;
        times.text = t.elapsed();

        let t = Instant::now();
        let noise = self.cascade.noise(seed)?;
        let layout = self
            .cascade
            .generate(&text_c, &empty_c, p, &noise, progress)?;
        times.layout = t.elapsed();

        let t = Instant::now();
        let z = match &self.prior {
            Some(prior) => {
                let d = prior.model.cfg.z_dim;
                let noise = Rng::new(seed ^ 0x5a5a_5a5a).normal_vec(d);
                let noise = Tensor::from_vec(&self.spade.device, &[1, d], noise)?;
                let pooled =
                    |v: &[f32]| Tensor::from_vec(&self.spade.device, &[1, v.len()], v.to_vec());
                let z = prior.sample(
                    &pooled(&text.pooled)?,
                    &pooled(&empty.pooled)?,
                    &noise,
                    PRIOR_STEPS,
                    PRIOR_GUIDANCE,
                )?;
                let mut z = z.to_vec()?;
                if prior.model.cfg.targets.as_deref() == Some("pool") {
                    on_gaussian_shell(&mut z);
                }
                ZSource::Given(z)
            }
            None => ZSource::Seed(seed),
        };
        times.prior = t.elapsed();

        let t = Instant::now();
        let map = MapImage {
            width: layout.size,
            height: layout.size,
            pixels: Pixels::Ids(layout.labels.clone()),
        };
        let prepared = input::prepare(&self.spade.cfg, &map, "the generated layout", None, None)?;
        let (image, image_size) = self.spade.render_seeded(&prepared, Some(&z), seed)?;
        times.render = t.elapsed();
        Ok(TextToImageOutput {
            labels: layout.labels,
            size: layout.size,
            image,
            image_size,
            times,
            truncated: text.truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::on_gaussian_shell;

    #[test]
    fn gaussian_shell_keeps_the_direction_at_length_sqrt_d() {
        let mut z = vec![3.0f32, 0.0, -4.0, 0.0];
        on_gaussian_shell(&mut z);
        assert_eq!(z, vec![1.2, 0.0, -1.6, 0.0]); // |z| = 5 → 2 = √4
        let mut zero = vec![0.0f32; 4];
        on_gaussian_shell(&mut zero);
        assert_eq!(zero, vec![0.0; 4]);
    }
}
