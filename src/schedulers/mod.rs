//! Diffusion samplers ("schedulers"), one file per Hugging Face diffusers scheduler class and
//! exact to it: the same timesteps, sigmas and step arithmetic.
//!
//! - [`ddim`]: `DDIMScheduler` (Song et al. 2020, η-DDIM).
//! - [`pndm`]: `PNDMScheduler` as Stable Diffusion 1.x runs it: PLMS, `skip_prk_steps`.
//! - [`euler_discrete`], [`euler_ancestral_discrete`]: Karras et al. 2022's Euler (Algorithm 2
//!   without churn) and k-diffusion's ancestral Euler, on σ = √((1-ᾱ)/ᾱ).
//! - [`dpmsolver_multistep`]: DPM-Solver++ (Lu et al. 2022), 1st/2nd order multistep, optional
//!   Karras sigmas and the SDE variant.
//! - [`lcm`]: `LCMScheduler` (Luo et al. 2023, latent consistency models).
//!
//! All share one interface ([`Scheduler`]): `set_timesteps(n)`, then for `i` in
//! `0..timesteps().len()` the pipeline evaluates the model at `timesteps()[i]` on
//! `scale_model_input(x, i)` and calls `step(model_output, i, x, noise)`. Stochastic steps take
//! their noise from the caller ([`Scheduler::needs_noise`]) so runs are reproducible with our own
//! RNG. Schedule coefficients are computed on the host in f64 from diffusers' f32 tables; tensors
//! are touched only through [`ops::lincomb`], so every step runs on either device.
//!
//! A checkpoint's `scheduler_config.json` deserialises into [`SchedulerConfig`] and
//! [`from_config`] builds its `_class_name` class, or the class a `--scheduler` name picks (as
//! diffusers' `Class.from_config(pipe.scheduler.config)`: keys the file does not set take the new
//! class's defaults).
pub mod ddim;
pub mod dpmsolver_multistep;
pub mod euler_ancestral_discrete;
pub mod euler_discrete;
pub mod lcm;
pub mod pndm;
#[cfg(test)]
mod tests;

use crate::ops;
use crate::tensor::Tensor;
use anyhow::{Context, Result, bail};

pub use ddim::DdimScheduler;
pub use dpmsolver_multistep::DpmSolverMultistepScheduler;
pub use euler_ancestral_discrete::EulerAncestralDiscreteScheduler;
pub use euler_discrete::EulerDiscreteScheduler;
pub use lcm::LcmScheduler;
pub use pndm::PndmScheduler;

/// The common interface of the schedulers.
pub trait Scheduler: Send {
    /// The diffusers class this scheduler reproduces (`"DDIMScheduler"`, ...).
    fn class_name(&self) -> &'static str;
    /// Sets up `num_inference_steps` denoising steps (resets multistep state).
    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()>;
    /// The model's timestep at each step (integers, or f32 values for the Euler schedulers).
    fn timesteps(&self) -> &[f64];
    /// σ at each step and one after the last (schedulers on the σ parametrisation).
    fn sigmas(&self) -> Option<&[f64]> {
        None
    }
    /// The standard deviation the initial noise is scaled by.
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }
    /// The factor [`Scheduler::scale_model_input`] multiplies step `i`'s input by.
    fn model_input_scale(&self, _i: usize) -> f64 {
        1.0
    }
    /// The model input at step `i` (`sample / √(σᵢ² + 1)` for the Euler schedulers).
    fn scale_model_input(&self, sample: &Tensor, i: usize) -> Result<Tensor> {
        ops::lincomb(&[(self.model_input_scale(i) as f32, sample)])
    }
    /// Whether step `i` adds noise (then `step` needs a standard-normal `noise` tensor).
    fn needs_noise(&self, _i: usize) -> bool {
        false
    }
    /// One denoising step from `sample` at `timesteps()[i]` to the next: diffusers'
    /// `step(model_output, timesteps[i], sample).prev_sample`. Steps run in order from the first
    /// one called (which may be past 0, for img2img).
    fn step(
        &mut self,
        model_output: &Tensor,
        i: usize,
        sample: &Tensor,
        noise: Option<&Tensor>,
    ) -> Result<Tensor>;
    /// The forward process to step `i`'s noise level (img2img's start): diffusers' `add_noise`.
    fn add_noise(&self, original: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor>;
    /// Sets DDIM's η (the weight of fresh noise per step); other schedulers have none.
    fn set_eta(&mut self, eta: f64) -> Result<()> {
        if eta != 0.0 {
            bail!(
                "eta {eta}: only DDIM has an η (this is {})",
                self.class_name()
            );
        }
        Ok(())
    }
}

