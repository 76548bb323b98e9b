//! `DPMSolverMultistepScheduler` with `algorithm_type` `dpmsolver++` (Lu et al. 2022,
//! "DPM-Solver++", Algorithm 2, multistep) or `sde-dpmsolver++` (its SDE variant, eq. (B) of
//! diffusers' implementation), `solver_order` 1 or 2.
//!
//! With α_t = 1/√(σ²+1), σ_t = σ·α_t and λ = ln(α_t/σ_t) at each step's σ, the model output is
//! first turned into a data prediction D = x̂₀ (optionally dynamically thresholded). With
//! h = λ_{i+1} − λᵢ, the first-order update (DDIM in λ) is
//!
//!   x_{i+1} = (σ_{t,i+1}/σ_{t,i})·x − α_{i+1}(e^{−h} − 1)·Dᵢ,
//!
//! and the second-order multistep update, with r = (λᵢ − λᵢ₋₁)/h and D₁ = (Dᵢ − Dᵢ₋₁)/r,
//!
//!   midpoint: x_{i+1} = (σ_{t,i+1}/σ_{t,i})·x − α_{i+1}(e^{−h} − 1)·(Dᵢ + D₁/2)
//!   heun:     x_{i+1} = (σ_{t,i+1}/σ_{t,i})·x − α_{i+1}(e^{−h} − 1)·Dᵢ
//!                       + α_{i+1}((e^{−h} − 1)/h + 1)·D₁.
//!
//! The SDE variant scales x by e^{−h}, the D terms by α_{i+1}(1 − e^{−2h}) in place of
//! −α_{i+1}(e^{−h} − 1), and adds σ_{t,i+1}·√(1 − e^{−2h})·z. As in diffusers, the first step is
//! first order, and so is the last when `euler_at_final`, `final_sigmas_type: zero`, or
//! `lower_order_final` with fewer than 15 steps.
use super::euler_discrete::final_sigma;
use super::{
    NoiseSchedule, Prediction, Scheduler, SchedulerConfig, Spacing, StepOrder, arange, check_steps,
    combine, interp, karras_sigmas, linspace, log_f32, need_noise, off, one_of, round, sigma_to_t,
    threshold_sample, to_f32,
};
use crate::tensor::Tensor;
use anyhow::{Result, bail};

const CLASS: &str = "DPMSolverMultistepScheduler";

pub struct DpmSolverMultistepScheduler {
    schedule: NoiseSchedule,
    prediction: Prediction,
    spacing: Spacing,
    steps_offset: usize,
    sde: bool,
    order: usize,
    heun: bool,
    lower_order_final: bool,
    euler_at_final: bool,
    use_karras_sigmas: bool,
    cosine: bool,
    final_sigmas_type: String,
    lambda_min_clipped: f64,
    thresholding: Option<(f64, f64)>,
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    // Multistep state: the previous step's data prediction and how many steps ran.
    prev_x0: Option<Tensor>,
    lower_order_nums: usize,
    step_order: StepOrder,
}

