#!/usr/bin/env python3
"""Reference sequences of Hugging Face diffusers' schedulers, the fixtures `src/schedulers/tests.rs`
checks spadework's schedulers against.

    python3 tools/scheduler_reference.py     # writes tests/fixtures/schedulers/*.json

Needs torch and diffusers (written with diffusers 0.42.1). Each case is a scheduler_config.json as
a checkpoint ships it (SD 1.5's PNDM, SD 2.1's v-prediction DDIM, SD-Turbo's trailing
Euler-ancestral, plus `linear` and `squaredcos_cap_v2` schedules and option variants) and an
optional `--scheduler` override name. The scheduler is built the way diffusers pipelines swap
schedulers: the config's `_class_name` class `from_config(json)`, then the override class
`from_config(that.config, **forced)`. For each inference step count the case records the
timesteps, the sigmas (schedulers that have them) and init_noise_sigma; for one or two counts it
runs every step on a [1, 4, 3, 5] sample with model outputs drawn from a seeded torch generator
and records the inputs, the noise the step used (passed as `variance_noise`, or returned by a
patched `randn_tensor` in the scheduler's module) and prev_sample, plus scale_model_input and
add_noise outputs. `alphas_cumprod.json` holds the cumulative alpha products of each beta
schedule and dynamic-thresholding inputs and outputs. Values are f32, written with 9 significant digits (exact round trip).
"""
import json
import os
import sys

import numpy as np
import torch
import diffusers
from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler, LCMScheduler, PNDMScheduler)
import diffusers.schedulers.scheduling_euler_ancestral_discrete as euler_a_mod
import diffusers.schedulers.scheduling_lcm as lcm_mod

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "schedulers")
SHAPE = (1, 4, 3, 5)

CLASSES = {c.__name__: c for c in [DDIMScheduler, PNDMScheduler, EulerDiscreteScheduler,
                                   EulerAncestralDiscreteScheduler, DPMSolverMultistepScheduler,
                                   LCMScheduler]}
# The fixture file of each class (the Rust module's name).
FILES = {"DDIMScheduler": "ddim", "PNDMScheduler": "pndm",
         "EulerDiscreteScheduler": "euler_discrete",
         "EulerAncestralDiscreteScheduler": "euler_ancestral_discrete",
         "DPMSolverMultistepScheduler": "dpmsolver_multistep", "LCMScheduler": "lcm"}