/// `scheduler_config.json`, field names verbatim. Fields whose diffusers default is the same in
/// every supported class carry it as a serde default; the ones whose default differs by class are
/// `Option`s that each scheduler resolves to its class's default. Unknown keys are ignored.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name", default)]
    pub class_name: Option<String>,
    #[serde(default = "d::num_train_timesteps")]
    pub num_train_timesteps: usize,
    /// 0.0001 (0.00085 in LCMScheduler).
    #[serde(default)]
    pub beta_start: Option<f64>,
    /// 0.02 (0.012 in LCMScheduler).
    #[serde(default)]
    pub beta_end: Option<f64>,
    /// `linear` (`scaled_linear` in LCMScheduler), `scaled_linear` or `squaredcos_cap_v2`.
    #[serde(default)]
    pub beta_schedule: Option<String>,
    /// β per training timestep, replacing the schedule.
    #[serde(default)]
    pub trained_betas: Option<Vec<f64>>,
    /// `epsilon`, `v_prediction` or `sample` (which ones a class supports differs).
    #[serde(default = "d::prediction_type")]
    pub prediction_type: String,
    /// `leading` (DDIM, PNDM, LCM) or `linspace` (Euler, Euler-a, DPM-Solver), or `trailing`.
    #[serde(default)]
    pub timestep_spacing: Option<String>,
    #[serde(default)]
    pub steps_offset: usize,
    /// ᾱ before the first training step is 1 (else ᾱ₀): DDIM/LCM true, PNDM false.
    #[serde(default)]
    pub set_alpha_to_one: Option<bool>,
    /// Clamp x̂₀ to ±clip_sample_range: DDIM true, LCM false.
    #[serde(default)]
    pub clip_sample: Option<bool>,
    #[serde(default = "d::one")]
    pub clip_sample_range: f64,
    #[serde(default)]
    pub skip_prk_steps: bool,
    #[serde(default)]
    pub thresholding: bool,
    #[serde(default = "d::dynamic_thresholding_ratio")]
    pub dynamic_thresholding_ratio: f64,
    #[serde(default = "d::one")]
    pub sample_max_value: f64,
    #[serde(default)]
    pub rescale_betas_zero_snr: bool,
    // Euler and DPM-Solver.
    #[serde(default)]
    pub use_karras_sigmas: bool,
    #[serde(default)]
    pub use_exponential_sigmas: bool,
    #[serde(default)]
    pub use_beta_sigmas: bool,
    #[serde(default)]
    pub sigma_min: Option<f64>,
    #[serde(default)]
    pub sigma_max: Option<f64>,
    /// `zero` or `sigma_min`: the σ after the last step.
    #[serde(default = "d::final_sigmas_type")]
    pub final_sigmas_type: String,
    #[serde(default = "d::interpolation_type")]
    pub interpolation_type: String,
    #[serde(default = "d::timestep_type")]
    pub timestep_type: String,
    // DPM-Solver.
    #[serde(default = "d::algorithm_type")]
    pub algorithm_type: String,
    #[serde(default = "d::solver_order")]
    pub solver_order: usize,
    #[serde(default = "d::solver_type")]
    pub solver_type: String,
    #[serde(default = "d::yes")]
    pub lower_order_final: bool,
    #[serde(default)]
    pub euler_at_final: bool,
    /// Clips λ(t) from below (diffusers' default −∞ is `None`; JSON has no infinity).
    #[serde(default)]
    pub lambda_min_clipped: Option<f64>,
    #[serde(default)]
    pub variance_type: Option<String>,
    #[serde(default)]
    pub use_lu_lambdas: bool,
    #[serde(default)]
    pub use_flow_sigmas: bool,
    // LCM.
    #[serde(default = "d::original_inference_steps")]
    pub original_inference_steps: usize,
    #[serde(default = "d::timestep_scaling")]
    pub timestep_scaling: f64,
}