impl DpmSolverMultistepScheduler {
    pub fn new(cfg: &SchedulerConfig) -> Result<DpmSolverMultistepScheduler> {
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
        let spacing = Spacing::parse(cfg.timestep_spacing.as_deref(), "linspace", CLASS)?;
        let algorithm = one_of(
            "algorithm_type",
            &cfg.algorithm_type,
            CLASS,
            &["dpmsolver++", "sde-dpmsolver++"],
        )?;
        if !(1..=2).contains(&cfg.solver_order) {
            bail!(
                "scheduler_config: solver_order {} is not supported by {CLASS} (supported: 1, 2)",
                cfg.solver_order
            );
        }
        let solver = one_of(
            "solver_type",
            &cfg.solver_type,
            CLASS,
            &["midpoint", "heun"],
        )?;
        if let Some(v) = &cfg.variance_type {
            bail!("scheduler_config: variance_type '{v}' is not supported by {CLASS}");
        }
        off("use_exponential_sigmas", cfg.use_exponential_sigmas, CLASS)?;
        off("use_beta_sigmas", cfg.use_beta_sigmas, CLASS)?;
        off("use_lu_lambdas", cfg.use_lu_lambdas, CLASS)?;
        off("use_flow_sigmas", cfg.use_flow_sigmas, CLASS)?;
        final_sigma(&cfg.final_sigmas_type, &schedule, CLASS)?;
        Ok(DpmSolverMultistepScheduler {
            schedule,
            prediction,
            spacing,
            steps_offset: cfg.steps_offset,
            sde: algorithm == "sde-dpmsolver++",
            order: cfg.solver_order,
            heun: solver == "heun",
            lower_order_final: cfg.lower_order_final,
            euler_at_final: cfg.euler_at_final,
            use_karras_sigmas: cfg.use_karras_sigmas,
            cosine: cfg.trained_betas.is_none()
                && cfg.beta_schedule.as_deref() == Some("squaredcos_cap_v2"),
            final_sigmas_type: cfg.final_sigmas_type.clone(),
            lambda_min_clipped: cfg.lambda_min_clipped.unwrap_or(f64::NEG_INFINITY),
            thresholding: cfg
                .thresholding
                .then_some((cfg.dynamic_thresholding_ratio, cfg.sample_max_value)),
            timesteps: vec![],
            sigmas: vec![],
            prev_x0: None,
            lower_order_nums: 0,
            step_order: StepOrder::default(),
        })
    }

    /// (α_t, σ_t, λ) at σ: α_t = 1/√(σ²+1), σ_t = σ·α_t, λ = ln α_t − ln σ_t.
    fn alpha_sigma_lambda(sigma: f64) -> (f64, f64, f64) {
        let a = 1.0 / (sigma * sigma + 1.0).sqrt();
        let s = sigma * a;
        (a, s, a.ln() - s.ln())
    }

    /// The first training timestep past which λ(t) < lambda_min_clipped is cut off (T when
    /// unclipped): `searchsorted(flip(λ), lambda_min_clipped)`.
    fn last_timestep(&self) -> usize {
        let train = self.schedule.num_train_timesteps();
        if self.lambda_min_clipped == f64::NEG_INFINITY {
            return train;
        }
        let clipped = self
            .schedule
            .alphas_cumprod
            .iter()
            .filter(|&&a| {
                let a = a as f32;
                let lambda = a.sqrt().ln() - (1.0 - a).sqrt().ln();
                (lambda as f64) < self.lambda_min_clipped
            })
            .count();
        train - clipped
    }
}

