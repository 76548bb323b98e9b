//! The schedulers against diffusers' own sequences (`tests/fixtures/schedulers/*.json`, written by
//! `tools/scheduler_reference.py`): integer timesteps exactly, fractional timesteps, sigmas,
//! init_noise_sigma and ᾱ to 1e-6 relative, each step's prev_sample (given diffusers' input
//! sample, model output and noise), scale_model_input and add_noise to 1e-5 of the values'
//! scale, on the CPU and (some cases) on the GPU device.
use super::*;
use crate::backend::{BackendChoice, Device};
use serde_json::Value;

const SHAPE: [usize; 4] = [1, 4, 3, 5];
/// Step outputs: max |got − want| ≤ STEP_TOL · max(1, max |want|).
const STEP_TOL: f32 = 1e-5;
/// Schedule values: |got − want| ≤ REL_TOL · |want| (absolute below 1).
const REL_TOL: f64 = 1e-6;

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/schedulers")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run tools/scheduler_reference.py)", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn cases(file: &str) -> Vec<Value> {
    fixture(file)["cases"].as_array().unwrap().clone()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn tensor(dev: &Device, v: &Value) -> Tensor {
    Tensor::from_vec(dev, &SHAPE, floats(v)).unwrap()
}

fn build(case: &Value) -> Box<dyn Scheduler> {
    let cfg: SchedulerConfig = serde_json::from_value(case["config"].clone()).unwrap();
    let mut s = from_config(&cfg, case["override"].as_str()).unwrap();
    assert_eq!(s.class_name(), case["class"].as_str().unwrap());
    s.set_eta(case["eta"].as_f64().unwrap()).unwrap();
    s
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1f32, |m, x| m.max(x.abs()));
    let err = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        err <= STEP_TOL * scale,
        "{what}: max |Δ| {err:.3e} > {STEP_TOL:e}·{scale}\n got {:?}\nwant {:?}",
        &got[..6],
        &want[..6]
    );
    err / scale
}

fn assert_rel(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (k, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= tol * b.abs().max(1.0),
            "{what}[{k}]: {a} vs {b} (tolerance {tol:e})\n got {got:?}\nwant {want:?}"
        );
    }
}

/// Timesteps, sigmas and init_noise_sigma of every recorded step count.
fn check_schedules(case: &Value) {
    let name = case["name"].as_str().unwrap();
    let mut s = build(case);
    for sch in case["schedules"].as_array().unwrap() {
        let n = sch["n"].as_u64().unwrap() as usize;
        s.set_timesteps(n).unwrap();
        let want = f64s(&sch["timesteps"]);
        let what = format!("{name} n={n}");
        if want.iter().all(|t| t.fract() == 0.0) {
            assert_eq!(s.timesteps(), &want[..], "{what}: timesteps");
        } else {
            // Fractional (Euler linspace or Karras σ→t) timesteps, f32.
            assert_rel(&format!("{what}: timesteps"), s.timesteps(), &want, REL_TOL);
        }
        match (sch.get("sigmas"), s.sigmas()) {
            (Some(w), Some(g)) => assert_rel(&format!("{what}: sigmas"), g, &f64s(w), REL_TOL),
            (None, None) => {}
            (w, g) => panic!(
                "{what}: sigmas recorded {} vs ours {}",
                w.is_some(),
                g.is_some()
            ),
        }
        let want = sch["init_noise_sigma"].as_f64().unwrap();
        assert_rel(
            &format!("{what}: init_noise_sigma"),
            &[s.init_noise_sigma()],
            &[want],
            REL_TOL,
        );
    }
}