/// diffusers' defaults shared by the supported classes.
mod d {
    pub fn num_train_timesteps() -> usize {
        1000
    }
    pub fn prediction_type() -> String {
        "epsilon".into()
    }
    pub fn one() -> f64 {
        1.0
    }
    pub fn yes() -> bool {
        true
    }
    pub fn dynamic_thresholding_ratio() -> f64 {
        0.995
    }
    pub fn final_sigmas_type() -> String {
        "zero".into()
    }
    pub fn interpolation_type() -> String {
        "linear".into()
    }
    pub fn timestep_type() -> String {
        "discrete".into()
    }
    pub fn algorithm_type() -> String {
        "dpmsolver++".into()
    }
    pub fn solver_order() -> usize {
        2
    }
    pub fn solver_type() -> String {
        "midpoint".into()
    }
    pub fn original_inference_steps() -> usize {
        50
    }
    pub fn timestep_scaling() -> f64 {
        10.0
    }
}

impl SchedulerConfig {
    /// Parses a `scheduler_config.json` text.
    pub fn from_json(text: &str) -> Result<SchedulerConfig> {
        serde_json::from_str(text).context("parsing scheduler_config.json")
    }

    /// Reads a `scheduler_config.json` file.
    pub fn load(path: &std::path::Path) -> Result<SchedulerConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_json(&text).with_context(|| format!("in {}", path.display()))
    }
}

/// The `--scheduler` names.
pub const SCHEDULER_NAMES: &[&str] = &[
    "ddim",
    "pndm",
    "euler",
    "euler-a",
    "dpm++2m",
    "dpm++2m-karras",
    "lcm",
];

/// The diffusers classes [`from_config`] builds.
pub const CLASS_NAMES: &[&str] = &[
    "DDIMScheduler",
    "PNDMScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "LCMScheduler",
];

/// The scheduler `config` describes: its `_class_name`, or the one `name` (a `--scheduler`
/// value, [`SCHEDULER_NAMES`]) picks. `dpm++2m` forces `algorithm_type: dpmsolver++`,
/// `solver_order: 2` and `use_karras_sigmas: false`; `dpm++2m-karras` the same with Karras sigmas.
pub fn from_config(config: &SchedulerConfig, name: Option<&str>) -> Result<Box<dyn Scheduler>> {
    let mut cfg = config.clone();
    let class = match name {
        Some(n) => match n {
            "ddim" => "DDIMScheduler",
            "pndm" => "PNDMScheduler",
            "euler" => "EulerDiscreteScheduler",
            "euler-a" => "EulerAncestralDiscreteScheduler",
            "dpm++2m" | "dpm++2m-karras" => {
                cfg.algorithm_type = "dpmsolver++".into();
                cfg.solver_order = 2;
                cfg.use_karras_sigmas = n == "dpm++2m-karras";
                "DPMSolverMultistepScheduler"
            }
            "lcm" => "LCMScheduler",
            other => bail!(
                "--scheduler '{other}' is not supported (supported: {})",
                SCHEDULER_NAMES.join(", ")
            ),
        },
        None => match cfg.class_name.as_deref() {
            Some(c) => c,
            None => bail!(
                "scheduler_config.json has no _class_name; choose a scheduler ({})",
                SCHEDULER_NAMES.join(", ")
            ),
        },
    };
    Ok(match class {
        "DDIMScheduler" => Box::new(DdimScheduler::new(&cfg)?),
        "PNDMScheduler" => Box::new(PndmScheduler::new(&cfg)?),
        "EulerDiscreteScheduler" => Box::new(EulerDiscreteScheduler::new(&cfg)?),
        "EulerAncestralDiscreteScheduler" => Box::new(EulerAncestralDiscreteScheduler::new(&cfg)?),
        "DPMSolverMultistepScheduler" => Box::new(DpmSolverMultistepScheduler::new(&cfg)?),
        "LCMScheduler" => Box::new(LcmScheduler::new(&cfg)?),
        other => bail!(
            "scheduler_config: _class_name '{other}' is not supported (supported: {}; or \
             --scheduler {})",
            CLASS_NAMES.join(", "),
            SCHEDULER_NAMES.join(", ")
        ),
    })
}

