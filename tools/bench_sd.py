#!/usr/bin/env python3
"""Side-by-side speed of one Stable Diffusion 1.5 UNet call and a 512² VAE decode: spadework's CPU
backend, diffusers on PyTorch CPU and candle's Stable Diffusion models (tools/candle_sd_bench),
all f32 with random weights at SD 1.5's real config, on the same cores.

    python3 tools/bench_sd.py [--runs 3] [--reps 2] [--threads 2] [--only unet,vae]
                              [--spadework target/release/spadework] [--candle PATH | --build-candle]
                              [--no-torch] [--json out.json]

Workloads (the names are `spadework bench`'s rows):
- "UNet SD1.5 call 64² ×2 77 tok": latent [2,4,64,64], timestep 999, text states [2,77,768]
  (classifier-free guidance's batch of 2);
- "VAE SD decode 512²": AutoencoderKL decode (post_quant_conv + decoder) of a [1,4,64,64] latent.

Each side runs each workload in a fresh process (so one workload's memory does not count for
the other): one warm-up, then --runs timed runs; it reports median/min ms and the peak RSS of
that process (VmHWM / ru_maxrss: building the random weights, the warm-up and the runs).
- PyTorch: this script as a child (`--_torch unet|vae`), diffusers' UNet2DConditionModel /
  AutoencoderKL built from the SD 1.5 config with PyTorch's default init, torch.set_num_threads,
  torch.no_grad, diffusers' default attention processor (SDPA);
- candle: `candle_sd_bench --only unet|vae --runs N` with RAYON_NUM_THREADS (--candle PATH, default
  $CANDLE_SD_TARGET/release/candle_sd_bench, CANDLE_SD_TARGET defaulting to target/candle_sd_bench;
  --build-candle builds it there: ~200 crates, 7-15 min on 2 cores); skipped if absent. A build
  with `--features avx512` (gemm's AVX-512 kernels) goes in as `--candle-label candle+avx512`;
- spadework (with --spadework PATH to a release binary): `PATH bench --backend cpu --only NAME
  --runs N --json F` with RAYON_NUM_THREADS (its row's host_rss_mib: reset before the build, so
  also build + warm-up + runs). A workload it has no row for is reported as such.

The machine is shared and noisy: the sides alternate (the order rotates every repetition), each
run records the 1-minute load average before and after it, and the table shows, per side, the
median of its repetitions' medians, the minimum of its minimums, the largest peak RSS, and the
ratios against PyTorch (time: <1 is faster than PyTorch).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CANDLE_TARGET = os.environ.get("CANDLE_SD_TARGET", os.path.join(ROOT, "target", "candle_sd_bench"))
WORKLOADS = {"unet": "UNet SD1.5 call 64² ×2 77 tok", "vae": "VAE SD decode 512²"}

# runwayml/stable-diffusion-v1-5 unet/config.json and vae/config.json
UNET_SD15 = dict(
    sample_size=64, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, downsample_padding=1,
    mid_block_scale_factor=1, act_fn="silu", norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=768,
    attention_head_dim=8,
)
VAE_SD15 = dict(
    in_channels=3, out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512), layers_per_block=2, act_fn="silu", latent_channels=4,
    norm_num_groups=32, sample_size=512, scaling_factor=0.18215,
)


def torch_child(which: str, runs: int, threads: int) -> None:
    """One workload on diffusers/PyTorch in this (fresh) process; prints one JSON line."""
    import diffusers
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.no_grad():
        if which == "unet":
            m = diffusers.UNet2DConditionModel(**UNET_SD15).eval()
            x = torch.randn(2, 4, 64, 64)
            t = torch.tensor(999)
            text = torch.randn(2, 77, 768)
            run = lambda: m(x, t, encoder_hidden_states=text).sample  # noqa: E731
        else:
            m = diffusers.AutoencoderKL(**VAE_SD15).eval()
            z = torch.randn(1, 4, 64, 64)
            run = lambda: m.decode(z).sample  # noqa: E731
        params = sum(p.numel() for p in m.parameters())
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        y = run()
        warm_ms = (time.perf_counter() - t0) * 1e3
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            y = run()
            times.append((time.perf_counter() - t0) * 1e3)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({
        "impl": "pytorch", "workload": WORKLOADS[which], "torch": torch.__version__,
        "diffusers": diffusers.__version__, "threads": torch.get_num_threads(), "params": params,
        "attn_processor": type(next(iter(m.attn_processors.values()))).__name__,
        "out_shape": list(y.shape), "build_s": round(build_s, 1), "warmup_ms": round(warm_ms, 1),
        "runs": runs, "times_ms": [round(t, 1) for t in times],
        "median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1),
        "peak_rss_mib": round(rss_kb / 1024),
    }))


def run_side(side: str, which: str, a, env: dict) -> dict:
    name = WORKLOADS[which]
    load0 = os.getloadavg()[0]
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d:
        if side == "pytorch":
            cmd = [sys.executable, os.path.abspath(__file__), "--_torch", which, "--runs", str(a.runs),
                   "--threads", str(a.threads)]
        elif side == a.candle_label:
            cmd = [a.candle, "--only", which, "--runs", str(a.runs)]
        else:
            out = os.path.join(d, "sw.json")
            cmd = [a.spadework, "bench", "--backend", "cpu", "--only", name, "--runs", str(a.runs), "--json", out]
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
        r: dict = {"side": side, "workload": name, "cmd": " ".join(cmd)}
        if p.returncode != 0:
            why = f"signal {-p.returncode}" if p.returncode < 0 else f"exit {p.returncode}"
            r.update(failed=why, stderr=p.stderr[-2000:])
        elif side == "spadework":
            doc = json.load(open(out))
            rows = [x for dev in doc["devices"] for x in dev["rows"] if x["workload"] == name]
            if not rows:
                r["missing"] = "no such row in this spadework build"
            else:
                x = rows[0]
                r.update(median_ms=x["median_ms"], min_ms=x["min_ms"], runs=x["runs"],
                         peak_rss_mib=x["host_rss_mib"], gflops=x.get("gflops"),
                         threads=doc["devices"][0]["info"].get("threads"))
        else:
            rows = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
            if rows:
                r.update(rows[0])
                r["side"] = side
            else:
                r.update(failed="no JSON line", stderr=p.stderr[-2000:])
    r["load_before"] = round(load0, 2)
    r["load_after"] = round(os.getloadavg()[0], 2)
    r["wall_s"] = round(time.time() - t0, 1)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="timed runs after one warm-up, per process")
    ap.add_argument("--reps", type=int, default=2, help="repetitions of every side, alternating")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="unet,vae", help="workloads: unet, vae")
    ap.add_argument("--spadework", help="a spadework release binary")
    ap.add_argument("--candle", default=os.path.join(CANDLE_TARGET, "release", "candle_sd_bench"))
    ap.add_argument("--candle-label", default="candle", help="the candle side's name in the table, e.g. "
                    "candle+avx512 for a build with --features avx512")
    ap.add_argument("--build-candle", action="store_true", help="cargo build tools/candle_sd_bench first")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", help="write every run and the summary")
    ap.add_argument("--_torch", choices=sorted(WORKLOADS), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._torch:
        torch_child(a._torch, a.runs, a.threads)
        return
    t = str(a.threads)
    env = dict(os.environ, RAYON_NUM_THREADS=t, OMP_NUM_THREADS=t, MKL_NUM_THREADS=t,
               XDG_RUNTIME_DIR=os.environ.get("XDG_RUNTIME_DIR", "/tmp"))
    if a.build_candle:
        print("building tools/candle_sd_bench …", file=sys.stderr)
        p = subprocess.run(["nice", "-n", "10", "cargo", "build", "--release", "--manifest-path",
                            "tools/candle_sd_bench/Cargo.toml"], cwd=ROOT, env=dict(env, CARGO_TARGET_DIR=CANDLE_TARGET))
        if p.returncode != 0:
            sys.exit("building tools/candle_sd_bench failed")
        a.candle = os.path.join(CANDLE_TARGET, "release", "candle_sd_bench")
    sides = [] if a.no_torch else ["pytorch"]
    if os.path.exists(a.candle):
        sides.append(a.candle_label)
    else:
        print(f"note: no candle binary at {a.candle} (--build-candle builds it); skipping candle", file=sys.stderr)
    if a.spadework:
        if not os.path.exists(a.spadework):
            sys.exit(f"no spadework binary at {a.spadework}")
        sides.append("spadework")
    works = [w.strip() for w in a.only.split(",") if w.strip()]
    for w in works:
        if w not in WORKLOADS:
            sys.exit(f"unknown workload {w!r}: expected one of {', '.join(WORKLOADS)}")

    results = []
    for rep in range(a.reps):
        order = sides[rep % len(sides):] + sides[:rep % len(sides)] if sides else []
        for w in works:
            for side in order:
                print(f"[rep {rep + 1}/{a.reps}] {side}: {WORKLOADS[w]} …", file=sys.stderr, flush=True)
                r = run_side(side, w, a, env)
                r["rep"] = rep
                results.append(r)
                print(json.dumps(r), flush=True)

    summary = []
    for w in works:
        name = WORKLOADS[w]
        base = None
        for side in sides:
            rs = [r for r in results if r["workload"] == name and r["side"] == side]
            ok = [r for r in rs if "median_ms" in r]
            s = {"workload": name, "side": side, "reps": len(ok),
                 "load": [min(min(r["load_before"], r["load_after"]) for r in rs),
                          max(max(r["load_before"], r["load_after"]) for r in rs)] if rs else None}
            if ok:
                s.update(median_ms=statistics.median(r["median_ms"] for r in ok),
                         min_ms=min(r["min_ms"] for r in ok),
                         peak_rss_mib=max(r["peak_rss_mib"] for r in ok),
                         rep_medians_ms=[r["median_ms"] for r in ok])
            else:
                s["status"] = next((r.get("failed") or r.get("missing") for r in rs), "not run")
            if side == "pytorch" and ok:
                base = s
            summary.append(s)
        for s in summary:
            if s["workload"] == name and base and "median_ms" in s:
                s["time_vs_pytorch"] = s["median_ms"] / base["median_ms"]
                s["rss_vs_pytorch"] = s["peak_rss_mib"] / base["peak_rss_mib"]

    print(f"\nthreads {a.threads}, {a.runs} timed runs + 1 warm-up per process, {a.reps} alternating repetitions; "
          f"{os.cpu_count()} CPUs")
    print(f"{'workload':<30} {'side':<14} {'median ms':>10} {'min ms':>9} {'peak RSS':>9} {'time/pt':>8} "
          f"{'RSS/pt':>7}  {'load avg (1 min)':<16}")
    for s in summary:
        load = f"{s['load'][0]:.1f}–{s['load'][1]:.1f}" if s["load"] else ""
        if "median_ms" not in s:
            print(f"{s['workload']:<30} {s['side']:<14} {s['status']}")
            continue
        tr = f"{s['time_vs_pytorch']:.2f}×" if "time_vs_pytorch" in s else "—"
        rr = f"{s['rss_vs_pytorch']:.2f}×" if "rss_vs_pytorch" in s else "—"
        print(f"{s['workload']:<30} {s['side']:<14} {s['median_ms']:>10.0f} {s['min_ms']:>9.0f} "
              f"{s['peak_rss_mib']:>8.0f}M {tr:>8} {rr:>7}  {load:<16}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"threads": a.threads, "runs": a.runs, "reps": a.reps, "results": results,
                       "summary": summary}, f, indent=1)
        print(f"wrote {a.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
