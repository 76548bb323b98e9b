#!/usr/bin/env python3
"""Side-by-side speed of spadework's CPU backend and PyTorch CPU (2 threads) on the per-op
workloads of `spadework bench`, in one run: SPADE's conv shapes, the 1024³ GEMM and attention at
UNet / text-encoder shapes.

    python3 tools/bench_ops_torch.py [--only conv,GEMM,attention] [--runs 5] [--quick] [--json out.json]

Steps: builds spadework; runs `spadework bench --backend cpu --only ...` (one warm-up, then N
timed runs); then times the same workloads, by name, in PyTorch (eval ops under no_grad: conv2d,
linear, F.scaled_dot_product_attention on the [B, H, L, D] view of [B, L, H·D] rows, as ours
reads them; one warm-up, then N timed runs). Prints a table of the time ratio per workload
(<1: spadework is faster). Workloads PyTorch has no twin for here are listed as skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(cmd: list[str], **kw) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, **kw)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return p.stdout


def torch_workload(name: str):
    """The PyTorch twin of one `spadework bench` op workload, from its name; None if none."""
    g = torch.Generator().manual_seed(0)
    rnd = lambda *s: torch.rand(*s, generator=g) * 2 - 1  # noqa: E731
    m = re.match(r"conv(\d)x\d (?:γβ )?(\d+)→(\d+) @(\d+)", name)
    if m:
        k, cin, cout, hw = map(int, m.groups())
        x, w, b = rnd(1, cin, hw, hw), rnd(cout, cin, k, k), rnd(cout)
        return lambda: F.conv2d(x, w, b, padding=k // 2)
    m = re.match(r"GEMM (\d+)×(\d+)×(\d+)", name)
    if m:
        n = int(m.group(1))
        x, w = rnd(n, n), rnd(n, n)
        return lambda: F.linear(x, w)
    m = re.match(r"attention (self|cross|causal) (\d+)(?:×(\d+))? tok (\d+)×(\d+)", name)
    if m:
        kind, lq, lk, heads, d = m.groups()
        lq, heads, d = int(lq), int(heads), int(d)
        lk = int(lk) if lk else lq
        q, k, v = rnd(1, lq, heads * d), rnd(1, lk, heads * d), rnd(1, lk, heads * d)
        view = lambda t, l: t.view(1, l, heads, d).transpose(1, 2)  # noqa: E731
        return lambda: F.scaled_dot_product_attention(
            view(q, lq), view(k, lk), view(v, lk), is_causal=kind == "causal"
        ).transpose(1, 2).reshape(1, lq, heads * d)
    m = re.match(r"CLIP ViT-L/14 text encoder (\d+) tok", name)
    if m:
        import clip_text_reference as ref
        ref.FAST_ATTENTION = True
        model = ref.ClipText(ref.VIT_L14).eval()
        ids = torch.arange(int(m.group(1)))[None] * 7919 % ref.VIT_L14["vocab"]
        return lambda: model(ids)
    return None


def time_torch(fn, runs: int) -> tuple[float, float]:
    with torch.no_grad():
        fn()
        ms = []
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            ms.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ms), min(ms)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="conv,GEMM,attention,text encoder")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="1/4 of the sizes")
    ap.add_argument("--json", help="write both sides' rows and the ratios")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print("building spadework …", file=sys.stderr)
    sh(["cargo", "build", "--release", "--bin", "spadework"])
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "ours.json")
        sh(["target/release/spadework", "bench", "--backend", "cpu", "--runs", str(a.runs), "--only",
            a.only, "--json", out, *(["--quick"] if a.quick else [])])
        doc = json.load(open(out))
    ours = [r for dev in doc["devices"] for r in dev["rows"] if r["kind"] in ("op", "e2e")]
    table = []
    print(f"{'workload':<40} {'spadework ms':>13} {'PyTorch ms':>11} {'time ratio':>11}")
    for r in ours:
        fn = torch_workload(r["workload"])
        if fn is None:
            print(f"{r['workload']:<40} {r['median_ms']:>13.2f} {'skipped':>11}")
            continue
        med, mn = time_torch(fn, a.runs)
        ratio = r["median_ms"] / med
        table.append({"workload": r["workload"], "spadework_ms": r["median_ms"], "torch_ms": med,
                      "torch_min_ms": mn, "time_ratio": ratio, "spadework_gflops": r["gflops"]})
        print(f"{r['workload']:<40} {r['median_ms']:>13.2f} {med:>11.2f} {ratio:>10.2f}×")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"torch": torch.__version__, "threads": a.threads, "rows": table}, f, indent=1)


if __name__ == "__main__":
    main()
