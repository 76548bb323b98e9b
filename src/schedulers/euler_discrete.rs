//! `EulerDiscreteScheduler`: Euler's method on the probability-flow ODE in the σ parametrisation
//! (Karras et al. 2022, Algorithm 2 without churn), x = x₀ + σ·ε with σ_t = √((1−ᾱ_t)/ᾱ_t):
//!
//!   d = (x − x̂₀)/σᵢ,   x_{i+1} = x + d·(σᵢ₊₁ − σᵢ).
//!
//! The model sees x/√(σ² + 1) (unit variance) at its fractional timestep; σᵢ is the training σ
//! table linearly interpolated at the timestep, or Karras et al.'s ρ = 7 schedule
//! (`use_karras_sigmas`, eq. 5) with the timesteps found back from σ. x̂₀ by prediction type:
//! x − σ·ε̂ (epsilon), −σ/√(σ²+1)·v̂ + x/(σ²+1) (v_prediction), or the output itself (sample).
use super::{
    NoiseSchedule, Prediction, Scheduler, SchedulerConfig, Spacing, arange, check_steps, combine,
    interp, karras_sigmas, linspace, log_f32, off, one_of, round, sigma_to_t, to_f32,
};
use crate::tensor::Tensor;
use anyhow::{Result, bail};

const CLASS: &str = "EulerDiscreteScheduler";

/// Euler-style timesteps for `n` steps, descending, as f32 values (fractional for `linspace`).
pub(crate) fn euler_timesteps(spacing: Spacing, train: usize, n: usize, offset: usize) -> Vec<f64> {
    let t = train as f64;
    match spacing {
        Spacing::Linspace => to_f32(linspace(0.0, t - 1.0, n).into_iter().rev()),
        Spacing::Leading => {
            let ratio = train / n;
            to_f32((0..n).rev().map(|i| (i * ratio) as f64 + offset as f64))
        }
        Spacing::Trailing => to_f32(
            arange(t, 0.0, -(t / n as f64))
                .into_iter()
                .map(|x| round(x) - 1.0),
        ),
    }
}

/// The σ after the last step: 0 (`zero`) or the smallest training σ (`sigma_min`).
pub(crate) fn final_sigma(kind: &str, schedule: &NoiseSchedule, class: &str) -> Result<f64> {
    Ok(
        match one_of("final_sigmas_type", kind, class, &["zero", "sigma_min"])? {
            "zero" => 0.0,
            _ => schedule.sigma_table()[0],
        },
    )
}

/// init_noise_sigma of the Euler schedulers: σ_max, or √(σ_max² + 1) for `leading` spacing.
pub(crate) fn euler_init_noise_sigma(sigmas: &[f64], spacing: Spacing) -> f64 {
    let max = sigmas.iter().cloned().fold(0.0, f64::max);
    match spacing {
        Spacing::Leading => (max * max + 1.0).sqrt(),
        _ => max,
    }
}

/// The Euler schedulers' input scaling at step `i`: 1/√(σᵢ² + 1) (σ = 0 past the end).
pub(crate) fn euler_input_scale(sigmas: &[f64], i: usize) -> f64 {
    let s = sigmas.get(i).copied().unwrap_or(0.0);
    1.0 / (s * s + 1.0).sqrt()
}

pub struct EulerDiscreteScheduler {
    schedule: NoiseSchedule,
    prediction: Prediction,
    spacing: Spacing,
    steps_offset: usize,
    use_karras_sigmas: bool,
    sigma_min: Option<f64>,
    sigma_max: Option<f64>,
    final_sigmas_type: String,
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
}

