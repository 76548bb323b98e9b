#!/usr/bin/env python3
"""Generate the small parity fixtures in tests/fixtures/spade/<case>/ (deterministic).

Each case directory holds an NVlabs-layout checkpoint (``latest_net_G.pth``; plus
``latest_net_E.pth`` for the VAE case), the input PNGs at an awkward size (so the PIL-nearest
resize of spec §4.1 is exercised), the expected float32 NCHW netG output (``expected.npy``,
before quantisation) and its ``tensor2im`` PNG (``expected.png``), and ``case.json`` with the
Rust CLI arguments. Expected outputs are computed from the files as written to disk.

    python3 tools/make_fixtures.py [--out tests/fixtures/spade] [--cases a,b] [--verify-only]
"""
from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spade_reference as R  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "spade")
QBITS = 6  # weights are multiples of 2^-6 * (power of two >= max|w|) -> compressible

# --------------------------------------------------------------------------------------------
# case definitions
# --------------------------------------------------------------------------------------------

CASES: dict[str, dict] = {
    "normal_legacy": dict(
        seed=101,
        opt=R.Options(label_nc=12, contain_dontcare_label=True, no_instance=True, crop_size=64,
                      aspect_ratio=1.0, num_upsampling_layers="normal", ngf=2,
                      norm_G="spectralspadesyncbatch3x3"),
        serialization="legacy",
        label=dict(size=(97, 71), mode="L", dontcare_frac=0.08),
        notes="spectralspadesyncbatch3x3, normal (5 ups), 97x71 8-bit L label with 255 pixels "
              "(-> dontcare channel 12), PIL-nearest resize to 64x64, legacy torch.save format.",
    ),
    "more_instance_zip": dict(
        seed=202,
        opt=R.Options(label_nc=9, contain_dontcare_label=False, no_instance=False, crop_size=128,
                      aspect_ratio=2.0, num_upsampling_layers="more", ngf=2,
                      norm_G="spectralspadesyncbatch3x3"),
        serialization="zip",
        label=dict(size=(157, 83), mode="P"),
        instance=dict(mode="I;16"),
        notes="'more' (6 ups), aspect 2 -> sh x sw = 1 x 2, output 64x128. Label is a palette "
              "('P') PNG: use the palette INDICES, not the colours. 16-bit instance PNG with ids "
              "> 255 (some > 32767); edge channel (channel 9, last) computed on the resized map. "
              "crop_size is 128 because 64 would give sh = round(1/2) = 0. zip torch.save format.",
    ),
    "most_batch_legacy": dict(
        seed=303,
        opt=R.Options(label_nc=4, contain_dontcare_label=True, no_instance=True, crop_size=128,
                      aspect_ratio=1.0, num_upsampling_layers="most", ngf=2,
                      norm_G="spadebatch3x3"),
        serialization="legacy",
        label=dict(size=(203, 150), mode="L", dontcare_frac=0.1),
        notes="'most' (7 ups, extra up_4 block with ngf//2 = 1 output channel, sh x sw = 1 x 1), "
              "norm_G spadebatch3x3: NO spectral norm, so conv_0/conv_1/conv_s have plain "
              "'weight' keys (weight before bias). 203x150 L label with 255 -> dontcare 4. legacy.",
    ),
    "vae_instance_zip": dict(
        seed=404,
        opt=R.Options(label_nc=5, contain_dontcare_label=False, no_instance=True, crop_size=256,
                      aspect_ratio=1.0, num_upsampling_layers="normal", ngf=2, use_vae=True,
                      z_dim=256, norm_G="spectralspadeinstance3x3"),
        serialization="zip",
        label=dict(size=(300, 211), mode="L"),
        vae=True,
        notes="use_vae: fc is Linear(256 -> 16*ngf*8*8 = 2048), reshaped to (1, 32, 8, 8). "
              "norm_G spectralspadeinstance3x3: param-free InstanceNorm (per-sample stats, biased "
              "var, eps 1e-5, no state-dict keys). expected.npy uses z.npy. Style case: "
              "style.png is 256x256 RGB (no resize), x = (rgb/255 - 0.5)/0.5, netE -> mu "
              "(expected_mu.npy, logvar in expected_logvar.npy), expected_style.npy = "
              "netG(seg, z=mu). netE is ConvEncoder with ndf = ngf = 2 (6 SN convs, no bias, "
              "InstanceNorm), fc_mu/fc_var Linear(2*8*4*4 = 256 -> 256). zip format.",
    ),
}

