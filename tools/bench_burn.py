#!/usr/bin/env python3
"""Side-by-side speed of spadework's WGSL kernels and burn's wgpu backend on the same adapter, in
one run: SPADE's 3×3 conv shapes, a 1×1 conv and a 1024³ GEMM.

    python3 tools/bench_burn.py [--burn-compiler wgsl|spirv] [--adapter vulkan] [--runs 5] [--quick]
                                [--json out.json]

Steps: builds tools/burn_bench (burn 0.22.1 with its `wgpu`, `autotune` and `fusion` features,
plus `vulkan` for --burn-compiler spirv; in its own target dir: ~670 crates, 20-40 minutes the
first time on 2 cores) and spadework; runs
`spadework bench --backend gpu --only conv,GEMM` (one warm-up, then N timed runs with a device
sync each), then `burn_bench` once per workload (three warm-ups so burn's autotune settles,
then N timed runs with `device.sync()` each; a workload that crashes burn is reported as such). Both time the op alone on inputs already on the device and report
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
    ap.add_argument("--burn-compiler", choices=["wgsl", "spirv"], default="wgsl",
                    help="burn's shader path: WGSL (as spadework) or cubecl's SPIR-V on Vulkan")
    a = ap.parse_args()
    env = dict(os.environ, XDG_RUNTIME_DIR=os.environ.get("XDG_RUNTIME_DIR", "/tmp"))
    print("building spadework and tools/burn_bench …", file=sys.stderr)
    sh(["cargo", "build", "--release", "--bin", "spadework"])
    feats = [] if a.burn_compiler == "spirv" else ["--no-default-features"]
    target = BURN_TARGET + ("" if a.burn_compiler == "spirv" else "_wgsl")
    sh(["cargo", "build", "--release", "--manifest-path", "tools/burn_bench/Cargo.toml", *feats],
       env=dict(env, CARGO_TARGET_DIR=target))
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

    burn = {}
    device = "vulkan" if a.burn_compiler == "spirv" else "wgpu"
    # The workloads spadework just ran (names, and sizes under --quick, are the same in burn_bench).
    for w in (r["workload"] for r in dev["rows"] if r["kind"] != "peak"):
        print(f"burn_bench: {w} …", file=sys.stderr)
        p = subprocess.run([os.path.join(target, "release", "burn_bench"), "--runs", str(a.runs), "--only", w,
                            "--device", device, *quick], capture_output=True, text=True, cwd=ROOT, env=env)
        rows = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
        if p.returncode == 0 and not rows:
            continue  # not a burn_bench workload
        if p.returncode != 0:
            why = f"signal {-p.returncode}" if p.returncode < 0 else f"exit {p.returncode}"
            burn[w] = {"workload": w, "failed": why, "stderr": p.stderr[-2000:]}
            continue
        for r in rows:
            burn[r["workload"]] = r

    print(f"\nburn compiler: {a.burn_compiler}; adapter: {dev['adapter']}  (spadework conv tile {dev['info'].get('conv_tile')}, "
          f"tuned GEMM peak {peak:.2f} GFLOP/s)")
    print(f"{'workload':<28} {'spadework ms':>13} {'burn ms':>10} {'spadework GF/s':>15} "
          f"{'burn GF/s':>10} {'ratio':>7}")
    rows = []
    for name, b in burn.items():
        o = ours.get(name)
        if o is None:
            print(f"{name:<28} (no spadework row)")
            continue
        if "failed" in b:
            rows.append({"workload": name, "spadework": o, "burn": b, "throughput_ratio": None})
            print(f"{name:<28} {o['median_ms']:>13.1f} {'crashed':>10} {o['gflops']:>15.2f} "
                  f"{'—':>10} {'—':>7}   (burn: {b['failed']})")
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
            json.dump({"burn_compiler": a.burn_compiler, "adapter": dev["adapter"], "info": dev["info"], "peak_gflops": peak,
                       "runs": a.runs, "quick": a.quick, "rows": rows}, f, indent=1)
        print(f"wrote {a.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
