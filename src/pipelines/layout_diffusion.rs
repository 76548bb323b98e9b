//! Text → layout: an Imagen-style cascade of two diffusion UNets (diffusers
//! `UNet2DConditionModel`s, trained by tools/train_layout.py) that paints a segmentation map
//! from a sentence.
//!
//!   text states  = layer_norm(MiniLM tokens)          (cross-attention, no parameters)
//!   class vector = pooled MiniLM sentence embedding    (added to the timestep embedding)
//!   base: noise [K, 32, 32] ──DDIM + guidance──▶ scaled one-hot ──argmax──▶ 32² layout
//!   sr:   noise [K, 128, 128] ⧺ nearest×4(q(z_s | one-hot(32² layout)))
//!         class vector ⧺ sinusoid(s)  ──DDIM + guidance──▶ argmax ──▶ 128² layout
//!
//! Classes are the SPADE landscape model's 14 ADE20K ids as scaled one-hot channels (±1).
//! Guidance is classifier-free against the empty sentence; `dynamic_threshold` is Imagen's
//! percentile rule on x̂₀ (diffusers' `thresholding`). `s` is the SR stage's noise-conditioning
//! augmentation level (a timestep of the same schedule; `aug` × 1000).
use crate::backend::Device;
use crate::models::prior::sinusoid;
use crate::models::unet::{UNet2DConditionConfig, UNet2DConditionModel};
use crate::ops::{self, LayerNorm};
use crate::rng::Rng;
use crate::schedulers::{self, SchedulerConfig};
use crate::tensor::Tensor;
use crate::weights::store::WeightStore;
use crate::weights::vars::Vars;
use anyhow::{Context, Result, bail};
use std::path::Path;

/// `layout.json`: how the cascade's tensors are laid out.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct LayoutMeta {
    /// The ADE20K id of each one-hot channel.
    pub ade_ids: Vec<u32>,
    /// Text tokens per sentence.
    pub tokens: usize,
    /// Side of the base stage's layout.
    pub low: usize,
    /// Side of the super-resolution stage's layout.
    pub high: usize,
    /// Width of the augmentation level's sinusoid in the SR class vector.
    pub aug_dim: usize,
    pub text_layer_norm_eps: f32,
}

/// A sentence as the cascade takes it.
pub struct TextCond {
    /// `[1, tokens, width]`, layer-normed.
    pub tokens: Tensor,
    /// `[1, width]`.
    pub pooled: Tensor,
}

#[derive(Clone, Debug)]
pub struct LayoutParams {
    pub steps: usize,
    /// Classifier-free guidance of the base stage (≤ 1: none).
    pub guidance: f32,
    /// Guidance of the super-resolution stage.
    pub sr_guidance: f32,
    /// Imagen's static thresholding: x̂₀ clipped to [-1, 1] at every step (diffusers'
    /// `clip_sample`).
    pub static_threshold: bool,
    /// Imagen's dynamic thresholding at this percentile (e.g. 0.995; diffusers' `thresholding`).
    /// Neither: x̂₀ is used as predicted.
    pub dynamic_threshold: Option<f64>,
    /// The SR stage's augmentation level in [0, 1) (fraction of the schedule).
    pub aug: f64,
    /// Skip the SR stage (the base layout upsampled by nearest).
    pub base_only: bool,
}

impl Default for LayoutParams {
    fn default() -> Self {
        LayoutParams {
            // 10 steps per stage: the prompt pass rate of 20 at half the time
            // (docs/text_to_image.md).
            steps: 10,
            // No guidance: on the disjoint dev prompts it passes more prompts than guidance 3
            // (78.3 against 75.0 %) with more varied layouts, in one UNet pass per step
            // (docs/text_to_image.md).
            guidance: 1.0,
            sr_guidance: 1.0,
            static_threshold: false,
            dynamic_threshold: None,
            aug: 0.1,
            base_only: false,
        }
    }
}

/// The noise a run starts from (drawn from a seed, or given: the reference fixtures).
pub struct LayoutNoise {
    /// `[1, K, low, low]`.
    pub base: Tensor,
    /// `[1, K, high, high]`.
    pub sr: Tensor,
    /// `[1, K, low, low]`: the augmentation's noise.
    pub aug: Tensor,
}

/// A generated layout.
pub struct Layout {
    /// The base stage's final sample `[1, K, low, low]` (before argmax).
    pub low_sample: Tensor,
    /// The SR stage's `[1, K, high, high]` (absent with `base_only`).
    pub high_sample: Option<Tensor>,
    /// The layout at `high`² in ADE20K ids, row-major.
    pub labels: Vec<u32>,
    pub size: usize,
}