# --------------------------------------------------------------------------------------------
# synthetic inputs
# --------------------------------------------------------------------------------------------


def _palette(rng: np.random.Generator) -> list[int]:
    cols = rng.integers(0, 256, (256, 3), dtype=np.int64)
    cols[0] = (0, 0, 0)
    return [int(v) for v in cols.reshape(-1)]


def write_label(path: str, spec: dict, opt: R.Options, rng: np.random.Generator) -> np.ndarray:
    w, h = spec["size"]
    lab = R.synthetic_label(h, w, opt.label_nc, rng, n_regions=14, speckle=0.02)
    frac = spec.get("dontcare_frac", 0.0)
    if frac > 0:
        # one 255 region plus scattered 255 pixels
        reg = R.synthetic_regions(h, w, 10, rng, speckle=0)
        lab[reg == 3] = 255
        m = rng.random((h, w)) < frac / 4
        lab[m] = 255
    arr = lab.astype(np.uint8)
    if spec["mode"] == "L":
        Image.fromarray(arr, "L").save(path)
    elif spec["mode"] == "P":
        im = Image.frombytes("P", (w, h), arr.tobytes())  # values are palette indices
        im.putpalette(_palette(rng))
        im.save(path)
    else:
        raise ValueError(spec["mode"])
    back = Image.open(path)
    assert back.mode == spec["mode"], (back.mode, spec["mode"])
    assert np.array_equal(np.array(back), arr)
    return lab


def write_instance(path: str, size: tuple[int, int], rng: np.random.Generator) -> None:
    w, h = size
    reg = R.synthetic_regions(h, w, 30, rng, speckle=0.003)
    ids = rng.choice(np.arange(256, 65536), 30, replace=False)
    ids[:3] = [40000, 40001, 65535]  # > 32767: int16 readers wrap, edges must not change
    arr = ids[reg].astype(np.uint16)
    Image.fromarray(arr).save(path)
    back = Image.open(path)
    assert back.mode in ("I;16", "I"), back.mode
    assert np.array_equal(np.array(back).astype(np.int64), arr.astype(np.int64))


def write_style(path: str, opt: R.Options, rng: np.random.Generator) -> None:
    h, w = opt.load_hw
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([128 + 100 * np.sin(6 * xx + 1.0) * np.cos(4 * yy),
                    128 + 90 * np.cos(5 * yy + 3 * xx),
                    128 + 80 * np.sin(9 * (xx - yy))], -1)
    img += rng.normal(0, 6, img.shape)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB").save(path)


# --------------------------------------------------------------------------------------------
# case generation / verification
# --------------------------------------------------------------------------------------------


def _render_from_disk(d: str, opt: R.Options, case: dict, manifest: dict) -> dict[str, np.ndarray]:
    """Reload everything from disk (torch.load + strict load) and run the reference."""
    netG = R.load_generator(os.path.join(d, "latest_net_G.pth"), opt)
    assert netG.opt.ngf == opt.ngf
    seg = R.preprocess(os.path.join(d, "label.png"), opt,
                       os.path.join(d, "instance.png") if not opt.no_instance else None)
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        z = None
        if opt.use_vae:
            z = torch.from_numpy(np.load(os.path.join(d, "z.npy")))
        out["expected"] = netG(seg, z).numpy()
        if case.get("vae"):
            netE = R.load_encoder(os.path.join(d, "latest_net_E.pth"), opt)
            mu, logvar = netE(R.load_style_image(os.path.join(d, "style.png"), opt))
            out["expected_mu"] = mu.numpy()
            out["expected_logvar"] = logvar.numpy()
            out["expected_style"] = netG(seg, mu).numpy()
    return out