/// Every recorded run step by step on `dev`, each step given diffusers' input; returns the
/// largest relative error.
fn check_runs(case: &Value, dev: &Device) -> f32 {
    let name = case["name"].as_str().unwrap();
    let mut worst = 0f32;
    for run in case["runs"].as_array().unwrap() {
        let n = run["n"].as_u64().unwrap() as usize;
        let mut s = build(case);
        s.set_timesteps(n).unwrap();
        let steps = run["steps"].as_array().unwrap();
        assert_eq!(steps.len(), s.timesteps().len(), "{name} n={n}: steps");
        let mut sample = tensor(dev, &run["sample"]);
        for (i, st) in steps.iter().enumerate() {
            let what = format!("{name} n={n} step {i}");
            if let Some(scaled) = st.get("scaled") {
                let got = s.scale_model_input(&sample, i).unwrap().to_vec().unwrap();
                worst = worst.max(assert_close(
                    &format!("{what} scale_model_input"),
                    &got,
                    &floats(scaled),
                ));
            }
            let mo = tensor(dev, &st["model_output"]);
            let noise = st.get("noise").map(|v| tensor(dev, v));
            if s.needs_noise(i) {
                assert!(
                    noise.is_some(),
                    "{what}: we need noise, diffusers drew none"
                );
            }
            let prev = s.step(&mo, i, &sample, noise.as_ref()).unwrap();
            assert_eq!(prev.device().is_gpu(), dev.is_gpu());
            let want = floats(&st["prev_sample"]);
            worst = worst.max(assert_close(&what, &prev.to_vec().unwrap(), &want));
            sample = Tensor::from_vec(dev, &SHAPE, want).unwrap();
        }
        let an = &run["add_noise"];
        let i = an["i"].as_u64().unwrap() as usize;
        let got = s
            .add_noise(&tensor(dev, &an["original"]), &tensor(dev, &an["noise"]), i)
            .unwrap();
        worst = worst.max(assert_close(
            &format!("{name} n={n} add_noise"),
            &got.to_vec().unwrap(),
            &floats(&an["out"]),
        ));
    }
    worst
}

fn check_file(file: &str) {
    let mut report = vec![];
    for case in cases(file) {
        check_schedules(&case);
        let worst = check_runs(&case, &Device::Cpu);
        report.push(format!("{} {worst:.1e}", case["name"].as_str().unwrap()));
    }
    eprintln!(
        "{file}: worst relative step error per case: {}",
        report.join(", ")
    );
}

#[test]
fn alphas_cumprod_match_diffusers() {
    let f = fixture("alphas_cumprod");
    for schedule in ["linear", "scaled_linear", "squaredcos_cap_v2"] {
        let rec = &f[schedule];
        let cfg: SchedulerConfig = serde_json::from_value(rec["config"].clone()).unwrap();
        let ns = NoiseSchedule::new(&cfg, "test", (0.0001, 0.02, "linear")).unwrap();
        assert_rel(
            schedule,
            &ns.alphas_cumprod,
            &f64s(&rec["alphas_cumprod"]),
            REL_TOL,
        );
    }
}

#[test]
fn threshold_matches_diffusers() {
    for rec in fixture("alphas_cumprod")["threshold"].as_array().unwrap() {
        let x = Tensor::from_vec(&Device::Cpu, &[2, 4, 3, 5], floats(&rec["x"])).unwrap();
        let ratio = rec["ratio"].as_f64().unwrap();
        let got = threshold_sample(&x, ratio, rec["sample_max_value"].as_f64().unwrap()).unwrap();
        assert_close(
            &format!("threshold {ratio}"),
            &got.to_vec().unwrap(),
            &floats(&rec["out"]),
        );
    }
}

#[test]
fn ddim_matches_diffusers() {
    check_file("ddim");
}

#[test]
fn pndm_matches_diffusers() {
    check_file("pndm");
}

#[test]
fn euler_discrete_matches_diffusers() {
    check_file("euler_discrete");
}

#[test]
fn euler_ancestral_discrete_matches_diffusers() {
    check_file("euler_ancestral_discrete");
}

#[test]
fn dpmsolver_multistep_matches_diffusers() {
    check_file("dpmsolver_multistep");
}