impl Scheduler for DpmSolverMultistepScheduler {
    fn class_name(&self) -> &'static str {
        CLASS
    }

    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let train = self.schedule.num_train_timesteps();
        check_steps(n, train, CLASS)?;
        let last = self.last_timestep();
        let mut timesteps: Vec<f64> = match self.spacing {
            Spacing::Linspace => {
                let mut v: Vec<f64> = linspace(0.0, last as f64 - 1.0, n + 1)
                    .into_iter()
                    .rev()
                    .map(round)
                    .collect();
                v.pop();
                v
            }
            Spacing::Leading => {
                let ratio = last / (n + 1);
                (1..=n)
                    .rev()
                    .map(|i| (i * ratio + self.steps_offset) as f64)
                    .collect()
            }
            Spacing::Trailing => arange(last as f64, 0.0, -(train as f64 / n as f64))
                .into_iter()
                .map(|x| round(x) - 1.0)
                .collect(),
        };
        let table = self.schedule.sigma_table();
        let mut sigmas: Vec<f64> = if self.use_karras_sigmas {
            let sigmas = karras_sigmas(table[0], table[train - 1], n);
            let log_sigmas = log_f32(&table);
            timesteps = sigmas
                .iter()
                .map(|&s| {
                    let t = sigma_to_t(s, &log_sigmas);
                    // Rounded except for the cosine schedule; int64 truncates.
                    if self.cosine { t.trunc() } else { round(t) }
                })
                .collect();
            sigmas
        } else {
            timesteps.iter().map(|&t| interp(t, &table)).collect()
        };
        sigmas.push(final_sigma(&self.final_sigmas_type, &self.schedule, CLASS)?);
        self.sigmas = to_f32(sigmas);
        self.timesteps = timesteps;
        self.prev_x0 = None;
        self.lower_order_nums = 0;
        self.step_order.reset();
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn sigmas(&self) -> Option<&[f64]> {
        Some(&self.sigmas)
    }

    fn needs_noise(&self, i: usize) -> bool {
        // σ_{t,i+1}·√(1 − e^{−2h}) is 0 only when σᵢ₊₁ = 0.
        self.sde && self.sigmas.get(i + 1).is_some_and(|&s| s > 0.0)
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        i: usize,
        sample: &Tensor,
        noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.step_order.check(i, self.timesteps.len(), CLASS)?;
        let n = self.timesteps.len();
        let lower_order_final = i == n - 1
            && (self.euler_at_final
                || (self.lower_order_final && n < 15)
                || self.final_sigmas_type == "zero");
        // Data prediction x̂₀ at σᵢ.
        let (a_s0, s_s0, l_s0) = Self::alpha_sigma_lambda(self.sigmas[i]);
        let x0 = match self.prediction {
            Prediction::Epsilon => combine(&[(1.0 / a_s0, sample), (-s_s0 / a_s0, model_output)])?,
            Prediction::Sample => combine(&[(1.0, model_output)])?,
            Prediction::VPrediction => combine(&[(a_s0, sample), (-s_s0, model_output)])?,
        };
        let x0 = match self.thresholding {
            Some((ratio, max)) => threshold_sample(&x0, ratio, max)?,
            None => x0,
        };
        let (a_t, s_t, l_t) = Self::alpha_sigma_lambda(self.sigmas[i + 1]);
        let h = l_t - l_s0;
        // The D coefficient c (x_{i+1} = c_x·x + c·D + ...) and the noise term.
        let (c_x, c_d, c_z) = if self.sde {
            (
                s_t / s_s0 * (-h).exp(),
                a_t * (1.0 - (-2.0 * h).exp()),
                s_t * (1.0 - (-2.0 * h).exp()).sqrt(),
            )
        } else {
            (s_t / s_s0, -a_t * ((-h).exp() - 1.0), 0.0)
        };
        let z = if c_z > 0.0 {
            Some(need_noise(noise, CLASS, i)?)
        } else {
            None
        };
        let first_order = self.order == 1 || self.lower_order_nums < 1 || lower_order_final;
        let prev = match (&self.prev_x0, first_order) {
            (Some(x0_prev), false) => {
                let (_, _, l_s1) = Self::alpha_sigma_lambda(self.sigmas[i - 1]);
                let r0 = (l_s0 - l_s1) / h;
                // D₁ = (Dᵢ − Dᵢ₋₁)/r0 with weight c₁.
                let c1 = if self.heun {
                    if self.sde {
                        a_t * ((1.0 - (-2.0 * h).exp()) / (-2.0 * h) + 1.0)
                    } else {
                        a_t * (((-h).exp() - 1.0) / h + 1.0)
                    }
                } else {
                    0.5 * c_d
                };
                let mut terms = vec![(c_x, sample), (c_d + c1 / r0, &x0), (-c1 / r0, x0_prev)];
                if let Some(z) = z {
                    terms.push((c_z, z));
                }
                combine(&terms)?
            }
            _ => {
                let mut terms = vec![(c_x, sample), (c_d, &x0)];
                if let Some(z) = z {
                    terms.push((c_z, z));
                }
                combine(&terms)?
            }
        };
        if self.lower_order_nums < self.order {
            self.lower_order_nums += 1;
        }
        self.prev_x0 = Some(x0);
        Ok(prev)
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        let Some(&sigma) = self.sigmas.get(i) else {
            bail!("{CLASS}: add_noise at step {i}, past the timesteps");
        };
        let (a, s, _) = Self::alpha_sigma_lambda(sigma);
        combine(&[(a, original), (s, noise)])
    }
}