# `--scheduler` names: the diffusers class and the config values the name forces.
OVERRIDES = {
    "ddim": (DDIMScheduler, {}),
    "pndm": (PNDMScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler-a": (EulerAncestralDiscreteScheduler, {}),
    "dpm++2m": (DPMSolverMultistepScheduler,
                dict(algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=False)),
    "dpm++2m-karras": (DPMSolverMultistepScheduler,
                       dict(algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True)),
    "lcm": (LCMScheduler, {}),
}

# Stable Diffusion 1.5's scheduler_config.json (runwayml/stable-diffusion-v1-5).
SD15 = {"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
        "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
        "trained_betas": None, "clip_sample": False}
# Stable Diffusion 2.1's (stabilityai/stable-diffusion-2-1, 768 px v-prediction).
SD21 = {"_class_name": "DDIMScheduler", "_diffusers_version": "0.8.0", "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
        "num_train_timesteps": 1000, "prediction_type": "v_prediction",
        "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
        "trained_betas": None}
# SD-Turbo's use: Euler-ancestral, trailing spacing, one step.
TURBO = {"_class_name": "EulerAncestralDiscreteScheduler", "beta_end": 0.012,
         "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
         "prediction_type": "epsilon", "steps_offset": 1, "timestep_spacing": "trailing",
         "trained_betas": None}
LINEAR = {"_class_name": "DDIMScheduler"}  # every default: linear 1e-4..0.02, clip_sample, ...
COSINE = {"_class_name": "DDIMScheduler", "beta_schedule": "squaredcos_cap_v2"}



# name, config, override, extra, step counts, step counts to run step by step.
CASES = [
    # ---- PNDM (PLMS with skip_prk_steps) ----
    ("pndm_sd15", SD15, None, {}, [1, 4, 7, 20, 50], [4, 1]),
    ("pndm_sd21_vpred", SD21, "pndm", {}, [4, 7], [5]),
    ("pndm_linear_trailing", {**LINEAR, "_class_name": "PNDMScheduler",
                              "timestep_spacing": "trailing", "skip_prk_steps": True},
     None, {}, [1, 4, 7], [4]),
    ("pndm_cosine_linspace", {**COSINE, "_class_name": "PNDMScheduler",
                              "timestep_spacing": "linspace", "skip_prk_steps": True},
     None, {}, [4, 7], [4]),
    # ---- DDIM ----
    ("ddim_sd15", SD15, "ddim", {}, [1, 4, 7, 20, 50], [4]),
    ("ddim_sd15_eta1", SD15, "ddim", dict(eta=1.0), [4], [4]),
    ("ddim_sd21_vpred", SD21, None, {}, [1, 4, 7, 20], [4]),
    ("ddim_sd21_vpred_trailing", {**SD21, "timestep_spacing": "trailing"}, None, dict(eta=0.5),
     [1, 4, 7, 20], [4]),
    ("ddim_linear_defaults", LINEAR, None, {}, [1, 4, 7, 20], [4]),
    ("ddim_linear_sample_linspace", {**LINEAR, "prediction_type": "sample",
                                     "timestep_spacing": "linspace"}, None, {}, [1, 4, 7], [4]),
    ("ddim_cosine_threshold", {**COSINE, "thresholding": True, "sample_max_value": 2.5},
     None, {}, [4, 7], [4]),
    # ---- Euler ----
    ("euler_sd15", SD15, "euler", {}, [1, 4, 7, 20], [4]),
    ("euler_sd15_leading", {**SD15, "timestep_spacing": "leading"}, "euler", {}, [1, 4, 7], [4]),
    ("euler_sd21_vpred_trailing", {**SD21, "timestep_spacing": "trailing"}, "euler", {},
     [1, 4, 7], [4]),
    ("euler_cosine_karras", {**COSINE, "_class_name": "EulerDiscreteScheduler",
                             "use_karras_sigmas": True}, None, {}, [4, 7], [4]),
    ("euler_linear_sample", {**LINEAR, "_class_name": "EulerDiscreteScheduler",
                             "prediction_type": "sample", "final_sigmas_type": "sigma_min"},
     None, {}, [4], [4]),
    # ---- Euler ancestral ----
    ("euler_a_turbo", TURBO, None, {}, [1, 2, 4], [1, 4]),
    ("euler_a_sd15", SD15, "euler-a", {}, [1, 4, 7, 20], [4]),
    ("euler_a_sd21_vpred_leading", {**SD21, "timestep_spacing": "leading"}, "euler-a", {},
     [4, 7], [4]),
    # ---- DPM-Solver++ ----
    ("dpmpp2m_sd15", SD15, "dpm++2m", {}, [1, 4, 7, 20], [4]),
    ("dpmpp2m_karras_sd15", SD15, "dpm++2m-karras", {}, [1, 4, 7, 20], [4]),
    ("dpmpp2m_sd21_vpred_trailing", {**SD21, "timestep_spacing": "trailing"}, "dpm++2m", {},
     [1, 4, 7], [4]),
    ("dpmpp2m_karras_linear_order1_final", {**LINEAR, "_class_name": "DPMSolverMultistepScheduler",
                                            "use_karras_sigmas": True, "euler_at_final": True,
                                            "final_sigmas_type": "sigma_min"},
     None, {}, [4, 7, 20], [16]),
    ("dpmpp_heun_sigma_min_leading", {**LINEAR, "_class_name": "DPMSolverMultistepScheduler",
                                      "solver_type": "heun", "final_sigmas_type": "sigma_min",
                                      "timestep_spacing": "leading", "steps_offset": 1,
                                      "lower_order_final": False},
     None, {}, [4, 7], [5]),
    ("dpmpp_order1_sample", {**LINEAR, "_class_name": "DPMSolverMultistepScheduler",
                             "solver_order": 1, "prediction_type": "sample"}, None, {}, [4], [4]),
    ("dpmpp_threshold", {**LINEAR, "_class_name": "DPMSolverMultistepScheduler",
                         "thresholding": True, "sample_max_value": 1.5}, None, {}, [4], [4]),
    ("dpmpp_sde_sd15", {**SD15, "_class_name": "DPMSolverMultistepScheduler",
                        "algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
     None, {}, [4, 7], [4]),
    # ---- LCM ----
    ("lcm_sd15", SD15, "lcm", {}, [1, 2, 4, 8], [4, 1]),
    ("lcm_sd21_vpred_clip", {**SD21, "clip_sample": True}, "lcm", {}, [2, 4], [4]),
    ("lcm_linear_threshold", {**LINEAR, "_class_name": "LCMScheduler", "thresholding": True,
                              "sample_max_value": 1.8, "original_inference_steps": 20,
                              "timestep_scaling": 5.0}, None, {}, [3, 5], [3]),
]


def f32(x):
    """A list of f32 values (or one), as JSON numbers with 9 significant digits."""
    a = np.asarray(x, dtype=np.float32).reshape(-1)
    return [float("%.9g" % v) for v in a]


def name_of(sched):
    return type(sched).__name__


def build(config, override):
    cls = CLASSES[config["_class_name"]]
    sched = cls.from_config(config)
    if override is not None:
        target, forced = OVERRIDES[override]
        sched = target.from_config(sched.config, **forced)
    return sched


class NoiseTap:
    """Stands in for `randn_tensor` in a scheduler module: returns the next queued tensor."""

    def __init__(self):
        self.queue = []
        self.used = []

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None):
        t = self.queue.pop(0)
        assert tuple(t.shape) == tuple(shape)
        self.used.append(t)
        return t.to(dtype or torch.float32)


def noise_used(sched, extra, i, n):
    """Whether diffusers' step i (of n timesteps) draws noise."""
    name = type(sched).__name__
    if name == "DDIMScheduler":
        return extra.get("eta", 0.0) > 0
    if name == "EulerAncestralDiscreteScheduler":
        return True
    if name == "LCMScheduler":
        return i != sched.num_inference_steps - 1
    if name == "DPMSolverMultistepScheduler":
        return sched.config.algorithm_type.startswith("sde-")
    return False


def run(config, override, extra, n, seed):
    sched = build(config, override)
    sched.set_timesteps(n)
    g = torch.Generator().manual_seed(seed)
    ts = list(sched.timesteps)
    if name_of(sched) != "PNDMScheduler":  # diffusers finds a step's index by its timestep
        assert len(set(float(t) for t in ts)) == len(ts), f"repeated timesteps {ts}"
    sample = torch.randn(SHAPE, generator=g) * float(sched.init_noise_sigma)
    out = {"n": n, "sample": f32(sample), "steps": []}
    tap = NoiseTap()
    name = type(sched).__name__
    mod = {"EulerAncestralDiscreteScheduler": euler_a_mod, "LCMScheduler": lcm_mod}.get(name)
    saved = mod.randn_tensor if mod else None
    if mod:
        mod.randn_tensor = tap
    try:
        for i, t in enumerate(ts):
            model_output = torch.randn(SHAPE, generator=g)
            noise = torch.randn(SHAPE, generator=g)
            scaled = sched.scale_model_input(sample, t)
            kw = {}
            uses = noise_used(sched, extra, i, len(ts))
            if name == "DDIMScheduler":
                kw = dict(eta=extra.get("eta", 0.0))
                if uses:
                    kw["variance_noise"] = noise
            elif name == "DPMSolverMultistepScheduler" and uses:
                kw["variance_noise"] = noise
            elif mod and uses:
                tap.queue.append(noise)
            prev = sched.step(model_output, t, sample, **kw).prev_sample
            assert not tap.queue, "queued noise not drawn"
            rec = {"model_output": f32(model_output), "prev_sample": f32(prev)}
            if uses:
                rec["noise"] = f32(noise)
            if name in ("EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler"):
                rec["scaled"] = f32(scaled)
            out["steps"].append(rec)
            sample = prev
    finally:
        if mod:
            mod.randn_tensor = saved
    # add_noise at the second timestep (img2img's start), fresh scheduler state.
    sched = build(config, override)
    sched.set_timesteps(n)
    k = min(1, len(sched.timesteps) - 1)
    x0 = torch.randn(SHAPE, generator=g)
    eps = torch.randn(SHAPE, generator=g)
    noisy = sched.add_noise(x0, eps, sched.timesteps[k:k + 1])
    out["add_noise"] = {"i": k, "original": f32(x0), "noise": f32(eps), "out": f32(noisy)}
    return out


def case(name, config, override, extra, counts, runs, seed):
    rec = {"name": name, "config": config, "override": override, "eta": extra.get("eta", 0.0),
           "class": None, "schedules": [], "runs": []}
    for n in counts:
        s = build(config, override)
        rec["class"] = type(s).__name__
        s.set_timesteps(n)
        sch = {"n": n, "timesteps": [float(t) for t in s.timesteps.numpy().astype(np.float64)],
               "init_noise_sigma": float(s.init_noise_sigma)}
        if hasattr(s, "sigmas") and type(s).__name__ not in ("DDIMScheduler", "PNDMScheduler",
                                                            "LCMScheduler"):
            sch["sigmas"] = f32(s.sigmas)
        rec["schedules"].append(sch)
    for j, n in enumerate(runs):
        rec["runs"].append(run(config, override, extra, n, seed * 100 + j))
    return rec


def alphas_cumprod():
    out = {}
    for sched in ["linear", "scaled_linear", "squaredcos_cap_v2"]:
        cfg = dict(beta_schedule=sched)
        if sched == "scaled_linear":
            cfg.update(beta_start=0.00085, beta_end=0.012)
        s = DDIMScheduler(**cfg)
        out[sched] = {"config": cfg, "alphas_cumprod": f32(s.alphas_cumprod)}
    return out


def thresholds():
    """`_threshold_sample` on [2, 4, 3, 5] inputs whose quantile lies inside [1, max]."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn((2, 4, 3, 5), generator=g) * torch.tensor([1.5, 0.8]).view(2, 1, 1, 1)
    out = []
    for ratio, max_value in [(0.9, 10.0), (0.995, 1.5), (0.5, 3.0)]:
        s = DDIMScheduler(thresholding=True, dynamic_thresholding_ratio=ratio,
                          sample_max_value=max_value)
        out.append({"ratio": ratio, "sample_max_value": max_value, "x": f32(x),
                    "out": f32(s._threshold_sample(x))})
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    by_family = {}
    for seed, (name, config, override, extra, counts, runs) in enumerate(CASES):
        rec = case(name, config, override, extra, counts, runs, seed + 1)
        by_family.setdefault(FILES[rec["class"]], []).append(rec)
    meta = {"diffusers": diffusers.__version__, "torch": torch.__version__,
            "shape": list(SHAPE)}
    for family, cases in by_family.items():
        path = os.path.join(OUT, f"{family}.json")
        with open(path, "w") as f:
            json.dump({"meta": meta, "cases": cases}, f, separators=(",", ":"))
        print(f"{path}: {len(cases)} cases, {os.path.getsize(path) // 1024} KB", file=sys.stderr)
    path = os.path.join(OUT, "alphas_cumprod.json")
    with open(path, "w") as f:
        json.dump({"meta": meta, **alphas_cumprod(), "threshold": thresholds()}, f,
                  separators=(",", ":"))
    print(f"{path}: {os.path.getsize(path) // 1024} KB", file=sys.stderr)


if __name__ == "__main__":
    main()