#[test]
fn lcm_matches_diffusers() {
    check_file("lcm");
}

/// The GPU device; under CI (`CI` set) a missing adapter fails the test.
fn gpu() -> Option<Device> {
    match Device::select(BackendChoice::Gpu, None) {
        Ok(d) => Some(d),
        Err(e) => {
            if std::env::var_os("CI").is_some() {
                panic!("CI: no GPU adapter for the scheduler GPU test: {e:#}");
            }
            eprintln!("scheduler GPU test not run (no adapter, CI unset): {e:#}");
            None
        }
    }
}

/// Multi-step sequences on the GPU device: lincomb-only steps (PNDM, DPM-Solver++ with Karras
/// sigmas, Euler-ancestral with noise, LCM) and the host round trips (DDIM thresholding, LCM
/// clipping) give diffusers' outputs there too; one chain also runs on its own outputs and
/// matches the CPU chain.
#[test]
fn gpu_runs_match_diffusers() {
    let Some(dev) = gpu() else { return };
    eprintln!("scheduler GPU runs on {}", dev.describe());
    let want = [
        ("pndm", "pndm_sd15"),
        ("dpmsolver_multistep", "dpmpp2m_karras_sd15"),
        ("dpmsolver_multistep", "dpmpp_threshold"),
        ("euler_ancestral_discrete", "euler_a_sd15"),
        ("ddim", "ddim_cosine_threshold"),
        ("lcm", "lcm_sd21_vpred_clip"),
    ];
    for (file, name) in want {
        let case = cases(file)
            .into_iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no case {name} in {file}.json"));
        check_runs(&case, &dev);
    }
    // A whole chain on each device from the same start.
    let case = cases("pndm")
        .into_iter()
        .find(|c| c["name"] == "pndm_sd15")
        .unwrap();
    let run = &case["runs"][0];
    let chain = |dev: &Device| -> Vec<f32> {
        let mut s = build(&case);
        s.set_timesteps(run["n"].as_u64().unwrap() as usize)
            .unwrap();
        let mut x = tensor(dev, &run["sample"]);
        for (i, st) in run["steps"].as_array().unwrap().iter().enumerate() {
            x = s
                .step(&tensor(dev, &st["model_output"]), i, &x, None)
                .unwrap();
        }
        x.to_vec().unwrap()
    };
    let last = run["steps"].as_array().unwrap().last().unwrap();
    assert_close(
        "pndm chain cpu",
        &chain(&Device::Cpu),
        &floats(&last["prev_sample"]),
    );
    assert_close(
        "pndm chain gpu",
        &chain(&dev),
        &floats(&last["prev_sample"]),
    );
}

