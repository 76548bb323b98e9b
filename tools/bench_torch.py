#!/usr/bin/env python3
"""Time the PyTorch reference generator (eval, no_grad, CPU) at a preset's full size.

    python3 tools/bench_torch.py --preset ade20k [--runs 5] [--threads 2]

Random weights (same init as check_presets.py, BN calibrated on the synthetic map) are made in a
child process and saved to a temp .pth, so the reported peak RSS (ru_maxrss of this process)
covers only loading the checkpoint + input pipeline + warm-up 1 + N timed forwards.
Prints one JSON line: median/min ms and peak RSS.
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

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spade_reference as R  # noqa: E402
from check_presets import make_maps  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(R.PRESETS), default="ade20k")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--_make", metavar="DIR", help=argparse.SUPPRESS)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    opt = R.preset_options(a.preset)
    if a._make:  # child: synthetic map + random checkpoint
        maps = make_maps(a.preset, a._make, np.random.default_rng(a.seed))
        seg = R.preprocess(maps["map"], opt, maps.get("instance"))
        netG, _ = R.random_generator(opt, seed=a.seed, calib_batch=0, calib_extra=seg)
        R.save_checkpoint(netG.state_dict(), os.path.join(a._make, "G.pth"), "zip")
        json.dump(maps, open(os.path.join(a._make, "maps.json"), "w"))
        return
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, os.path.abspath(__file__), "--preset", a.preset,
                        "--threads", str(a.threads), "--seed", str(a.seed), "--_make", d], check=True)
        maps = json.load(open(os.path.join(d, "maps.json")))
        netG = R.load_generator(os.path.join(d, "G.pth"), opt)
        seg = R.preprocess(maps["map"], opt, maps.get("instance"))
    times = []
    with torch.no_grad():
        netG(seg)  # warm-up
        for _ in range(a.runs):
            t0 = time.perf_counter()
            y = netG(seg)
            times.append((time.perf_counter() - t0) * 1e3)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({
        "impl": "torch-reference", "preset": a.preset, "device": "cpu", "threads": a.threads,
        "torch": torch.__version__, "out_shape": list(y.shape), "runs": a.runs,
        "median_ms": round(statistics.median(times), 2), "min_ms": round(min(times), 2),
        "peak_rss_mb": round(rss_kb / 1024, 1),
    }))


if __name__ == "__main__":
    main()
