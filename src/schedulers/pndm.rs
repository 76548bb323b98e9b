//! `PNDMScheduler` with `skip_prk_steps` (Stable Diffusion 1.x's default): pseudo linear multistep
//! (PLMS, Liu et al. 2022 "Pseudo Numerical Methods for Diffusion Models", eq. 12), the
//! Runge–Kutta warm-up replaced by one second-order step.
//!
//! Each step moves x_t to x_{t−Δ} (Δ = T/n) with the transfer φ of eq. 11,
//!
//!   x_{t−Δ} = √(ᾱ_{t−Δ}/ᾱ_t)·x_t − (ᾱ_{t−Δ} − ᾱ_t)·ε′ / (ᾱ_t·√(1−ᾱ_{t−Δ}) + √(ᾱ_t(1−ᾱ_t)ᾱ_{t−Δ})),
//!
//! where ε′ is a linear multistep (Adams–Bashforth) combination of the last model outputs eᵢ:
//! e₀ at the first step; (e₀ + e₁)/2 at the second, which re-evaluates the first step from the
//! same x (a Heun step; the schedule repeats that timestep); then (3e₋₁ − e₋₂)/2,
//! (23e₋₁ − 16e₋₂ + 5e₋₃)/12 and (55e₋₁ − 59e₋₂ + 37e₋₃ − 9e₋₄)/24. With v-prediction the combined
//! output is turned into ε first: ε = √ᾱ_t·v + √(1−ᾱ_t)·x_t.
use super::{
    NoiseSchedule, Prediction, Scheduler, SchedulerConfig, Spacing, StepOrder, check_steps,
    combine, ddim::ddim_timesteps, ops_copy,
};
use crate::tensor::Tensor;
use anyhow::{Result, bail};

const CLASS: &str = "PNDMScheduler";

pub struct PndmScheduler {
    schedule: NoiseSchedule,
    prediction: Prediction,
    spacing: Spacing,
    steps_offset: usize,
    final_alpha_cumprod: f64,
    num_inference_steps: usize,
    timesteps: Vec<f64>,
    // Multistep state: steps taken, the last (up to 4) raw model outputs, the first step's input.
    counter: usize,
    ets: Vec<Tensor>,
    cur_sample: Option<Tensor>,
    order: StepOrder,
}

impl PndmScheduler {
    pub fn new(cfg: &SchedulerConfig) -> Result<PndmScheduler> {
        let schedule = NoiseSchedule::new(cfg, CLASS, (0.0001, 0.02, "linear"))?;
        let prediction = Prediction::parse(
            &cfg.prediction_type,
            CLASS,
            &[Prediction::Epsilon, Prediction::VPrediction],
        )?;
        if !cfg.skip_prk_steps {
            bail!(
                "scheduler_config: skip_prk_steps false (PNDM's Runge–Kutta warm-up) is not \
                 supported by {CLASS}; Stable Diffusion's configs set it true"
            );
        }
        let spacing = Spacing::parse(cfg.timestep_spacing.as_deref(), "leading", CLASS)?;
        let final_alpha_cumprod = if cfg.set_alpha_to_one.unwrap_or(false) {
            1.0
        } else {
            schedule.alphas_cumprod[0]
        };
        Ok(PndmScheduler {
            schedule,
            prediction,
            spacing,
            steps_offset: cfg.steps_offset,
            final_alpha_cumprod,
            num_inference_steps: 0,
            timesteps: vec![],
            counter: 0,
            ets: vec![],
            cur_sample: None,
            order: StepOrder::default(),
        })
    }

    fn alpha(&self, t: i64) -> Result<f64> {
        if t >= 0 {
            self.schedule.at(t as f64)
        } else {
            Ok(self.final_alpha_cumprod)
        }
    }
}

impl Scheduler for PndmScheduler {
    fn class_name(&self) -> &'static str {
        CLASS
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let train = self.schedule.num_train_timesteps();
        check_steps(n, train, CLASS)?;
        self.num_inference_steps = n;
        // The n timesteps descending, with the second one repeated (the Heun re-evaluation).
        let ts = ddim_timesteps(self.spacing, train, n, self.steps_offset);
        let mut plms = ts.clone();
        if n >= 2 {
            plms.insert(1, ts[1]);
        }
        self.timesteps = plms;
        self.counter = 0;
        self.ets.clear();
        self.cur_sample = None;
        self.order.reset();
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        i: usize,
        sample: &Tensor,
        _noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.order.check(i, self.timesteps.len(), CLASS)?;
        let train = self.schedule.num_train_timesteps();
        let ratio = (train / self.num_inference_steps) as i64;
        let mut t = self.timesteps[i] as i64;
        let mut prev_t = t - ratio;
        if self.counter != 1 {
            if self.ets.len() > 3 {
                self.ets.remove(0);
            }
            self.ets.push(ops_copy(model_output)?);
        } else {
            prev_t = t;
            t += ratio;
        }
        // ε′ = Σ w·e over (weight, output) pairs; `x` is the sample the step starts from.
        let e = &self.ets;
        let k = e.len();
        let mut first_sample = None;
        let (weights, x): (Vec<(f64, &Tensor)>, &Tensor) = if k == 1 && self.counter == 0 {
            first_sample = Some(ops_copy(sample)?);
            (vec![(1.0, model_output)], sample)
        } else if k == 1 && self.counter == 1 {
            let Some(x) = self.cur_sample.as_ref() else {
                bail!("{CLASS}: the second step has no first-step sample");
            };
            (vec![(0.5, model_output), (0.5, &e[0])], x)
        } else if k == 2 {
            (vec![(1.5, &e[1]), (-0.5, &e[0])], sample)
        } else if k == 3 {
            (
                vec![
                    (23.0 / 12.0, &e[2]),
                    (-16.0 / 12.0, &e[1]),
                    (5.0 / 12.0, &e[0]),
                ],
                sample,
            )
        } else {
            (
                vec![
                    (55.0 / 24.0, &e[3]),
                    (-59.0 / 24.0, &e[2]),
                    (37.0 / 24.0, &e[1]),
                    (-9.0 / 24.0, &e[0]),
                ],
                sample,
            )
        };
        let a_t = self.alpha(t)?;
        let a_prev = self.alpha(prev_t)?;
        let (b_t, b_prev) = (1.0 - a_t, 1.0 - a_prev);
        let sample_coeff = (a_prev / a_t).sqrt();
        let denom = a_t * b_prev.sqrt() + (a_t * b_t * a_prev).sqrt();
        let c = (a_prev - a_t) / denom;
        // x_{t−Δ} = sample_coeff·x − c·ε′, with ε′ = √ᾱ_t·v′ + √(1−ᾱ_t)·x for v-prediction.
        let (cx, ce) = match self.prediction {
            Prediction::VPrediction => (sample_coeff - c * b_t.sqrt(), -c * a_t.sqrt()),
            _ => (sample_coeff, -c),
        };
        let mut terms = vec![(cx, x)];
        terms.extend(weights.iter().map(|&(w, e)| (ce * w, e)));
        let prev = combine(&terms)?;
        if first_sample.is_some() {
            self.cur_sample = first_sample;
        } else if self.counter == 1 {
            self.cur_sample = None;
        }
        self.counter += 1;
        Ok(prev)
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        let Some(&t) = self.timesteps.get(i) else {
            bail!("{CLASS}: add_noise at step {i}, past the timesteps");
        };
        self.schedule.add_noise(original, noise, t)
    }
}