pub struct LayoutCascade {
    pub base: UNet2DConditionModel,
    pub sr: UNet2DConditionModel,
    pub scheduler: SchedulerConfig,
    pub meta: LayoutMeta,
    text_norm: LayerNorm,
    device: Device,
}

/// The built-in cascade's files (tools/train_layout.py export, f16 weights).
#[cfg(builtin_layout)]
mod builtin {
    pub static BASE: &[u8] =
        include_bytes!("../../assets/layout/base/diffusion_pytorch_model.safetensors");
    pub static BASE_CONFIG: &str = include_str!("../../assets/layout/base/config.json");
    pub static SR: &[u8] =
        include_bytes!("../../assets/layout/sr/diffusion_pytorch_model.safetensors");
    pub static SR_CONFIG: &str = include_str!("../../assets/layout/sr/config.json");
    pub static SCHEDULER: &str = include_str!("../../assets/layout/scheduler_config.json");
    pub static META: &str = include_str!("../../assets/layout/layout.json");
}

impl LayoutCascade {
    /// The cascade compiled into the binary.
    pub fn builtin(device: &Device) -> Result<LayoutCascade> {
        #[cfg(builtin_layout)]
        {
            use builtin::*;
            let base = WeightStore::from_static(BASE, "the built-in layout base model")?;
            let sr = WeightStore::from_static(SR, "the built-in layout SR model")?;
            Self::from_parts(
                (&base, BASE_CONFIG),
                (&sr, SR_CONFIG),
                SCHEDULER,
                META,
                device,
            )
        }
        #[cfg(not(builtin_layout))]
        {
            let _ = device;
            bail!(
                "this build has no built-in layout model (assets/layout/ was missing); pass \
                 --layout-model DIR"
            )
        }
    }

    /// A folder as tools/train_layout.py exports it: `base/` and `sr/` (config.json +
    /// diffusion_pytorch_model.safetensors), scheduler_config.json, layout.json.
    pub fn from_folder(dir: &Path, device: &Device) -> Result<LayoutCascade> {
        let read = |rel: &str| {
            std::fs::read_to_string(dir.join(rel))
                .with_context(|| format!("cannot read {}", dir.join(rel).display()))
        };
        let weights = |stage: &str| {
            WeightStore::load(&dir.join(stage).join("diffusion_pytorch_model.safetensors"))
        };
        let (base, sr) = (weights("base")?, weights("sr")?);
        Self::from_parts(
            (&base, &read("base/config.json")?),
            (&sr, &read("sr/config.json")?),
            &read("scheduler_config.json")?,
            &read("layout.json")?,
            device,
        )
    }

    fn from_parts(
        base: (&WeightStore, &str),
        sr: (&WeightStore, &str),
        scheduler: &str,
        meta: &str,
        device: &Device,
    ) -> Result<LayoutCascade> {
        let meta: LayoutMeta = serde_json::from_str(meta).context("layout.json")?;
        let k = meta.ade_ids.len();
        let unet = |(store, cfg): (&WeightStore, &str), what: &str| -> Result<_> {
            let cfg: UNet2DConditionConfig = serde_json::from_str(cfg)
                .with_context(|| format!("{}: the {what} config", store.source))?;
            UNet2DConditionModel::load(&Vars::new(store, device), &cfg)
        };
        let (base, sr) = (unet(base, "base")?, unet(sr, "SR")?);
        let (cb, cs) = (&base.cfg, &sr.cfg);
        if k == 0
            || cb.in_channels != k
            || cb.out_channels != k
            || cs.in_channels != 2 * k
            || cs.out_channels != k
            || meta.low == 0
            || meta.high % meta.low != 0
        {
            bail!(
                "layout cascade: {k} classes need a base UNet of {k} → {k} channels and an SR \
                 UNet of {} → {k}, with the high size a multiple of the low one; got {} → {}, \
                 {} → {}, {} and {}",
                2 * k,
                cb.in_channels,
                cb.out_channels,
                cs.in_channels,
                cs.out_channels,
                meta.low,
                meta.high
            );
        }
        let scheduler = SchedulerConfig::from_json(scheduler)?;
        let w = text_width(&base)?;
        let text_norm = LayerNorm::new(
            device,
            &vec![1.0; w],
            &vec![0.0; w],
            meta.text_layer_norm_eps,
        )?;
        Ok(LayoutCascade {
            base,
            sr,
            scheduler,
            meta,
            text_norm,
            device: device.clone(),
        })
    }

    pub fn classes(&self) -> usize {
        self.meta.ade_ids.len()
    }