fn err_of(json: &str, name: Option<&str>, steps: usize) -> String {
    let cfg = SchedulerConfig::from_json(json).unwrap();
    match from_config(&cfg, name).and_then(|mut s| s.set_timesteps(steps)) {
        Ok(()) => panic!("{json} {name:?} {steps}: no error"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn bad_configs_are_errors_naming_the_key() {
    let sd15 = r#"{"_class_name": "PNDMScheduler", "beta_schedule": "scaled_linear",
        "beta_start": 0.00085, "beta_end": 0.012, "skip_prk_steps": true, "steps_offset": 1}"#;
    let cases: &[(&str, Option<&str>, usize, &[&str])] = &[
        (
            r#"{"_class_name": "DDIMScheduler", "beta_schedule": "cubic"}"#,
            None,
            4,
            &[
                "beta_schedule",
                "'cubic'",
                "linear, scaled_linear, squaredcos_cap_v2",
            ],
        ),
        (sd15, None, 0, &["num_inference_steps 0"]),
        (
            sd15,
            Some("euler"),
            1001,
            &["num_inference_steps 1001", "1000"],
        ),
        (sd15, Some("lcm"), 51, &["original_inference_steps 50"]),
        (
            r#"{"_class_name": "DDIMScheduler", "timestep_spacing": "middle"}"#,
            None,
            4,
            &[
                "timestep_spacing",
                "'middle'",
                "leading, trailing, linspace",
            ],
        ),
        (
            r#"{"_class_name": "PNDMScheduler", "skip_prk_steps": true,
                "prediction_type": "sample"}"#,
            None,
            4,
            &["prediction_type", "'sample'", "PNDMScheduler"],
        ),
        (
            r#"{"_class_name": "DDIMScheduler", "prediction_type": "sample"}"#,
            Some("euler-a"),
            4,
            &[
                "prediction_type",
                "'sample'",
                "EulerAncestralDiscreteScheduler",
            ],
        ),
        (
            r#"{"_class_name": "DDIMScheduler", "prediction_type": "flow_prediction"}"#,
            Some("dpm++2m"),
            4,
            &["prediction_type", "'flow_prediction'"],
        ),
        (
            r#"{"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver"}"#,
            None,
            4,
            &[
                "algorithm_type",
                "'dpmsolver'",
                "dpmsolver++, sde-dpmsolver++",
            ],
        ),
        (
            r#"{"_class_name": "DPMSolverMultistepScheduler", "solver_order": 3}"#,
            None,
            4,
            &["solver_order 3"],
        ),
        (
            r#"{"_class_name": "EulerDiscreteScheduler", "final_sigmas_type": "one"}"#,
            None,
            4,
            &["final_sigmas_type", "'one'"],
        ),
        (
            r#"{"_class_name": "PNDMScheduler"}"#,
            None,
            4,
            &["skip_prk_steps false"],
        ),
        (
            r#"{"_class_name": "HeunDiscreteScheduler"}"#,
            None,
            4,
            &[
                "_class_name 'HeunDiscreteScheduler'",
                "DDIMScheduler",
                "euler-a",
            ],
        ),
        (
            sd15,
            Some("heun"),
            4,
            &["'heun'", "ddim, pndm, euler, euler-a, dpm++2m"],
        ),
        (r#"{}"#, None, 4, &["no _class_name"]),
    ];
    for (json, name, steps, needles) in cases {
        let e = err_of(json, *name, *steps);
        for n in *needles {
            assert!(
                e.contains(n),
                "error for {json} {name:?} {steps}:\n  {e}\nlacks '{n}'"
            );
        }
    }
    // η is DDIM's.
    let cfg = SchedulerConfig::from_json(sd15).unwrap();
    let mut s = from_config(&cfg, Some("euler")).unwrap();
    assert!(format!("{:#}", s.set_eta(0.5).unwrap_err()).contains("only DDIM"));
    // Stateful schedulers step in order.
    let mut s = from_config(&cfg, None).unwrap();
    s.set_timesteps(4).unwrap();
    let x = Tensor::from_vec(&Device::Cpu, &SHAPE, vec![0.5; 60]).unwrap();
    s.step(&x, 0, &x, None).unwrap();
    let e = format!("{:#}", s.step(&x, 2, &x, None).unwrap_err());
    assert!(e.contains("step 1 is next"), "{e}");
    // Stochastic steps without noise.
    let mut s = from_config(&cfg, Some("euler-a")).unwrap();
    s.set_timesteps(4).unwrap();
    let e = format!("{:#}", s.step(&x, 0, &x, None).unwrap_err());
    assert!(e.contains("adds noise"), "{e}");
}

#[test]
fn sd15_config_file_builds_every_scheduler() {
    let cfg = SchedulerConfig::from_json(
        r#"{"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
            "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1,
            "trained_betas": null, "clip_sample": false}"#,
    )
    .unwrap();
    for name in SCHEDULER_NAMES {
        let mut s = from_config(&cfg, Some(name)).unwrap();
        s.set_timesteps(20).unwrap();
        assert!(!s.timesteps().is_empty(), "{name}");
    }
}