// ------------------------------------------------------------------------------------------------
// Shared pieces: config values, the training noise schedule, timestep spacings, numpy helpers.
// ------------------------------------------------------------------------------------------------

/// What the model predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prediction {
    /// The noise ε.
    Epsilon,
    /// v = √ᾱ·ε − √(1−ᾱ)·x₀ (Salimans & Ho 2022, Imagen Video §2.4).
    VPrediction,
    /// x₀ itself.
    Sample,
}

impl Prediction {
    /// `prediction_type`, if `class` supports it (one of `allowed`).
    pub(crate) fn parse(s: &str, class: &str, allowed: &[Prediction]) -> Result<Prediction> {
        let p = match s {
            "epsilon" => Prediction::Epsilon,
            "v_prediction" => Prediction::VPrediction,
            "sample" => Prediction::Sample,
            _ => None.with_context(|| unsupported("prediction_type", s, class, allowed))?,
        };
        if !allowed.contains(&p) {
            bail!(unsupported("prediction_type", s, class, allowed));
        }
        Ok(p)
    }

    fn name(self) -> &'static str {
        match self {
            Prediction::Epsilon => "epsilon",
            Prediction::VPrediction => "v_prediction",
            Prediction::Sample => "sample",
        }
    }
}

fn unsupported(key: &str, value: &str, class: &str, allowed: &[Prediction]) -> String {
    let names: Vec<&str> = allowed.iter().map(|p| p.name()).collect();
    format!(
        "scheduler_config: {key} '{value}' is not supported by {class} (supported: {})",
        names.join(", ")
    )
}

/// `key` must be one of `allowed` (an error names the key, the value and the class).
pub(crate) fn one_of<'a>(
    key: &str,
    value: &'a str,
    class: &str,
    allowed: &[&str],
) -> Result<&'a str> {
    if allowed.contains(&value) {
        Ok(value)
    } else {
        bail!(
            "scheduler_config: {key} '{value}' is not supported by {class} (supported: {})",
            allowed.join(", ")
        )
    }
}

/// An option `class` does not implement must be off.
pub(crate) fn off(key: &str, on: bool, class: &str) -> Result<()> {
    if on {
        bail!("scheduler_config: {key} true is not supported by {class}");
    }
    Ok(())
}

/// How inference timesteps are spread over the training ones (Lin et al. 2023, Table 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spacing {
    Linspace,
    Leading,
    Trailing,
}

impl Spacing {
    pub(crate) fn parse(value: Option<&str>, default: &str, class: &str) -> Result<Spacing> {
        let s = value.unwrap_or(default);
        match one_of(
            "timestep_spacing",
            s,
            class,
            &["leading", "trailing", "linspace"],
        )? {
            "leading" => Ok(Spacing::Leading),
            "trailing" => Ok(Spacing::Trailing),
            _ => Ok(Spacing::Linspace),
        }
    }
}

