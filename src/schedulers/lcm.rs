//! `LCMScheduler`: multistep consistency sampling of latent consistency models (Luo et al. 2023,
//! Algorithm 3). The consistency function is the skip-parametrised x̂₀ (Song et al. 2023 §3,
//! σ_data = 0.5, time scaled by `timestep_scaling`):
//!
//!   c_skip = σ_d²/((s·t)² + σ_d²),   c_out = s·t/√((s·t)² + σ_d²),
//!   x̂ = c_out·x̂₀ + c_skip·x,
//!
//! with x̂₀ from the model output by prediction type (then clipped or thresholded if configured).
//! Every step but the last re-noises x̂ to the next timestep: x_{next} = √ᾱ_next·x̂ + √(1−ᾱ_next)·z.
//! The timesteps are n of the `original_inference_steps` distillation timesteps
//! (k−1, 2k−1, ..., k = T/original_inference_steps), evenly spaced from the top.
use super::{
    NoiseSchedule, Prediction, Scheduler, SchedulerConfig, StepOrder, check_steps, clip_sample,
    combine, need_noise, threshold_sample,
};
use crate::tensor::Tensor;
use anyhow::{Result, bail};

const CLASS: &str = "LCMScheduler";

pub struct LcmScheduler {
    schedule: NoiseSchedule,
    prediction: Prediction,
    original_inference_steps: usize,
    timestep_scaling: f64,
    clip_sample: Option<f64>,
    thresholding: Option<(f64, f64)>,
    timesteps: Vec<f64>,
    order: StepOrder,
}

impl LcmScheduler {
    pub fn new(cfg: &SchedulerConfig) -> Result<LcmScheduler> {
        let schedule = NoiseSchedule::new(cfg, CLASS, (0.00085, 0.012, "scaled_linear"))?;
        let prediction = Prediction::parse(
            &cfg.prediction_type,
            CLASS,
            &[
                Prediction::Epsilon,
                Prediction::Sample,
                Prediction::VPrediction,
            ],
        )?;
        let orig = cfg.original_inference_steps;
        if orig == 0 || orig > cfg.num_train_timesteps {
            bail!(
                "scheduler_config: original_inference_steps {orig} must be in 1..={} \
                 (num_train_timesteps)",
                cfg.num_train_timesteps
            );
        }
        Ok(LcmScheduler {
            schedule,
            prediction,
            original_inference_steps: orig,
            timestep_scaling: cfg.timestep_scaling,
            clip_sample: cfg
                .clip_sample
                .unwrap_or(false)
                .then_some(cfg.clip_sample_range),
            thresholding: cfg
                .thresholding
                .then_some((cfg.dynamic_thresholding_ratio, cfg.sample_max_value)),
            timesteps: vec![],
            order: StepOrder::default(),
        })
    }
}

impl Scheduler for LcmScheduler {
    fn class_name(&self) -> &'static str {
        CLASS
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let train = self.schedule.num_train_timesteps();
        check_steps(n, train, CLASS)?;
        let orig = self.original_inference_steps;
        if n > orig {
            bail!(
                "{CLASS}: num_inference_steps {n} is more than original_inference_steps {orig} \
                 (the schedule is a subset of the distillation timesteps)"
            );
        }
        let k = train / orig;
        // The distillation timesteps descending, then n of them at floor(j·orig/n).
        let origin: Vec<usize> = (1..=orig).rev().map(|j| j * k - 1).collect();
        let step = orig as f64 / n as f64;
        self.timesteps = (0..n)
            .map(|j| origin[(j as f64 * step).floor() as usize] as f64)
            .collect();
        self.order.reset();
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn needs_noise(&self, i: usize) -> bool {
        i + 1 < self.timesteps.len()
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        i: usize,
        sample: &Tensor,
        noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.order.check(i, self.timesteps.len(), CLASS)?;
        let t = self.timesteps[i];
        let a_t = self.schedule.at(t)?;
        let b_t = 1.0 - a_t;
        let st = t * self.timestep_scaling;
        let c_skip = 0.25 / (st * st + 0.25);
        let c_out = st / (st * st + 0.25).sqrt();
        let (p, q) = match self.prediction {
            Prediction::Epsilon => (1.0 / a_t.sqrt(), -b_t.sqrt() / a_t.sqrt()),
            Prediction::Sample => (0.0, 1.0),
            Prediction::VPrediction => (a_t.sqrt(), -b_t.sqrt()),
        };
        let last = i + 1 == self.timesteps.len();
        // Re-noising to the next timestep (none after the last step).
        let (c_den, z) = if last {
            (1.0, None)
        } else {
            let a_next = self.schedule.at(self.timesteps[i + 1])?;
            (
                a_next.sqrt(),
                Some(((1.0 - a_next).sqrt(), need_noise(noise, CLASS, i)?)),
            )
        };
        let mut terms = if self.thresholding.is_some() || self.clip_sample.is_some() {
            let x0 = combine(&[(p, sample), (q, model_output)])?;
            let x0 = match (self.thresholding, self.clip_sample) {
                (Some((ratio, max)), _) => threshold_sample(&x0, ratio, max)?,
                (None, Some(r)) => clip_sample(&x0, r)?,
                (None, None) => x0,
            };
            let denoised = combine(&[(c_out, &x0), (c_skip, sample)])?;
            return match z {
                Some((c, z)) => combine(&[(c_den, &denoised), (c, z)]),
                None => Ok(denoised),
            };
        } else {
            vec![
                (c_den * (c_out * p + c_skip), sample),
                (c_den * c_out * q, model_output),
            ]
        };
        if let Some((c, z)) = z {
            terms.push((c, z));
        }
        combine(&terms)
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        let Some(&t) = self.timesteps.get(i) else {
            bail!("{CLASS}: add_noise at step {i}, past the timesteps");
        };
        self.schedule.add_noise(original, noise, t)
    }
}
