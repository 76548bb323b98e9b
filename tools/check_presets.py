#!/usr/bin/env python3
"""Full-size parity check of the Rust engine against the PyTorch reference (not a default test).

For each preset (ade20k, coco, cityscapes; spec §1, ngf 64) this builds a random checkpoint in
NVlabs layout (ade20k in both torch.save formats), a synthetic label map at a realistic size
(ADE 683x512 values 0..150; COCO 640x426 values 0..181 + 255 with an 8-bit instance map;
Cityscapes 2048x1024 values 0..33 with a 16-bit instance map), runs the reference forward on
CPU, then ``spadework convert`` + ``spadework render --raw``, and compares.

    python3 tools/check_presets.py [--bin target/release/spadework] [--presets ade20k,coco]
                                   [--backend cpu|gpu] [--keep DIR] [--tol 1e-4]

Exit status is non-zero if any max |Δ| exceeds --tol or a step fails. The convert command line
is a template (``--convert-cmd``) because only the render CLI is fixed by the brief.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spade_reference as R  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONVERT = "{bin} convert {pth} -o {out} {config}"

MAPS = {
    # preset: (W, H, label values, add 255, instance kind)
    "ade20k": (683, 512, 151, False, None),
    "coco": (640, 426, 182, True, "L"),
    "cityscapes": (2048, 1024, 34, False, "I;16"),
}
FORMATS = {"ade20k": ["legacy", "zip"], "coco": ["legacy"], "cityscapes": ["zip"]}


def make_maps(preset: str, d: str, rng: np.random.Generator) -> dict[str, str]:
    w, h, nvals, add255, inst_kind = MAPS[preset]
    lab = R.synthetic_label(h, w, nvals, rng, n_regions=160, speckle=0.002)
    if add255:
        lab[R.synthetic_regions(h, w, 40, rng, speckle=0) == 7] = 255
    paths = {"map": os.path.join(d, f"{preset}_label.png")}
    Image.fromarray(lab.astype(np.uint8), "L").save(paths["map"])
    if inst_kind:
        reg = R.synthetic_regions(h, w, 220, rng, speckle=0.0)
        if inst_kind == "L":
            ids = rng.integers(0, 256, 220)
            arr = ids[reg].astype(np.uint8)
            Image.fromarray(arr, "L").save(os.path.join(d, f"{preset}_instance.png"))
        else:
            ids = rng.integers(0, 65536, 220)
            ids[:5] = [26000, 26001, 33000, 40000, 65535]
            Image.fromarray(ids[reg].astype(np.uint16)).save(os.path.join(d, f"{preset}_instance.png"))
        paths["instance"] = os.path.join(d, f"{preset}_instance.png")
    return paths


def run(cmd: list[str], log: list[str]) -> float:
    log.append(" ".join(shlex.quote(c) for c in cmd))
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"command failed ({p.returncode}): {log[-1]}\n{p.stdout}\n{p.stderr}")
    return dt


def check_preset(preset: str, a: argparse.Namespace, work: str) -> list[dict]:
    opt = R.preset_options(preset)
    rng = np.random.default_rng(a.seed)
    maps = make_maps(preset, work, rng)
    seg = R.preprocess(maps["map"], opt, maps.get("instance"))

    t0 = time.perf_counter()
    netG, stats = R.random_generator(opt, seed=a.seed, calib_batch=1, calib_extra=seg, qbits=a.qbits)
    t_init = time.perf_counter() - t0
    sd = netG.state_dict()
    keys = list(sd)
    assert len(keys) == 234, (preset, len(keys))
    assert keys == R.expected_keys(opt), f"{preset}: key order differs from NVlabs/Appendix A"
    if preset == "ade20k":
        rows = R._appendix_a(a.spec)
        if rows is not None:
            assert [r[0] for r in rows] == keys, "ade20k keys differ from spec Appendix A"
            assert all(list(sd[k].shape) == s for k, s, _ in rows), "Appendix A shapes differ"

    with torch.no_grad():
        netG(seg)  # warm-up
        t0 = time.perf_counter()
        ref = netG(seg).numpy()
        t_ref = time.perf_counter() - t0
    ref_png = R.tensor2im(ref)
    np.save(os.path.join(work, f"{preset}_reference.npy"), ref)

    results = []
    for fmt in FORMATS[preset]:
        pth = os.path.join(work, f"{preset}_{fmt}_latest_net_G.pth")
        R.save_checkpoint(sd, pth, fmt)
        out_w = os.path.join(work, f"{preset}_{fmt}.safetensors")
        out_png = os.path.join(work, f"{preset}_{fmt}_rust.png")
        out_npy = os.path.join(work, f"{preset}_{fmt}_rust.npy")
        log: list[str] = []
        row = {"preset": preset, "format": fmt, "ref_forward_s": round(t_ref, 3),
               "ref_init_s": round(t_init, 1), "ref_std": round(float(ref.std()), 4)}
        try:
            conv = a.convert_cmd.format(bin=shlex.quote(a.bin), pth=shlex.quote(pth),
                                        out=shlex.quote(out_w), config=f"--preset {preset}")
            row["convert_s"] = round(run(shlex.split(conv), log), 3)
            cmd = [a.bin, "render", "--weights", out_w, "--map", maps["map"]]
            if "instance" in maps:
                cmd += ["--instance", maps["instance"]]
            cmd += ["--backend", a.backend, "-o", out_png, "--raw", out_npy]
            row["render_s"] = round(run(cmd, log), 3)
            got = np.load(out_npy).astype(np.float32).reshape(ref.shape)
            d = np.abs(got - ref)
            png = np.array(Image.open(out_png).convert("RGB"))
            du = np.abs(png.astype(np.int16) - ref_png.astype(np.int16))
            row.update(max_abs=float(d.max()), mean_abs=float(d.mean()),
                       uint8_pixels_differing=int((du.max(axis=2) > 0).sum()),
                       uint8_max_diff=int(du.max()), pixels=int(du.shape[0] * du.shape[1]),
                       ok=bool(d.max() <= a.tol))
        except Exception as e:  # noqa: BLE001
            row.update(ok=False, error=str(e)[:2000])
        row["commands"] = log
        results.append(row)
    del netG, sd
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", default=os.path.join(REPO, "target", "release", "spadework"))
    p.add_argument("--presets", default="ade20k,coco,cityscapes")
    p.add_argument("--backend", default="cpu")
    p.add_argument("--keep", metavar="DIR", help="keep checkpoints, maps and outputs in DIR")
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--qbits", type=int, default=9, help="weight quantisation bits (0 = off)")
    p.add_argument("--threads", type=int, default=2, help="torch threads for the reference")
    p.add_argument("--convert-cmd", default=DEFAULT_CONVERT,
                   help="template with {bin} {pth} {out} {config} (default: %(default)r)")
    p.add_argument("--spec", default="/work/shared/SPADE_SPEC.md")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    presets = [x for x in a.presets.split(",") if x]
    for x in presets:
        if x not in R.PRESETS:
            raise SystemExit(f"unknown preset {x!r}")
    if not os.path.exists(a.bin):
        raise SystemExit(f"binary not found: {a.bin} (cargo build --release, or pass --bin)")

    if a.keep:
        os.makedirs(a.keep, exist_ok=True)
        work, cleanup = a.keep, False
    else:
        work, cleanup = tempfile.mkdtemp(prefix="spade_presets_"), True
    all_ok = True
    try:
        for preset in presets:
            for row in check_preset(preset, a, work):
                all_ok &= row["ok"]
                print(json.dumps(row), flush=True)
    finally:
        if cleanup:
            shutil.rmtree(work, ignore_errors=True)
    print("PASS" if all_ok else f"FAIL (tol {a.tol})")
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