def _same_checkpoint(a: str, b: str) -> bool:
    """Same serialization format, same keys in the same order, bit-identical tensors."""
    if not (os.path.exists(a) and os.path.exists(b)):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        if (fa.read(2) == b"PK") != (fb.read(2) == b"PK"):
            return False
    sa = torch.load(a, map_location="cpu", weights_only=True)
    sb = torch.load(b, map_location="cpu", weights_only=True)
    return list(sa) == list(sb) and all(
        sa[k].dtype == sb[k].dtype and sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k])
        for k in sa)


def save_checkpoint_stable(sd: dict, path: str, serialization: str, old_dir: str) -> None:
    """Legacy torch.save names storages by memory address, so its bytes change run to run.
    Keep the previously committed file if its content is identical (avoids git churn)."""
    R.save_checkpoint(sd, path, serialization)
    old = os.path.join(old_dir, os.path.basename(path))
    if _same_checkpoint(old, path):
        shutil.copyfile(old, path)


def make_case(name: str, case: dict, out_root: str) -> dict:
    opt: R.Options = case["opt"]
    d = os.path.join(out_root, name)
    old_dir = d + ".previous"
    if os.path.isdir(old_dir):
        shutil.rmtree(old_dir)
    if os.path.isdir(d):
        os.rename(d, old_dir)
    os.makedirs(d)
    try:
        return _make_case(name, case, d, old_dir)
    finally:
        if os.path.isdir(old_dir):
            shutil.rmtree(old_dir)


def _make_case(name: str, case: dict, d: str, old_dir: str) -> dict:
    opt: R.Options = case["opt"]
    seed = case["seed"]
    rng = np.random.default_rng(seed)

    # inputs
    lab_spec = case["label"]
    write_label(os.path.join(d, "label.png"), lab_spec, opt, rng)
    render_args = ["--map", "label.png"]
    if "instance" in case:
        write_instance(os.path.join(d, "instance.png"), lab_spec["size"], rng)
        render_args += ["--instance", "instance.png"]
    if opt.use_vae:
        z = torch.randn(1, opt.z_dim, generator=torch.Generator().manual_seed(seed + 7))
        np.save(os.path.join(d, "z.npy"), z.numpy().astype(np.float32))
        render_args += ["--z", "z.npy"]

    # checkpoint(s)
    seg = R.preprocess(os.path.join(d, "label.png"), opt,
                       os.path.join(d, "instance.png") if not opt.no_instance else None)
    netG, stats = R.random_generator(opt, seed=seed, calib_batch=3, calib_extra=seg, qbits=QBITS)
    save_checkpoint_stable(netG.state_dict(), os.path.join(d, "latest_net_G.pth"),
                           case["serialization"], old_dir)
    convert_args = R.options_to_cli(opt)
    style_args = None
    if case.get("vae"):
        netE = R.ConvEncoder(opt).eval()
        R.init_encoder_like_trained(netE, torch.Generator().manual_seed(seed + 13), qbits=QBITS)
        save_checkpoint_stable(netE.state_dict(), os.path.join(d, "latest_net_E.pth"),
                               case["serialization"], old_dir)
        write_style(os.path.join(d, "style.png"), opt, rng)
        convert_args += ["--netE", "latest_net_E.pth"]
        style_args = ["--map", "label.png", "--style", "style.png"]

    # expected outputs, computed from the files on disk
    outs = _render_from_disk(d, opt, case, {})
    for k, v in outs.items():
        np.save(os.path.join(d, k + ".npy"), v.astype(np.float32))
    R.save_png(R.tensor2im(outs["expected"]), os.path.join(d, "expected.png"))

    y = outs["expected"]
    manifest = {
        "convert_args": convert_args,
        "render_args": render_args,
        "serialization": case["serialization"],
        "notes": case["notes"],
        "expected": "expected.npy",
        "expected_png": "expected.png",
        "output_shape": list(y.shape),
        "output_std": round(float(y.std()), 6),
        "output_absmax": round(float(np.abs(y).max()), 6),
        "semantic_nc": opt.semantic_nc,
        "reference_config": opt.to_json(),
        "tolerance": {"max_abs": 1e-4, "uint8_max_diff": 1},
        "generator": "tools/make_fixtures.py (tools/spade_reference.py), seed %d" % seed,
    }
    if style_args:
        manifest["style_render_args"] = style_args
        manifest["expected_style"] = "expected_style.npy"
        manifest["expected_mu"] = "expected_mu.npy"
        manifest["expected_logvar"] = "expected_logvar.npy"
        manifest["style_output_std"] = round(float(outs["expected_style"].std()), 6)
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return manifest


