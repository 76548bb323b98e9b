#!/usr/bin/env python3
"""Side-by-side speed of spadework's WGSL kernels and burn's wgpu backend on the same adapter, in
one run: SPADE's 3×3 conv shapes, a 1×1 conv and a 1024³ GEMM.

    python3 tools/bench_burn.py [--adapter vulkan] [--runs 5] [--quick] [--json out.json]

Steps: builds tools/burn_bench (burn 0.22.1 with its `vulkan`, `autotune` and `fusion` features,
in its own target dir: ~670 crates, several minutes the first time) and spadework; runs
`spadework bench --backend gpu --only conv,GEMM` (one warm-up, then N timed runs with a device
sync each), then `burn_bench` (three warm-ups so burn's autotune settles, then N timed runs
with `device.sync()` each). Both time the op alone on inputs already on the device and report
the median. Prints a table of the throughput ratio per workload (>1: spadework is faster).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BURN_TARGET = os.environ.get("BURN_BENCH_TARGET", os.path.join(ROOT, "target", "burn_bench"))


def sh(cmd: list[str], **kw) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, **kw)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return p.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--adapter", default="vulkan", help="spadework --adapter filter")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="1/4 of the spatial sizes")
    ap.add_argument("--only", default="conv,GEMM", help="workloads (comma-separated substrings)")
    ap.add_argument("--json", help="write both sides' rows and the ratios")
    a = ap.parse_args()
    env = dict(os.environ, XDG_RUNTIME_DIR=os.environ.get("XDG_RUNTIME_DIR", "/tmp"))
    print("building spadework and tools/burn_bench …", file=sys.stderr)
    sh(["cargo", "build", "--release", "--bin", "spadework"])
    sh(["cargo", "build", "--release", "--manifest-path", "tools/burn_bench/Cargo.toml"],
       env=dict(env, CARGO_TARGET_DIR=BURN_TARGET))
    quick = ["--quick"] if a.quick else []

    print("spadework bench …", file=sys.stderr)
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "ours.json")
        sh(["target/release/spadework", "bench", "--backend", "gpu", "--adapter", a.adapter, "--runs",
            str(a.runs), "--only", a.only, "--json", out, *quick], env=env)
        doc = json.load(open(out))
    if not doc["devices"]:
        sys.exit(f"spadework found no GPU adapter matching '{a.adapter}'")
    dev = doc["devices"][0]
    ours = {r["workload"]: r for r in dev["rows"]}
    peak = max(r["gflops"] for r in dev["rows"] if r["kind"] == "peak")

    print("burn_bench …", file=sys.stderr)
    burn_out = sh([os.path.join(BURN_TARGET, "release", "burn_bench"), "--runs", str(a.runs),
                   "--only", "", *quick], env=env)
    burn = {}
    for line in burn_out.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            if any(p in r["workload"] for p in a.only.split(",")):
                burn[r["workload"]] = r

    print(f"\nadapter: {dev['adapter']}  (spadework conv tile {dev['info'].get('conv_tile')}, "
          f"tuned GEMM peak {peak:.2f} GFLOP/s)")
    print(f"{'workload':<28} {'spadework ms':>13} {'burn ms':>10} {'spadework GF/s':>15} "
          f"{'burn GF/s':>10} {'ratio':>7}")
    rows = []
    for name, b in burn.items():
        o = ours.get(name)
        if o is None:
            print(f"{name:<28} (no spadework row)")
            continue
        ratio = o["gflops"] / b["gflops"]
        rows.append({"workload": name, "spadework": o, "burn": b, "throughput_ratio": ratio})
        print(f"{name:<28} {o['median_ms']:>13.1f} {b['median_ms']:>10.1f} {o['gflops']:>15.2f} "
              f"{b['gflops']:>10.2f} {ratio:>6.2f}×")
    conv = [r["throughput_ratio"] for r in rows if r["workload"].startswith("conv3x3")]
    if conv:
        gm = 1.0
        for x in conv:
            gm *= x
        print(f"3×3 convs: geometric-mean throughput ratio {gm ** (1 / len(conv)):.2f}× "
              f"(min {min(conv):.2f}×, max {max(conv):.2f}×)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"adapter": dev["adapter"], "info": dev["info"], "peak_gflops": peak,
                       "runs": a.runs, "quick": a.quick, "rows": rows}, f, indent=1)
        print(f"wrote {a.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
