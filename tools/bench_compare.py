#!/usr/bin/env python3
"""Side-by-side speed of the spadework CPU backend and the PyTorch reference (CPU, 2 threads), on
the same random checkpoint and the same synthetic label map, in one run.

    python3 tools/bench_compare.py [--presets ade20k,coco,cityscapes] [--runs 5] [--gpu]

Steps per preset: tools/bench_torch.py writes a random NVlabs-layout checkpoint + map (seeded),
`spadework convert --preset P` folds it, `cargo bench --bench spade_forward` times our forward
(warm-up 1 + N runs, in-process), tools/bench_torch.py times PyTorch's (warm-up 1 + N runs).
Both report median/min ms and peak RSS (VmHWM / ru_maxrss of the benchmarking process).
With --gpu the GPU backend (default adapter, 1 run after warm-up) is timed too.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(cmd: list[str], **kw) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, **kw)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return p.stdout


def last_json(out: str) -> list[dict]:
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default="ade20k")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--gpu", action="store_true")
    a = ap.parse_args()
    sh(["cargo", "build", "--release", "--bins", "--benches"])
    env = dict(os.environ, XDG_RUNTIME_DIR=os.environ.get("XDG_RUNTIME_DIR", "/tmp"))
    rows = []
    for preset in a.presets.split(","):
        with tempfile.TemporaryDirectory() as d:
            sh([sys.executable, "tools/bench_torch.py", "--preset", preset, "--seed", str(a.seed), "--_make", d])
            maps = json.load(open(os.path.join(d, "maps.json")))
            st = os.path.join(d, "G.safetensors")
            sh(["target/release/spadework", "convert", os.path.join(d, "G.pth"), "-o", st, "--preset", preset])
            cmd = ["cargo", "bench", "-q", "--bench", "spade_forward", "--", "--preset", preset, "--weights", st,
                   "--map", maps["map"], "--iters", str(a.runs), "--json", "--backend", "all" if a.gpu else "cpu"]
            if "instance" in maps:
                cmd += ["--instance", maps["instance"]]
            ours = last_json(sh(cmd, env=env))
        torch = last_json(sh([sys.executable, "tools/bench_torch.py", "--preset", preset, "--runs", str(a.runs),
                              "--seed", str(a.seed)]))[0]
        for o in ours:
            rows.append((preset, o, torch))
    print(f"{'preset':<11} {'backend':<7} {'ours ms (med/min)':>20} {'torch ms (med/min)':>20} {'time ratio':>10} "
          f"{'ours RSS':>9} {'torch RSS':>9} {'RSS ratio':>9} {'GFLOP/s':>8}")
    for preset, o, t in rows:
        print(f"{preset:<11} {o['backend']:<7} {o['median_ms']:>11.1f}/{o['min_ms']:<8.1f} {t['median_ms']:>11.1f}/{t['min_ms']:<8.1f} "
              f"{o['median_ms'] / t['median_ms']:>10.2f} {o['peak_rss_mib']:>8.0f}M {t['peak_rss_mb']:>8.0f}M "
              f"{o['peak_rss_mib'] / t['peak_rss_mb']:>9.2f} {o['gflops']:>8.1f}")
    print(json.dumps({"rows": [{"preset": p, "ours": o, "torch": t} for p, o, t in rows]}))


if __name__ == "__main__":
    main()