    /// A sentence encoder's output `[1, tokens, width]` and pooled `[width]` as the cascade takes
    /// them (the token states layer-normed).
    pub fn text_cond(&self, tokens: &Tensor, pooled: &[f32]) -> Result<TextCond> {
        let s = tokens.shape();
        if s.len() != 3 || s[0] != 1 || s[1] != self.meta.tokens || s[2] != pooled.len() {
            bail!(
                "layout cascade: text must be [1, {}, width] with a pooled vector of that width, \
                 got {s:?} and {}",
                self.meta.tokens,
                pooled.len()
            );
        }
        let (l, w) = (s[1], s[2]);
        let rows = ops::lincomb(&[(1.0, tokens)])?.reshape(&[l, w])?;
        Ok(TextCond {
            tokens: self.text_norm.forward(&rows)?.reshape(&[1, l, w])?,
            pooled: Tensor::from_vec(&self.device, &[1, w], pooled.to_vec())?,
        })
    }

    /// Noise for a run from `seed` (base, SR and augmentation, in that order).
    pub fn noise(&self, seed: u64) -> Result<LayoutNoise> {
        let (k, lo, hi) = (self.classes(), self.meta.low, self.meta.high);
        let mut rng = Rng::new(seed);
        let mut t = |side: usize| {
            Tensor::from_vec(
                &self.device,
                &[1, k, side, side],
                rng.normal_vec(k * side * side),
            )
        };
        Ok(LayoutNoise {
            base: t(lo)?,
            sr: t(hi)?,
            aug: t(lo)?,
        })
    }

    /// Runs the cascade (see the module docs). `progress` is called after every UNet step.
    pub fn generate(
        &self,
        text: &TextCond,
        empty: &TextCond,
        p: &LayoutParams,
        noise: &LayoutNoise,
        progress: &mut dyn FnMut(),
    ) -> Result<Layout> {
        if p.steps == 0 || p.steps > 1000 {
            bail!("layout steps must be 1 to 1000, got {}", p.steps);
        }
        if !(0.0..1.0).contains(&p.aug) {
            bail!("the SR augmentation level must be in [0, 1), got {}", p.aug);
        }
        if let Some(r) = p.dynamic_threshold
            && !(r > 0.0 && r <= 1.0)
        {
            bail!("--dynamic-threshold must be a percentile in (0, 1], got {r}");
        }
        if p.static_threshold && p.dynamic_threshold.is_some() {
            bail!("static and dynamic thresholding exclude each other; choose one");
        }
        let (k, lo, hi) = (self.classes(), self.meta.low, self.meta.high);
        for (t, side, what) in [
            (&noise.base, lo, "base"),
            (&noise.sr, hi, "SR"),
            (&noise.aug, lo, "augmentation"),
        ] {
            if t.shape() != [1, k, side, side] {
                bail!(
                    "the {what} noise must be [1, {k}, {side}, {side}], got {:?}",
                    t.shape()
                );
            }
        }
        let low_sample = self.denoise(
            &self.base,
            &noise.base,
            None,
            (&text.pooled, &empty.pooled),
            text,
            empty,
            p.guidance,
            p,
            progress,
        )?;
        let low = argmax_channels(&low_sample.to_vec()?, k, lo * lo);
        if p.base_only {
            let f = hi / lo;
            let labels = (0..hi * hi)
                .map(|i| self.meta.ade_ids[low[(i / hi / f) * lo + (i % hi) / f] as usize])
                .collect();
            return Ok(Layout {
                low_sample,
                high_sample: None,
                labels,
                size: hi,
            });
        }
        // Noise-conditioning augmentation: the low-res one-hot at timestep s of the schedule.
        let one_hot = one_hot_scaled(&low, k);
        let one_hot = Tensor::from_vec(&self.device, &[1, k, lo, lo], one_hot)?;
        let s = (p.aug * self.scheduler.num_train_timesteps as f64).floor() as usize;
        let cond = if s > 0 {
            let schedule =
                schedulers::NoiseSchedule::new(&self.scheduler, "DDIMScheduler", DDIM_BETAS)?;
            let a =
                *schedule.alphas_cumprod.get(s).with_context(|| {
                    format!("the augmentation timestep {s} is beyond the schedule")
                })? as f32;
            ops::lincomb(&[(a.sqrt(), &one_hot), ((1.0 - a).sqrt(), &noise.aug)])?
        } else {
            one_hot
        };
        let cond = ops::resize_nearest(&cond, hi, hi, ops::NearestRule::Torch)?;
        let aug = sinusoid(s as f64, self.meta.aug_dim);
        let aug = Tensor::from_vec(&self.device, &[1, aug.len()], aug)?;
        let class_c = ops::concat(&[&text.pooled, &aug], 1)?;
        let class_u = ops::concat(&[&empty.pooled, &aug], 1)?;
        let high_sample = self.denoise(
            &self.sr,
            &noise.sr,
            Some(&cond),
            (&class_c, &class_u),
            text,
            empty,
            p.sr_guidance,
            p,
            progress,
        )?;
        let high = argmax_channels(&high_sample.to_vec()?, k, hi * hi);
        Ok(Layout {
            low_sample,
            labels: high
                .iter()
                .map(|&c| self.meta.ade_ids[c as usize])
                .collect(),
            high_sample: Some(high_sample),
            size: hi,
        })
    }