def verify_case(name: str, out_root: str) -> dict:
    d = os.path.join(out_root, name)
    case = CASES[name]
    manifest = json.load(open(os.path.join(d, "case.json")))
    opt = R.Options(**manifest["reference_config"])
    # serialization format as declared
    with open(os.path.join(d, "latest_net_G.pth"), "rb") as f:
        is_zip = f.read(2) == b"PK"
    assert is_zip == (manifest["serialization"] == "zip"), (name, is_zip)
    # key order / strict load into a fresh reference model (done inside load_generator)
    sd = torch.load(os.path.join(d, "latest_net_G.pth"), map_location="cpu", weights_only=True)
    assert list(sd) == R.expected_keys(opt), f"{name}: key order"
    outs = _render_from_disk(d, opt, case, manifest)
    for k, v in outs.items():
        exp = np.load(os.path.join(d, k + ".npy"))
        assert exp.dtype == np.float32 and exp.shape == v.shape, (name, k, exp.dtype, exp.shape)
        assert np.array_equal(exp, v), f"{name}/{k}: re-run differs by {np.abs(exp - v).max()}"
    png = np.array(Image.open(os.path.join(d, "expected.png")))
    assert np.array_equal(png, R.tensor2im(outs["expected"])), name
    raw = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    gz = sum(len(gzip.compress(open(os.path.join(d, f), "rb").read(), 6)) for f in os.listdir(d))
    return {"case": name, "keys": len(sd), "output_shape": list(outs["expected"].shape),
            "output_std": float(outs["expected"].std()),
            "uint8_levels": int(len(np.unique(png))), "bytes": raw, "gzip_bytes": gz,
            **({"style_std": float(outs["expected_style"].std()),
                "mu_std": float(outs["expected_mu"].std())} if "expected_style" in outs else {})}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--verify-only", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)
    names = [c for c in a.cases.split(",") if c]
    for n in names:
        if n not in CASES:
            raise SystemExit(f"unknown case {n!r}; have {list(CASES)}")
    total = total_gz = 0
    for n in names:
        if not a.verify_only:
            make_case(n, CASES[n], a.out)
        r = verify_case(n, a.out)
        total += r["bytes"]
        total_gz += r["gzip_bytes"]
        extra = (f"  style std {r['style_std']:.4f}  mu std {r['mu_std']:.4f}"
                 if "style_std" in r else "")
        print(f"{n:20s} keys {r['keys']:3d} out {tuple(r['output_shape'])} std {r['output_std']:.4f}"
              f" levels {r['uint8_levels']:3d}  {r['bytes'] / 1e6:.2f} MB"
              f" (gzip {r['gzip_bytes'] / 1e6:.2f} MB){extra}  verified")
    print(f"total {total / 1e6:.2f} MB (gzip {total_gz / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