/// The training noise schedule: ᾱ_t = Π_{s≤t} (1 − β_s) for t in 0..T, as diffusers has it in
/// f32 (β in f32; the product accumulated in f64 and rounded per entry, as `torch.cumprod` does
/// on the CPU).
#[derive(Clone, Debug)]
pub struct NoiseSchedule {
    pub alphas_cumprod: Vec<f64>,
}

impl NoiseSchedule {
    /// β from `trained_betas`, or `beta_schedule` over [beta_start, beta_end]: `linear`,
    /// `scaled_linear` (linear in √β, the Stable Diffusion schedule) or `squaredcos_cap_v2`
    /// (Nichol & Dhariwal 2021 eq. 17, ᾱ(t) = cos²((t/T + 0.008)/1.008 · π/2), β capped at 0.999).
    pub(crate) fn new(
        cfg: &SchedulerConfig,
        class: &str,
        defaults: (f64, f64, &str),
    ) -> Result<Self> {
        let t = cfg.num_train_timesteps;
        if t == 0 {
            bail!("scheduler_config: num_train_timesteps 0 must be at least 1");
        }
        off("rescale_betas_zero_snr", cfg.rescale_betas_zero_snr, class)?;
        let (b0, b1) = (
            cfg.beta_start.unwrap_or(defaults.0),
            cfg.beta_end.unwrap_or(defaults.1),
        );
        let betas: Vec<f32> = if let Some(tb) = &cfg.trained_betas {
            if tb.len() != t {
                bail!(
                    "scheduler_config: trained_betas has {} values but num_train_timesteps is {t}",
                    tb.len()
                );
            }
            tb.iter().map(|&b| b as f32).collect()
        } else {
            let schedule = cfg.beta_schedule.as_deref().unwrap_or(defaults.2);
            match schedule {
                "linear" => linspace(b0, b1, t).iter().map(|&b| b as f32).collect(),
                "scaled_linear" => linspace(b0.sqrt(), b1.sqrt(), t)
                    .iter()
                    .map(|&b| (b as f32) * (b as f32))
                    .collect(),
                "squaredcos_cap_v2" => {
                    let abar = |x: f64| {
                        ((x + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
                            .cos()
                            .powi(2)
                    };
                    (0..t)
                        .map(|i| {
                            let (t1, t2) = (i as f64 / t as f64, (i + 1) as f64 / t as f64);
                            (1.0 - abar(t2) / abar(t1)).min(0.999) as f32
                        })
                        .collect()
                }
                other => bail!(
                    "scheduler_config: beta_schedule '{other}' is not supported by {class} \
                     (supported: linear, scaled_linear, squaredcos_cap_v2)"
                ),
            }
        };
        let mut acc = 1f64;
        let alphas_cumprod = betas
            .iter()
            .map(|&b| {
                acc *= (1.0f32 - b) as f64;
                acc as f32 as f64
            })
            .collect();
        Ok(NoiseSchedule { alphas_cumprod })
    }

    pub fn num_train_timesteps(&self) -> usize {
        self.alphas_cumprod.len()
    }

    /// ᾱ at integer timestep `t` (diffusers indexes with the timestep itself).
    pub(crate) fn at(&self, t: f64) -> Result<f64> {
        let n = self.alphas_cumprod.len();
        if t < 0.0 || t as usize >= n || t.fract() != 0.0 {
            bail!("timestep {t} is outside the {n} training timesteps");
        }
        Ok(self.alphas_cumprod[t as usize])
    }

    /// σ_t = √((1 − ᾱ_t)/ᾱ_t) per training timestep, computed in f32 as diffusers does.
    pub(crate) fn sigma_table(&self) -> Vec<f64> {
        self.alphas_cumprod
            .iter()
            .map(|&a| {
                let a = a as f32;
                ((1.0 - a) / a).sqrt() as f64
            })
            .collect()
    }

    /// `add_noise` of the DDPM forward process: √ᾱ_t·x₀ + √(1−ᾱ_t)·ε.
    pub(crate) fn add_noise(&self, x0: &Tensor, noise: &Tensor, t: f64) -> Result<Tensor> {
        let a = self.at(t)? as f32;
        ops::lincomb(&[(a.sqrt(), x0), ((1.0 - a).sqrt(), noise)])
    }
}

/// Checks `num_inference_steps` against the training steps.
pub(crate) fn check_steps(n: usize, train: usize, class: &str) -> Result<()> {
    if n == 0 {
        bail!("{class}: num_inference_steps 0: must be at least 1");
    }
    if n > train {
        bail!(
            "{class}: num_inference_steps {n} is more than num_train_timesteps {train} the model \
             was trained with"
        );
    }
    Ok(())
}

/// `np.linspace(start, stop, num)` (endpoint included).
pub(crate) fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    v[num - 1] = stop;
    v
}

/// `np.arange(start, stop, step)` for floats: `ceil((stop − start)/step)` values
/// `start + i·δ` with δ = (start + step) − start.
pub(crate) fn arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil().max(0.0) as usize;
    let delta = (start + step) - start;
    (0..len).map(|i| start + i as f64 * delta).collect()
}

