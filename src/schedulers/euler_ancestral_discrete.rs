//! `EulerAncestralDiscreteScheduler`: k-diffusion's `sample_euler_ancestral` (η = 1). Each step
//! splits the move from σᵢ to σᵢ₊₁ into a deterministic Euler step down to σ_down and fresh noise
//! of standard deviation σ_up, with σ_down² + σ_up² = σᵢ₊₁² (the DDPM posterior variance):
//!
//!   σ_up = √(σᵢ₊₁²·(σᵢ² − σᵢ₊₁²)/σᵢ²),   σ_down = √(σᵢ₊₁² − σ_up²),
//!   x_{i+1} = x + (x − x̂₀)/σᵢ·(σ_down − σᵢ) + σ_up·z.
//!
//! Timesteps and σ as in [`super::euler_discrete`] (no Karras option in this class). The last
//! step (σᵢ₊₁ = 0) adds no noise, so SD-Turbo's single trailing step is deterministic.
use super::euler_discrete::{
    euler_init_noise_sigma, euler_input_scale, euler_timesteps, x0_coefficients,
};
use super::{
    NoiseSchedule, Prediction, Scheduler, SchedulerConfig, Spacing, check_steps, combine, interp,
    need_noise, to_f32,
};
use crate::tensor::Tensor;
use anyhow::{Result, bail};

const CLASS: &str = "EulerAncestralDiscreteScheduler";

pub struct EulerAncestralDiscreteScheduler {
    schedule: NoiseSchedule,
    prediction: Prediction,
    spacing: Spacing,
    steps_offset: usize,
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
}

impl EulerAncestralDiscreteScheduler {
    pub fn new(cfg: &SchedulerConfig) -> Result<EulerAncestralDiscreteScheduler> {
        let schedule = NoiseSchedule::new(cfg, CLASS, (0.0001, 0.02, "linear"))?;
        let prediction = Prediction::parse(
            &cfg.prediction_type,
            CLASS,
            &[Prediction::Epsilon, Prediction::VPrediction],
        )?;
        let spacing = Spacing::parse(cfg.timestep_spacing.as_deref(), "linspace", CLASS)?;
        Ok(EulerAncestralDiscreteScheduler {
            schedule,
            prediction,
            spacing,
            steps_offset: cfg.steps_offset,
            timesteps: vec![],
            sigmas: vec![],
        })
    }

    /// (σᵢ, σ_down, σ_up) of step i.
    fn sigmas_at(&self, i: usize) -> Result<(f64, f64, f64)> {
        if i + 1 >= self.sigmas.len() {
            bail!(
                "{CLASS}: step {i} is past the {} timesteps (set_timesteps first)",
                self.timesteps.len()
            );
        }
        let (from, to) = (self.sigmas[i], self.sigmas[i + 1]);
        let up = (to * to * (from * from - to * to) / (from * from)).sqrt();
        let down = (to * to - up * up).max(0.0).sqrt();
        Ok((from, down, up))
    }
}

impl Scheduler for EulerAncestralDiscreteScheduler {
    fn class_name(&self) -> &'static str {
        CLASS
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let train = self.schedule.num_train_timesteps();
        check_steps(n, train, CLASS)?;
        self.timesteps = euler_timesteps(self.spacing, train, n, self.steps_offset);
        let table = self.schedule.sigma_table();
        let mut sigmas: Vec<f64> = self.timesteps.iter().map(|&t| interp(t, &table)).collect();
        sigmas.push(0.0);
        self.sigmas = to_f32(sigmas);
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

    fn needs_noise(&self, i: usize) -> bool {
        self.sigmas_at(i).is_ok_and(|(_, _, up)| up > 0.0)
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        i: usize,
        sample: &Tensor,
        noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (sigma, down, up) = self.sigmas_at(i)?;
        let (p, q) = x0_coefficients(self.prediction, sigma);
        let r = (down - sigma) / sigma;
        let mut terms = vec![(1.0 + (1.0 - p) * r, sample), (-q * r, model_output)];
        if up > 0.0 {
            terms.push((up, need_noise(noise, CLASS, i)?));
        }
        combine(&terms)
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        let (sigma, _, _) = self.sigmas_at(i)?;
        combine(&[(1.0, original), (sigma, noise)])
    }
}
