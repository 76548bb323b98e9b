#!/usr/bin/env python3
"""Export a train_landscape.py checkpoint to NVlabs files the Rust engine converts.

    python3 tools/export_landscape.py [--work /work/landscape_run] [--ckpt PATH] [--out DIR]

Writes into ``--out`` (default ``<work>/export``):

* ``latest_net_G.pth``  ``torch.save(netG.state_dict())`` of the ``spade_reference``
  SPADEGenerator: NVlabs keys and order (spectral-norm convs as ``weight_orig``/``weight_u``/
  ``weight_v``, BN running stats as ``param_free_norm.*``), f32. A state dict has no train/eval
  mode; the stored u/v and running stats are exactly what eval mode uses (SPADE_SPEC §7).
* ``latest_net_E.pth``  the ConvEncoder (VAE runs only). Below crop 256 it is the 6-layer
  encoder built with crop_size=256 options (see train_landscape.py); spade_reference.load_encoder
  and the Rust converter derive 5 layers from crop_size < 256, so load it in Python with
  ``ConvEncoder(dataclasses.replace(opt, crop_size=256))``; the Rust converter reads the
  encoder's depth from the file, so the printed convert command includes ``--netE``.
* ``classes.json``      ``[{"id": ade_id, "name": str, "color": [r, g, b]}, ...]`` in channel order.
* ``options.json``      the generator options (spade_reference.Options) and training info.
* ``check_map.png`` / ``check_z.npy`` / ``check_ref.png`` / ``check_ref.npy``: a held-out map
  (grayscale ADE ids), the z used (VAE) and the spade_reference eval-mode output (uint8 and raw
  f32), for a parity check of the converted model:
  ``spadework render --weights landscape.safetensors --map check_map.png [--z check_z.npy] -o out.png``.

Then it verifies that the written .pth files reload with ``strict=True`` into fresh
spade_reference modules and reproduce the checkpoint's outputs, and prints the
``spadework convert`` command.

``--half`` (future): the Rust loader already reads f16/bf16 safetensors, so a half-precision
``landscape.safetensors`` would halve the download. It is not implemented here: spectral norm
must be folded in f32 first (sigma = u·W·v), which ``spadework convert`` does, so the flag only
prints a note and the .pth stays f32.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import sys
from collections import OrderedDict

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import spade_reference as sr  # noqa: E402
import train_landscape as tl  # noqa: E402


def clean_sd(sd: dict) -> "OrderedDict[str, torch.Tensor]":
    """Own, contiguous copies (no shared storages / views in the pickle)."""
    return OrderedDict((k, v.detach().clone().contiguous()) for k, v in sd.items())


def held_out_map(work: str, size: int, classes) -> np.ndarray | None:
    """A held-out label map (ADE ids) from the training data cache, if present."""
    for p in sorted(glob.glob(os.path.join(work, f"eval_{size}_*.npz")), key=os.path.getmtime,
                    reverse=True):
        with np.load(p) as z:
            if "labels" in z.files and len(z["labels"]):
                ids = np.array([c[0] for c in classes], np.uint8)
                return ids[z["labels"][0]]
    return None


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/work/landscape_run")
    p.add_argument("--ckpt", help="checkpoint file (default: the newest in --work)")
    p.add_argument("--out", help="output directory (default <work>/export)")
    p.add_argument("--raw-g", action="store_true",
                   help="export the trained G even when the checkpoint has an EMA copy (G_ema)")
    p.add_argument("--half", action="store_true", help="future: f16 weights (see docstring)")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.ckpt:
        ck = dict(torch.load(a.ckpt, map_location="cpu", weights_only=True), _path=a.ckpt)
    else:
        ck = tl.load_latest(a.work)
        if ck is None:
            raise SystemExit(f"no checkpoint ckpt_*.pt in {a.work}")
    out = a.out or os.path.join(a.work, "export")
    os.makedirs(out, exist_ok=True)
    arch = ck["arch"]
    noise = arch.get("noise", 0.0)
    # --- the in-checkpoint generator / encoder (reference for the checks) -------------------
    G, opt, classes, which = tl.generator_from_checkpoint(ck, ema=not a.raw_g)
    k = len(classes)
    use_ema = which == "G_ema"
    print(f"{ck['_path']}: step {ck['step']}, {ck.get('train_seconds', 0) / 60:.1f} min trained, "
          f"arch {arch}, K={k}")
    print(f"generator: {'the EMA of G (--ema run)' if use_ema else 'G'}")
    sd_g = clean_sd(G.state_dict())
    want = sr.expected_keys(opt)
    if list(sd_g) != want:
        raise SystemExit(f"netG keys differ from the NVlabs layout: {set(sd_g) ^ set(want)}")
    assert not any(k.endswith(".weight") and k.replace(".weight", ".weight_orig") in sd_g for k in sd_g)
    path_g = os.path.join(out, "latest_net_G.pth")
    torch.save(sd_g, path_g)
    written = [path_g]

    E, path_e = None, None
    e_opt = tl.e_options(opt)
    if arch["use_vae"]:
        E = sr.ConvEncoder(e_opt)
        E.load_state_dict(ck["E"], strict=True)
        E.eval()
        path_e = os.path.join(out, "latest_net_E.pth")
        torch.save(clean_sd(E.state_dict()), path_e)
        written.append(path_e)

    path_c = os.path.join(out, "classes.json")
    with open(path_c, "w") as f:
        json.dump([{"id": i, "name": n, "color": list(c)} for i, n, c in classes], f, indent=1)
    written.append(path_c)
    with open(os.path.join(out, "options.json"), "w") as f:
        json.dump({"g_options": dataclasses.asdict(opt), "encoder_crop_size": e_opt.crop_size,
                   "arch": arch, "step": ck["step"], "train_seconds": ck.get("train_seconds"),
                   "hparams": ck.get("hparams"), "checkpoint": os.path.abspath(ck["_path"]),
                   "generator": "G_ema" if use_ema else "G"},
                  f, indent=1)

    # --- verification: strict reload into fresh spade_reference modules ----------------------
    G2 = sr.SPADEGenerator(dataclasses.replace(opt))
    G2.load_state_dict(torch.load(path_g, map_location="cpu", weights_only=True), strict=True)
    G2.eval()
    G3 = sr.load_generator(path_g, opt)  # the reference CLI's loader (ngf inferred)
    assert G3.opt.ngf == opt.ngf, (G3.opt.ngf, opt.ngf)
    lab = held_out_map(a.work, arch["size"], classes)
    if lab is None:  # no data cache: a synthetic map over the class ids
        rng = np.random.default_rng(0)
        ids = np.array([c[0] for c in classes], np.uint8)
        lab = ids[sr.synthetic_label(arch["size"], arch["size"], k, rng, speckle=0)]
    lut = tl.class_lut(classes)
    # a noise model: the texture field of seed 0, what `spadework render --z` without --seed uses
    inst = tl.texture_field(0, arch["size"], arch["size"], noise) if noise else None
    seg = sr.make_semantics(lut[lab].astype(np.int64), opt, inst)
    z = None
    if arch["use_vae"]:
        z = torch.randn(1, tl.Z_DIM, generator=torch.Generator().manual_seed(0))
        np.save(os.path.join(out, "check_z.npy"), z.numpy().astype(np.float32))
    with torch.no_grad():
        y = G(seg, z)
        d2 = float((G2(seg, z) - y).abs().max())
        d3 = float((G3(seg, z) - y).abs().max())
    assert d2 == 0.0 and d3 == 0.0, (d2, d3)
    Image.fromarray(lab.astype(np.uint8), "L").save(os.path.join(out, "check_map.png"))
    sr.save_png(sr.tensor2im(y), os.path.join(out, "check_ref.png"))
    np.save(os.path.join(out, "check_ref.npy"), y.numpy().astype(np.float32))
    msg = f"netG reloads strict=True (fresh module and load_generator), same output (std {float(y.std()):.3f})"
    if E is not None:
        E2 = sr.ConvEncoder(e_opt)
        E2.load_state_dict(torch.load(path_e, map_location="cpu", weights_only=True), strict=True)
        E2.eval()
        img = torch.rand(1, 3, arch["size"], arch["size"]) * 2 - 1
        with torch.no_grad():
            de = float((E2(img)[0] - E(img)[0]).abs().max())
        assert de == 0.0, de
        msg += f"; netE reloads strict=True ({E2.nlayers} layers)"
    print("ok: " + msg)
    for w in written:
        print(f"wrote {w}")

    # --- the convert command -----------------------------------------------------------------
    cmd = ["target/release/spadework", "convert", path_g, "-o", "landscape.safetensors",
           "--label-nc", str(k), "--crop-size", str(arch["size"]), "--norm-g", tl.NORM_G]
    cmd += ["--texture-field", repr(noise)] if noise else ["--no-instance"]
    if arch["use_vae"]:
        cmd += ["--use-vae", "--z-dim", str(tl.Z_DIM)]
        cmd += ["--netE", path_e]  # the converter records the encoder's depth from the file
    cmd += ["--classes", path_c]
    print("\nfold into safetensors (from the spadework repo root):\n  " + " ".join(cmd))
    z_flag = f" --z {os.path.join(out, 'check_z.npy')}" if arch["use_vae"] else ""
    print(f"parity check:\n  target/release/spadework render --weights landscape.safetensors "
          f"--map {os.path.join(out, 'check_map.png')}{z_flag} -o check_rust.png "
          f"--raw check_rust.npy   # compare with {os.path.join(out, 'check_ref.npy')}")
    if a.half:
        print("note: --half is a future option (spadework reads f16 safetensors; SN must be folded "
              "in f32 first); the export above is f32.")


if __name__ == "__main__":
    main()
