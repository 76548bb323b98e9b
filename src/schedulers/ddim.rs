//! `DDIMScheduler`: denoising diffusion implicit models (Song, Meng & Ermon 2020, eq. 12):
//!
//!   x̂₀ = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t
//!   x_{t−Δ} = √ᾱ_{t−Δ}·x̂₀ + √(1 − ᾱ_{t−Δ} − σ_t²)·ε̂ + σ_t·z,
//!   σ_t = η·√((1−ᾱ_{t−Δ})/(1−ᾱ_t))·√(1 − ᾱ_t/ᾱ_{t−Δ})   (eq. 16)
//!
//! with Δ = T / n (integer division, as diffusers steps back even for trailing/linspace
//! spacings), ᾱ before timestep 0 being 1 (`set_alpha_to_one`) or ᾱ₀. η = 0 is deterministic DDIM,
//! η = 1 DDPM-like. x̂₀ is optionally clipped (`clip_sample`) or dynamically thresholded.
use super::{
    NoiseSchedule, Prediction, Scheduler, SchedulerConfig, Spacing, arange, check_steps,
    clip_sample, combine, linspace, need_noise, round, threshold_sample,
};
use crate::tensor::Tensor;
use anyhow::{Result, bail};

const CLASS: &str = "DDIMScheduler";

pub struct DdimScheduler {
    schedule: NoiseSchedule,
    prediction: Prediction,
    spacing: Spacing,
    steps_offset: usize,
    final_alpha_cumprod: f64,
    clip_sample: Option<f64>,
    /// (dynamic_thresholding_ratio, sample_max_value) when `thresholding`.
    thresholding: Option<(f64, f64)>,
    /// η of eq. 16.
    pub eta: f64,
    num_inference_steps: usize,
    timesteps: Vec<f64>,
}

impl DdimScheduler {
    pub fn new(cfg: &SchedulerConfig) -> Result<DdimScheduler> {
        let schedule = NoiseSchedule::new(cfg, CLASS, (0.0001, 0.02, "linear"))?;
        let prediction = Prediction::parse(
            &cfg.prediction_type,
            CLASS,
            &[
                Prediction::Epsilon,
                Prediction::Sample,
                Prediction::VPrediction,
            ],
        )?;
        let spacing = Spacing::parse(cfg.timestep_spacing.as_deref(), "leading", CLASS)?;
        let final_alpha_cumprod = if cfg.set_alpha_to_one.unwrap_or(true) {
            1.0
        } else {
            schedule.alphas_cumprod[0]
        };
        Ok(DdimScheduler {
            schedule,
            prediction,
            spacing,
            steps_offset: cfg.steps_offset,
            final_alpha_cumprod,
            clip_sample: cfg
                .clip_sample
                .unwrap_or(true)
                .then_some(cfg.clip_sample_range),
            thresholding: cfg
                .thresholding
                .then_some((cfg.dynamic_thresholding_ratio, cfg.sample_max_value)),
            eta: 0.0,
            num_inference_steps: 0,
            timesteps: vec![],
        })
    }

    /// ᾱ at `t`, or the final ᾱ before the first training step.
    fn alpha_prev(&self, t: i64) -> Result<f64> {
        if t >= 0 {
            self.schedule.at(t as f64)
        } else {
            Ok(self.final_alpha_cumprod)
        }
    }
}

/// DDIM/PNDM/LCM-style integer timesteps for `n` steps, descending.
pub(crate) fn ddim_timesteps(spacing: Spacing, train: usize, n: usize, offset: usize) -> Vec<f64> {
    let t = train as f64;
    match spacing {
        Spacing::Linspace => linspace(0.0, t - 1.0, n)
            .into_iter()
            .rev()
            .map(round)
            .collect(),
        Spacing::Leading => {
            let ratio = train / n;
            (0..n).rev().map(|i| (i * ratio + offset) as f64).collect()
        }
        Spacing::Trailing => arange(t, 0.0, -(t / n as f64))
            .into_iter()
            .map(|x| round(x) - 1.0)
            .collect(),
    }
}

impl Scheduler for DdimScheduler {
    fn class_name(&self) -> &'static str {
        CLASS
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let train = self.schedule.num_train_timesteps();
        check_steps(n, train, CLASS)?;
        self.num_inference_steps = n;
        self.timesteps = ddim_timesteps(self.spacing, train, n, self.steps_offset);
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn needs_noise(&self, _i: usize) -> bool {
        self.eta > 0.0
    }

    fn set_eta(&mut self, eta: f64) -> Result<()> {
        if !(eta >= 0.0 && eta.is_finite()) {
            bail!("{CLASS}: eta {eta} must be a finite value ≥ 0");
        }
        self.eta = eta;
        Ok(())
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        i: usize,
        sample: &Tensor,
        noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        let Some(&t) = self.timesteps.get(i) else {
            bail!(
                "{CLASS}: step {i} is past the {} timesteps (set_timesteps first)",
                self.timesteps.len()
            );
        };
        let train = self.schedule.num_train_timesteps();
        let prev_t = t as i64 - (train / self.num_inference_steps) as i64;
        let a_t = self.schedule.at(t)?;
        let a_prev = self.alpha_prev(prev_t)?;
        let b_t = 1.0 - a_t;
        // x̂₀ = p_s·x + p_m·m and ε̂ = e_s·x + e_m·m for model output m.
        let ((p_s, p_m), (e_s, e_m)) = match self.prediction {
            Prediction::Epsilon => ((1.0 / a_t.sqrt(), -b_t.sqrt() / a_t.sqrt()), (0.0, 1.0)),
            Prediction::Sample => ((0.0, 1.0), (1.0 / b_t.sqrt(), -a_t.sqrt() / b_t.sqrt())),
            Prediction::VPrediction => ((a_t.sqrt(), -b_t.sqrt()), (b_t.sqrt(), a_t.sqrt())),
        };
        let variance = ((1.0 - a_prev) / b_t) * (1.0 - a_t / a_prev);
        let std = self.eta * variance.sqrt();
        let dir = (1.0 - a_prev - std * std).sqrt();
        let z = if self.eta > 0.0 {
            Some(need_noise(noise, CLASS, i)?)
        } else {
            None
        };
        if self.thresholding.is_some() || self.clip_sample.is_some() {
            let x0 = combine(&[(p_s, sample), (p_m, model_output)])?;
            let x0 = match (self.thresholding, self.clip_sample) {
                (Some((ratio, max)), _) => threshold_sample(&x0, ratio, max)?,
                (None, Some(r)) => clip_sample(&x0, r)?,
                (None, None) => x0,
            };
            let mut terms = vec![
                (a_prev.sqrt(), &x0),
                (dir * e_s, sample),
                (dir * e_m, model_output),
            ];
            if let Some(z) = z {
                terms.push((std, z));
            }
            combine(&terms)
        } else {
            let mut terms = vec![
                (a_prev.sqrt() * p_s + dir * e_s, sample),
                (a_prev.sqrt() * p_m + dir * e_m, model_output),
            ];
            if let Some(z) = z {
                terms.push((std, z));
            }
            combine(&terms)
        }
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        let Some(&t) = self.timesteps.get(i) else {
            bail!("{CLASS}: add_noise at step {i}, past the timesteps");
        };
        self.schedule.add_noise(original, noise, t)
    }
}