/// `np.round` (halves to even).
pub(crate) fn round(x: f64) -> f64 {
    x.round_ties_even()
}

/// `np.interp(x, 0..fp.len(), fp)`: piecewise linear in the index.
pub(crate) fn interp(x: f64, fp: &[f64]) -> f64 {
    let n = fp.len();
    if x <= 0.0 {
        return fp[0];
    }
    if x >= (n - 1) as f64 {
        return fp[n - 1];
    }
    let j = x.floor() as usize;
    let slope = fp[j + 1] - fp[j];
    slope * (x - j as f64) + fp[j]
}

/// Karras et al. 2022 eq. 5: σᵢ = (σ_max^{1/ρ} + i/(n−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, ρ = 7.
pub(crate) fn karras_sigmas(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    const RHO: f64 = 7.0;
    let (lo, hi) = (sigma_min.powf(1.0 / RHO), sigma_max.powf(1.0 / RHO));
    linspace(0.0, 1.0, n)
        .iter()
        .map(|&r| (hi + r * (lo - hi)).powf(RHO))
        .collect()
}

/// diffusers' `_sigma_to_t`: the fractional training timestep whose log σ (linearly
/// interpolated between neighbours of `log_sigmas`, ascending in t) is log σ.
pub(crate) fn sigma_to_t(sigma: f64, log_sigmas: &[f64]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    let n = log_sigmas.len();
    // The last index whose log σ is ≤ log_sigma (argmax of the cumulative count), at most n−2.
    let count = log_sigmas.iter().filter(|&&l| log_sigma - l >= 0.0).count();
    let mut low = 0;
    let mut seen = 0;
    for (i, &l) in log_sigmas.iter().enumerate() {
        if log_sigma - l >= 0.0 {
            seen += 1;
            if seen == count {
                low = i;
                break;
            }
        }
    }
    let low = low.min(n - 2);
    let (l, h) = (log_sigmas[low], log_sigmas[low + 1]);
    let w = ((l - log_sigma) / (l - h)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

/// ln of each σ in f32, as `np.log` of diffusers' f32 σ table.
pub(crate) fn log_f32(sigmas: &[f64]) -> Vec<f64> {
    sigmas.iter().map(|&s| (s as f32).ln() as f64).collect()
}

/// Rounds each value to f32 (diffusers stores sigmas and Euler timesteps as f32).
pub(crate) fn to_f32(v: impl IntoIterator<Item = f64>) -> Vec<f64> {
    v.into_iter().map(|x| x as f32 as f64).collect()
}

/// Imagen's dynamic thresholding (Saharia et al. 2022, §2.3), diffusers' `_threshold_sample`:
/// per sample, s = the `ratio` quantile of |x₀| clamped to [1, max]; x₀ ← clamp(x₀, −s, s)/s.
/// The per-sample quantile needs a sort, so this runs on the host: the tensor is downloaded,
/// thresholded and uploaded to its device again.
pub(crate) fn threshold_sample(x0: &Tensor, ratio: f64, max: f64) -> Result<Tensor> {
    let batch = *x0.shape().first().unwrap_or(&1);
    let mut v = x0.to_vec()?;
    let per = v.len() / batch.max(1);
    for row in v.chunks_mut(per.max(1)) {
        let mut a: Vec<f32> = row.iter().map(|x| x.abs()).collect();
        a.sort_by(|p, q| p.total_cmp(q));
        // torch.quantile (linear): rank q·(n−1) in the input's dtype, lerp between neighbours.
        let rank = ratio as f32 * (a.len() - 1) as f32;
        let lo = rank.floor() as usize;
        let hi = (lo + 1).min(a.len() - 1);
        let w = rank - lo as f32;
        let (p, q) = (a[lo], a[hi]);
        let s = if w < 0.5 {
            p + w * (q - p)
        } else {
            q - (q - p) * (1.0 - w)
        };
        let s = s.clamp(1.0, max as f32);
        for x in row.iter_mut() {
            *x = x.clamp(-s, s) / s;
        }
    }
    Tensor::from_vec(&x0.device(), x0.shape(), v)
}

/// x₀ clamped to ±range (`clip_sample`). An elementwise clamp is no device op, so this runs on
/// the host (download, clamp, upload); Stable Diffusion's configs turn it off.
pub(crate) fn clip_sample(x0: &Tensor, range: f64) -> Result<Tensor> {
    let r = range as f32;
    let v: Vec<f32> = x0.to_vec()?.iter().map(|x| x.clamp(-r, r)).collect();
    Tensor::from_vec(&x0.device(), x0.shape(), v)
}

/// `Σ cᵢ·xᵢ` over the terms with a non-zero coefficient (at least the first is kept).
pub(crate) fn combine(terms: &[(f64, &Tensor)]) -> Result<Tensor> {
    let mut kept: Vec<(f32, &Tensor)> = terms
        .iter()
        .filter(|(c, _)| *c != 0.0)
        .map(|&(c, x)| (c as f32, x))
        .collect();
    if kept.is_empty() {
        kept.push((0.0, terms[0].1));
    }
    ops::lincomb(&kept)
}

/// The noise a stochastic step needs.
pub(crate) fn need_noise<'a>(
    noise: Option<&'a Tensor>,
    class: &str,
    i: usize,
) -> Result<&'a Tensor> {
    noise.with_context(|| {
        format!("{class}: step {i} adds noise; pass a standard-normal noise tensor")
    })
}

/// Step-order bookkeeping for schedulers with state: steps run consecutively from the first
/// one called.
#[derive(Clone, Debug, Default)]
pub(crate) struct StepOrder {
    next: Option<usize>,
}

impl StepOrder {
    pub(crate) fn reset(&mut self) {
        self.next = None;
    }
    pub(crate) fn check(&mut self, i: usize, len: usize, class: &str) -> Result<()> {
        if len == 0 {
            bail!("{class}: step before set_timesteps");
        }
        if i >= len {
            bail!("{class}: step {i} is past the {len} timesteps");
        }
        if let Some(n) = self.next
            && n != i
        {
            bail!("{class}: step {i} called, but steps run in order and step {n} is next");
        }
        self.next = Some(i + 1);
        Ok(())
    }
}

/// A copy of `x` on its device (for state kept across steps).
pub(crate) fn ops_copy(x: &Tensor) -> Result<Tensor> {
    ops::lincomb(&[(1.0, x)])
}