    /// DDIM from `noise` with classifier-free guidance `g` against the empty sentence.
    #[allow(clippy::too_many_arguments)]
    fn denoise(
        &self,
        unet: &UNet2DConditionModel,
        noise: &Tensor,
        cond: Option<&Tensor>,
        (class_c, class_u): (&Tensor, &Tensor),
        text: &TextCond,
        empty: &TextCond,
        g: f32,
        p: &LayoutParams,
        progress: &mut dyn FnMut(),
    ) -> Result<Tensor> {
        let mut cfg = self.scheduler.clone();
        if let Some(r) = p.dynamic_threshold {
            cfg.thresholding = true;
            cfg.dynamic_thresholding_ratio = r;
            // Imagen's rule: s = max(1, percentile), with no upper cap. Diffusers caps s at
            // `sample_max_value` (1.0 in these configs), which would make it static clipping.
            cfg.sample_max_value = f64::INFINITY;
        }
        if p.static_threshold {
            cfg.clip_sample = Some(true);
            cfg.clip_sample_range = 1.0;
        }
        let mut scheduler = schedulers::from_config(&cfg, None)?;
        scheduler.set_timesteps(p.steps)?;
        let guided = g > 1.0;
        let (ctx, class) = if guided {
            (
                ops::concat(&[&text.tokens, &empty.tokens], 0)?,
                ops::concat(&[class_c, class_u], 0)?,
            )
        } else {
            (
                ops::lincomb(&[(1.0, &text.tokens)])?,
                ops::lincomb(&[(1.0, class_c)])?,
            )
        };
        let mut x = ops::lincomb(&[(scheduler.init_noise_sigma() as f32, noise)])?;
        let timesteps = scheduler.timesteps().to_vec();
        for (i, &t) in timesteps.iter().enumerate() {
            let input = scheduler.scale_model_input(&x, i)?;
            let input = match cond {
                Some(c) => ops::concat(&[&input, c], 1)?,
                None => input,
            };
            let input = if guided {
                ops::concat(&[&input, &input], 0)?
            } else {
                input
            };
            let out = unet.forward(&input, &[t as f32], &ctx, Some(&class))?;
            let out = if guided {
                let c = ops::narrow(&out, 0, 0, 1)?;
                let u = ops::narrow(&out, 0, 1, 1)?;
                ops::lincomb(&[(1.0 - g, &u), (g, &c)])?
            } else {
                out
            };
            x = scheduler.step(&out, i, &x, None)?;
            progress();
        }
        Ok(x)
    }
}

/// DDIMScheduler's default (beta_start, beta_end, beta_schedule).
const DDIM_BETAS: (f64, f64, &str) = (0.0001, 0.02, "linear");

/// The cross-attention width of a UNet (its `cross_attention_dim`, one value for all blocks).
fn text_width(unet: &UNet2DConditionModel) -> Result<usize> {
    let dims = unet
        .cfg
        .cross_attention_dim
        .spread(1, "cross_attention_dim")?;
    Ok(dims[0])
}

/// Per pixel, the channel with the largest value (`[K, n]` row-major → n indices; the first on
/// ties, as torch.argmax).
pub fn argmax_channels(x: &[f32], k: usize, n: usize) -> Vec<u32> {
    (0..n)
        .map(|i| {
            (0..k).fold(0usize, |best, c| {
                if x[c * n + i] > x[best * n + i] {
                    c
                } else {
                    best
                }
            }) as u32
        })
        .collect()
}

/// Class indices → `[K, n]` scaled one-hot (+1 for the class, −1 elsewhere).
pub fn one_hot_scaled(idx: &[u32], k: usize) -> Vec<f32> {
    let n = idx.len();
    let mut out = vec![-1.0; k * n];
    for (i, &c) in idx.iter().enumerate() {
        out[c as usize * n + i] = 1.0;
    }
    out
}