impl EulerDiscreteScheduler {
    pub fn new(cfg: &SchedulerConfig) -> Result<EulerDiscreteScheduler> {
        let schedule = NoiseSchedule::new(cfg, CLASS, (0.0001, 0.02, "linear"))?;
        let prediction = Prediction::parse(
            &cfg.prediction_type,
            CLASS,
            &[
                Prediction::Epsilon,
                Prediction::VPrediction,
                Prediction::Sample,
            ],
        )?;
        let spacing = Spacing::parse(cfg.timestep_spacing.as_deref(), "linspace", CLASS)?;
        one_of(
            "interpolation_type",
            &cfg.interpolation_type,
            CLASS,
            &["linear"],
        )?;
        one_of("timestep_type", &cfg.timestep_type, CLASS, &["discrete"])?;
        off("use_exponential_sigmas", cfg.use_exponential_sigmas, CLASS)?;
        off("use_beta_sigmas", cfg.use_beta_sigmas, CLASS)?;
        final_sigma(&cfg.final_sigmas_type, &schedule, CLASS)?;
        Ok(EulerDiscreteScheduler {
            schedule,
            prediction,
            spacing,
            steps_offset: cfg.steps_offset,
            use_karras_sigmas: cfg.use_karras_sigmas,
            sigma_min: cfg.sigma_min,
            sigma_max: cfg.sigma_max,
            final_sigmas_type: cfg.final_sigmas_type.clone(),
            timesteps: vec![],
            sigmas: vec![],
        })
    }

    fn sigma_pair(&self, i: usize) -> Result<(f64, f64)> {
        if i + 1 >= self.sigmas.len() {
            bail!(
                "{CLASS}: step {i} is past the {} timesteps (set_timesteps first)",
                self.timesteps.len()
            );
        }
        Ok((self.sigmas[i], self.sigmas[i + 1]))
    }
}

/// x̂₀ = p·x + q·m at σ (model output m), by prediction type.
pub(crate) fn x0_coefficients(prediction: Prediction, sigma: f64) -> (f64, f64) {
    match prediction {
        Prediction::Epsilon => (1.0, -sigma),
        Prediction::VPrediction => (
            1.0 / (sigma * sigma + 1.0),
            -sigma / (sigma * sigma + 1.0).sqrt(),
        ),
        Prediction::Sample => (0.0, 1.0),
    }
}

impl Scheduler for EulerDiscreteScheduler {
    fn class_name(&self) -> &'static str {
        CLASS
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let train = self.schedule.num_train_timesteps();
        check_steps(n, train, CLASS)?;
        let mut timesteps = euler_timesteps(self.spacing, train, n, self.steps_offset);
        let table = self.schedule.sigma_table();
        let mut sigmas: Vec<f64> = timesteps.iter().map(|&t| interp(t, &table)).collect();
        if self.use_karras_sigmas {
            let lo = self.sigma_min.unwrap_or(sigmas[sigmas.len() - 1]);
            let hi = self.sigma_max.unwrap_or(sigmas[0]);
            sigmas = karras_sigmas(lo, hi, n);
            let log_sigmas = log_f32(&table);
            timesteps = to_f32(sigmas.iter().map(|&s| sigma_to_t(s, &log_sigmas)));
        }
        sigmas.push(final_sigma(&self.final_sigmas_type, &self.schedule, CLASS)?);
        self.sigmas = to_f32(sigmas);
        self.timesteps = timesteps;
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn sigmas(&self) -> Option<&[f64]> {
        Some(&self.sigmas)
    }

    fn init_noise_sigma(&self) -> f64 {
        euler_init_noise_sigma(&self.sigmas, self.spacing)
    }

    fn model_input_scale(&self, i: usize) -> f64 {
        euler_input_scale(&self.sigmas, i)
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        i: usize,
        sample: &Tensor,
        _noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (sigma, sigma_next) = self.sigma_pair(i)?;
        // x + (x − x̂₀)·(σᵢ₊₁ − σᵢ)/σᵢ with x̂₀ = p·x + q·m.
        let (p, q) = x0_coefficients(self.prediction, sigma);
        let r = (sigma_next - sigma) / sigma;
        combine(&[(1.0 + (1.0 - p) * r, sample), (-q * r, model_output)])
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        let (sigma, _) = self.sigma_pair(i)?;
        combine(&[(1.0, original), (sigma, noise)])
    }
}
