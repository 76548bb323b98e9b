#!/usr/bin/env python3
"""Image-quality figures of landscape generators against the procedural renders (issue 16).

    python3 tools/quality_landscape.py \\
        --weights assets/landscape.safetensors new.safetensors --json quality.json
    python3 tools/quality_landscape.py --ckpt /work/landscape_runs/oasis128   # PyTorch
    python3 tools/quality_landscape.py --self-test     # the figures on synthetic images

For ``--n`` (200) held-out maps, seeds ``--seed0`` (1,000,000) ... at ``--size`` (128) — seen by
neither the generator (training seeds < 1,000,000) nor the segmenter (seeds >= 2,000,000) — every
model renders every map, and the generated images are compared with the maps and with the
procedural render of the same map (``landscape.sample``). Models, any number in one run:

* ``--weights W.safetensors ...``: rendered by the Rust engine exactly as eval_landscape.py
  does (its ``render_all``: one ``spadework render --weights W --map MAP --seed SEED --backend
  cpu`` process per map, z from the map's seed);
* ``--ckpt PATH ...``: a train_landscape.py checkpoint file, a run directory (its newest
  checkpoint) or a converted ``.safetensors`` (int8 dequantised), run in PyTorch (spade_reference generator in eval mode: the EMA generator when
  the checkpoint has one, as export_landscape.py exports; z ~ N(0, I) from
  ``torch.Generator().manual_seed(map seed)``, so not the same z as the Rust engine's, but the
  same distribution). No export / convert / binary needed: for intermediate checkpoints.

Figures (each also for the procedural renders themselves where it makes sense):

* **mIoU / pixel accuracy**: the tools/segnet.py segmenter on the generated images against the
  map, as eval_landscape.py (confusion over the whole set; per-class IoU in the JSON and table).
* **banding ratio**: for every image and every class region of the map, the region's row-mean
  colour profile (mean RGB over the region's pixels in each row with at least ``--min-run`` 16
  of them) and column-mean profile; their second difference p[t-1] - 2 p[t] + p[t+1] over
  consecutive valid rows / columns is zero for any smooth gradient and large for streaks and
  bands (averaging >= 16 pixels damps pixel noise, not a streak). banding = mean |second
  difference| (RGB 0-255, over channels, positions, regions, images) of the generated images /
  the same for the renders, on identical masks. Reported for rows + columns, rows alone
  (horizontal bands), columns alone (vertical streaks), and the sky alone (rows + columns).
  These settings (whole regions, runs >= 16) reproduce the issue's figures for the shipped
  model (1.6x, sky 1.8x). Region edges count, so a soft or misplaced edge adds to it;
  *interior* repeats it on regions eroded by ``--erode`` 2 px (edges and halos excluded).
  Uncorrelated pixel noise adds to it too (about sigma * sqrt(6 / n) per profile point over n
  pixels; images of pure uniform noise score ~6.7x), so read it together with detail.
* **detail ratio**: mean |Laplacian| (4-neighbour, luminance 0-255, interior pixels) of the
  generated images / the renders'; also per class (over the eroded regions) in the JSON.
* **FD-seg** (an offline stand-in for FID): Fréchet distance between the generated and the
  rendered images' features in the segmenter's penultimate layer (the last decoder block,
  ``width`` channels at full resolution, before the 1x1 class head). Two forms: *pixel*, over
  the per-pixel feature vectors (every ``--fd-stride`` 4th pixel in both directions), and
  *image*, over per-image channel means and standard deviations (2 x width per image). The floor
  row is renders against renders of other held-out maps (seeds after the set), i.e. what a
  perfect generator would score at this sample size.

Printed as one table (models as columns); ``--json`` stores everything, including the per-class
IoU and detail ratios. Rendering costs what eval_landscape.py's does (~0.5-1 s per map and
model on free cores); the PyTorch path runs the generator in batches of ``--batch-gen``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import types

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import eval_landscape as ev  # noqa: E402
import landscape  # noqa: E402
import segnet as sn  # noqa: E402

SKY = [i for i, (_, n, _) in enumerate(sn.CLASSES) if n == "sky"][0]


# ------------------------------------------------------------------------------------------
# Generators
# ------------------------------------------------------------------------------------------


def render_rust(a, weights: str, labels_ade: np.ndarray, seeds: list[int], gen_dir: str) -> np.ndarray:
    ns = types.SimpleNamespace(bin=a.bin, weights=weights, jobs=a.jobs,
                               render_threads=a.render_threads, reuse=a.reuse)
    os.makedirs(gen_dir, exist_ok=True)
    gens, timing = ev.render_all(ns, labels_ade, seeds, gen_dir)
    print(f"  {weights}: {timing['wall_seconds']:.0f}s wall", flush=True)
    return gens


@torch.no_grad()
def render_torch(path: str, gt: np.ndarray, seeds: list[int], batch: int) -> tuple[np.ndarray, dict]:
    import spade_reference as sr
    import train_landscape as tl
    if path.endswith(".safetensors"):  # a converted model, run in PyTorch
        w, meta = tl.load_safetensors_np(path)
        cfg = json.loads(meta["spade_config"])
        classes = [(int(c["id"]), str(c["name"]), tuple(int(x) for x in c["color"]))
                   for c in cfg["classes"]]
        arch = dict(size=cfg["crop_size"], ngf=cfg["ngf"], use_vae=cfg["use_vae"],
                    noise=cfg.get("texture_field") or 0.0)
        ck = {"_path": path, "arch": arch, "step": -1, "G": None}
        G0 = sr.SPADEGenerator(tl.g_options(arch["size"], arch["ngf"], arch["use_vae"],
                                            len(classes), arch["noise"]))
        missing = tl.load_folded(G0, w)
        if missing:
            raise SystemExit(f"{path}: generator keys missing: {missing[:8]}")
        ck["G"] = G0.state_dict()
        ck["classes"] = [[i, n, list(c)] for i, n, c in classes]
    elif os.path.isdir(path):
        ck = tl.load_latest(path)
        if ck is None:
            raise SystemExit(f"no checkpoint in {path}")
    else:
        ck = dict(torch.load(path, map_location="cpu", weights_only=True), _path=path)
    arch = ck["arch"]
    G, opt, classes, which = tl.generator_from_checkpoint(ck)
    if classes != sn.CLASSES:
        raise SystemExit(f"{ck['_path']}: classes differ from landscape.CLASSES")
    noise = arch.get("noise", 0.0)
    info = dict(checkpoint=os.path.abspath(ck["_path"]), step=int(ck["step"]), generator=which,
                arch=arch, hparams=ck.get("hparams"))
    del ck
    out = np.zeros(gt.shape + (3,), np.uint8)
    if gt.shape[1] != arch["size"]:
        raise SystemExit(f"--size {gt.shape[1]} != the checkpoint's {arch['size']}")
    for s in range(0, len(gt), batch):
        lab = torch.from_numpy(gt[s:s + batch].astype(np.int64))
        seg = F.one_hot(lab, len(classes)).permute(0, 3, 1, 2).float()
        z = None
        if arch["use_vae"]:
            z = torch.cat([torch.randn(1, tl.Z_DIM, generator=torch.Generator().manual_seed(sd))
                           for sd in seeds[s:s + batch]])
        # a noise model: the texture field of the map seed, as `spadework render --seed`
        y = G(tl.with_texture_field(seg, seeds[s:s + batch], noise), z)
        out[s:s + batch] = ((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    return out, info


# ------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------


def eroded_masks(gt: np.ndarray, k: int, erode: int) -> np.ndarray:
    """N x K x H x W bool: each class's pixels, eroded by ``erode`` px (3x3, edge = outside)."""
    m = torch.from_numpy(gt.astype(np.int64))
    m = F.one_hot(m, k).permute(0, 3, 1, 2).float()
    for _ in range(erode):
        m = -F.max_pool2d(-F.pad(m, (1, 1, 1, 1), value=0.0), 3, 1)
    return m.numpy() > 0.5


def profile_d2(img: np.ndarray, masks: np.ndarray, axis: int, min_run: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class sum of |second difference| of the region-mean colour profile along rows
    (axis 0: one value per row -> horizontal bands) or columns (axis 1), and the number of
    second differences. img H x W x 3 float, masks K x H x W -> (K,), (K,)."""
    red = 2 if axis == 0 else 1  # sum over x for row profiles, over y for column profiles
    mf = masks.astype(np.float64)
    n = mf.sum(red)                                             # K x L
    s = np.einsum("khw,hwc->khc" if axis == 0 else "khw,hwc->kwc", mf, img)  # K x L x 3
    valid = n >= min_run
    p = s / np.maximum(n, 1)[..., None]
    d2 = np.abs(p[:, :-2] - 2 * p[:, 1:-1] + p[:, 2:]).mean(-1)  # K x (L-2)
    ok = valid[:, :-2] & valid[:, 1:-1] & valid[:, 2:]
    return (d2 * ok).sum(1), ok.sum(1)


def banding(images: np.ndarray, masks: np.ndarray, min_run: int) -> dict:
    """Sums and counts of |d2| per class for row and column profiles over the set."""
    k = masks.shape[1]
    acc = {ax: [np.zeros(k), np.zeros(k)] for ax in ("rows", "cols")}
    for i in range(len(images)):
        img = images[i].astype(np.float64)
        for ax, axis in (("rows", 0), ("cols", 1)):
            s, c = profile_d2(img, masks[i], axis, min_run)
            acc[ax][0] += s
            acc[ax][1] += c
    return acc


def band_value(acc: dict, axes=("rows", "cols"), cls=None) -> float:
    s = sum(acc[a][0] if cls is None else acc[a][0][cls:cls + 1] for a in axes)
    c = sum(acc[a][1] if cls is None else acc[a][1][cls:cls + 1] for a in axes)
    return float(np.sum(s) / max(np.sum(c), 1))


def laplacian_abs(images: np.ndarray) -> np.ndarray:
    """N x (H-2) x (W-2) |4-neighbour Laplacian| of the luminance (0-255)."""
    y = images.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.abs(y[:, :-2, 1:-1] + y[:, 2:, 1:-1] + y[:, 1:-1, :-2] + y[:, 1:-1, 2:]
                  - 4 * y[:, 1:-1, 1:-1])


def detail(images: np.ndarray, masks: np.ndarray) -> dict:
    lap = laplacian_abs(images)
    inner = masks[:, :, 1:-1, 1:-1]
    per = [(float((lap * inner[:, c]).sum()), int(inner[:, c].sum())) for c in range(masks.shape[1])]
    return dict(mean=float(lap.mean()), per_class=per)


@torch.no_grad()
def penultimate(model: sn.SegUNet, images: np.ndarray, batch: int = 32) -> torch.Tensor:
    """N x width x H x W: SegUNet's last decoder block output (the input of its 1x1 head)."""
    model.eval()
    outs = []
    for s in range(0, len(images), batch):
        outs.append(model.features(sn.to_input(images[s:s + batch])))
    return torch.cat(outs)


def feature_sets(f: torch.Tensor, stride: int) -> dict:
    pix = f[:, :, ::stride, ::stride].permute(0, 2, 3, 1).reshape(-1, f.shape[1]).double().numpy()
    img = torch.cat([f.mean((2, 3)), f.std((2, 3))], 1).double().numpy()
    return dict(pixel=pix, image=img)


def frechet(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the rows of x and y."""
    mx, my = x.mean(0), y.mean(0)
    cx, cy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    # tr sqrt(cx cy) via the symmetric form sqrt(cx)^1/2 cy sqrt(cx)^1/2 (eigh, PSD-safe)
    w, v = np.linalg.eigh(cx)
    sx = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = sx @ cy @ sx
    tr = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    return float(((mx - my) ** 2).sum() + np.trace(cx) + np.trace(cy) - 2 * tr)


def self_test() -> None:
    """The figures on synthetic images: one region, a vertical sky-like gradient with pixel noise
    as the "render"; the same gradient smooth, with 4-px vertical stripes, and blurred."""
    rng = np.random.default_rng(0)
    n, h = 8, 64
    gt = np.zeros((n, h, h), np.uint8)
    grad = np.linspace(60, 200, h)[None, :, None, None] * np.ones((n, h, h, 3))
    render = np.clip(grad + rng.normal(0, 8, grad.shape), 0, 255).round()
    stripes = grad + 10 * (((np.arange(h) // 2) % 2) * 2 - 1)[None, None, :, None]
    blur = render.copy()
    blur[:, 1:-1, 1:-1] = (render[:, :-2, 1:-1] + render[:, 2:, 1:-1] + render[:, 1:-1, :-2]
                           + render[:, 1:-1, 2:] + render[:, 1:-1, 1:-1]) / 5
    m = eroded_masks(gt, 1, 0)
    rb, rd = banding(render, m, 16), detail(render, m)["mean"]
    for name, im in (("smooth", grad), ("stripes", stripes), ("blur", blur)):
        b = banding(im, m, 16)
        print(f"{name:8s} banding rows {band_value(b, ('rows',)) / band_value(rb, ('rows',)):.2f}x "
              f"cols {band_value(b, ('cols',)) / band_value(rb, ('cols',)):.2f}x  detail "
              f"{detail(im, m)['mean'] / rd:.2f}x")
    b = banding(stripes, m, 16)
    assert band_value(banding(grad, m, 16)) < 1e-9
    assert band_value(b, ("cols",)) / band_value(rb, ("cols",)) > 5
    assert band_value(b, ("rows",)) < 1e-9
    assert detail(blur, m)["mean"] < rd
    print("self-test ok")


# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------


def score_model(name, gens, gt, renders, masks0, masks, seg_model, ref, a) -> dict:
    pred = sn.predict(seg_model, gens, a.batch)
    conf = sn.confusion(gt, pred)
    s = sn.scores(conf)
    b = banding(gens, masks0, a.min_run)
    bi = banding(gens, masks, a.min_run)
    rbi = ref["banding_in"]
    d = detail(gens, masks)
    fs = feature_sets(penultimate(seg_model, gens, a.batch), a.fd_stride)
    rb, rd, rf = ref["banding"], ref["detail"], ref["feats"]
    per_detail = [None if rc[1] == 0 or rc[0] == 0 else (gc[0] / gc[1]) / (rc[0] / rc[1])
                  for gc, rc in zip(d["per_class"], rd["per_class"])]
    per_band = [None if sum(rb[x][1][c] for x in rb) == 0 or band_value(rb, cls=c) == 0 else
                band_value(b, cls=c) / band_value(rb, cls=c) for c in range(len(sn.CLASSES))]
    return dict(
        name=name, miou=s["miou"], pixel_acc=s["pixel_acc"], per_class_iou=s["per_class_iou"],
        confusion=conf.tolist(),
        banding=band_value(b) / band_value(rb),
        banding_rows=band_value(b, ("rows",)) / band_value(rb, ("rows",)),
        banding_cols=band_value(b, ("cols",)) / band_value(rb, ("cols",)),
        banding_sky=band_value(b, cls=SKY) / band_value(rb, cls=SKY),
        banding_abs=band_value(b), banding_per_class=per_band,
        banding_interior=band_value(bi) / band_value(rbi),
        banding_interior_sky=band_value(bi, cls=SKY) / band_value(rbi, cls=SKY),
        detail=d["mean"] / rd["mean"], detail_abs=d["mean"], detail_per_class=per_detail,
        fd_pixel=frechet(fs["pixel"], rf["pixel"]), fd_image=frechet(fs["image"], rf["image"]),
        mean_abs_diff_to_render=float(np.abs(gens.astype(np.float64) - renders).mean()))


def print_table(rows: list[dict], ref: dict) -> None:
    names = ["renders"] + [r["name"] for r in rows]
    w = max(12, max(len(n) for n in names) + 1)
    print(f"{'':<22}" + "".join(f"{n[-w + 1:]:>{w}}" for n in names))

    def line(label, ref_v, key, fmt):
        vals = [ref_v] + [r[key] for r in rows]
        print(f"{label:<22}" + "".join(f"{'-':>{w}}" if v is None else f"{fmt(v):>{w}}"
                                        for v in vals))
    line("mIoU", ref["miou"], "miou", lambda v: f"{v * 100:.1f}")
    line("pixel accuracy %", ref["pixel_acc"], "pixel_acc", lambda v: f"{v * 100:.1f}")
    line("banding x", 1.0, "banding", lambda v: f"{v:.2f}")
    line("  rows (h. bands) x", 1.0, "banding_rows", lambda v: f"{v:.2f}")
    line("  cols (v. streaks) x", 1.0, "banding_cols", lambda v: f"{v:.2f}")
    line("  sky x", 1.0, "banding_sky", lambda v: f"{v:.2f}")
    line("banding interior x", 1.0, "banding_interior", lambda v: f"{v:.2f}")
    line("  sky x", 1.0, "banding_interior_sky", lambda v: f"{v:.2f}")
    line("detail x", 1.0, "detail", lambda v: f"{v:.2f}")
    line("FD-seg pixel", ref["fd_pixel_floor"], "fd_pixel", lambda v: f"{v:.3f}")
    line("FD-seg image", ref["fd_image_floor"], "fd_image", lambda v: f"{v:.3f}")
    print("per-class IoU")
    for j, (_, n, _) in enumerate(sn.CLASSES):
        vals = [ref["per_class_iou"][j]] + [r["per_class_iou"][j] for r in rows]
        print(f"  {n:<20}" + "".join(f"{'-':>{w}}" if v is None else f"{v * 100:>{w}.1f}"
                                     for v in vals))
    print("per-class detail x (renders = 1)")
    for j, (_, n, _) in enumerate(sn.CLASSES):
        vals = [None] + [r["detail_per_class"][j] for r in rows]
        print(f"  {n:<20}" + "".join(f"{'':>{w}}" if v is None else f"{v:>{w}.2f}" for v in vals))
    print(f"(renders: banding |d2| {ref['banding_abs']:.3f}, detail |Laplacian| "
          f"{ref['detail_abs']:.2f}; FD columns of 'renders' = renders vs other renders)")


def figure(path: str, labels_ade, renders, gens: list, names: list, scale: int = 2) -> None:
    """Rows = held-out maps; columns = the map in its class colours | the procedural render |
    each model's image of it, captioned, every tile enlarged `scale`× by nearest."""
    from PIL import Image, ImageDraw
    lut = np.zeros((256, 3), np.uint8)
    for i, _, rgb in sn.CLASSES:
        lut[i] = rgb
    cols = [lut[labels_ade], renders] + list(gens)
    heads = ["map", "render"] + list(names)
    n, h, w = labels_ade.shape
    t, gap, head = h * scale, 4, 16
    im = Image.new("RGB", (len(cols) * (w * scale + gap) - gap, head + n * (t + gap) - gap), "white")
    d = ImageDraw.Draw(im)
    for c, (col, name) in enumerate(zip(cols, heads)):
        x = c * (w * scale + gap)
        d.text((x + 2, 2), name, fill="black")
        for r in range(n):
            tile = Image.fromarray(np.ascontiguousarray(col[r])).resize((w * scale, t), Image.NEAREST)
            im.paste(tile, (x, head + r * (t + gap)))
    im.save(path)
    print(f"wrote {path}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", nargs="*", default=[], help="converted .safetensors (Rust engine)")
    ap.add_argument("--ckpt", nargs="*", default=[], help="train_landscape checkpoints / run dirs")
    ap.add_argument("--names", nargs="*", help="column names (default: file names)")
    ap.add_argument("--bin", default="target/release/spadework")
    ap.add_argument("--segnet", default=os.path.join(HERE, "weights", "segnet.pt"))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed0", type=int, default=ev.EVAL_SEED0)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--erode", type=int, default=2)
    ap.add_argument("--min-run", type=int, default=16, help="pixels of a region in a row / column")
    ap.add_argument("--fd-stride", type=int, default=4)
    ap.add_argument("--json")
    ap.add_argument("--figure", help="write a PNG: map | render | each model, first --figure-n maps")
    ap.add_argument("--figure-n", type=int, default=6)
    ap.add_argument("--gen-dir", help="keep generated PNGs here (one sub-directory per model)")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse the PNGs in --gen-dir/<name> (same model assumed)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--render-threads", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batch-gen", type=int, default=8)
    ap.add_argument("--self-test", action="store_true", help="check the figures on synthetic images")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.self_test:
        return self_test()
    models = [("w", p) for p in a.weights] + [("c", p) for p in a.ckpt]
    if not models:
        ap.error("give --weights and/or --ckpt")
    names = a.names or [os.path.basename(os.path.normpath(p)) for _, p in models]
    if len(names) != len(models):
        ap.error("--names needs one name per model")
    if a.reuse and not a.gen_dir:
        ap.error("--reuse needs --gen-dir")
    a.segnet = ev._find(a.segnet, "segmenter (train it with tools/segnet.py)")
    if a.weights:
        a.bin = ev._find(a.bin, "spadework binary (cargo build --release)")
        a.weights = [ev._find(w, "generator weights") for w in a.weights]
        models = [("w", w) for w in a.weights] + [("c", p) for p in a.ckpt]
    seg_model, meta = sn.load(a.segnet)
    print(f"segmenter {a.segnet}: step {meta.get('step')}; its val: "
          + (sn.fmt_scores(meta["val"]) if meta.get("val") else "?"), flush=True)

    def world(seed0):
        lab = np.zeros((a.n, a.size, a.size), np.uint8)
        img = np.zeros((a.n, a.size, a.size, 3), np.uint8)
        for i in range(a.n):
            l, im, _ = landscape.sample(seed0 + i, a.size)
            lab[i], img[i] = l, np.asarray(im)[..., :3]
        return lab, img

    t0 = time.time()
    seeds = list(range(a.seed0, a.seed0 + a.n))
    labels_ade, renders = world(a.seed0)
    _, renders2 = world(a.seed0 + a.n)  # the FD floor: other held-out maps' renders
    gt = sn.to_channels(labels_ade)
    masks = eroded_masks(gt, sn.K, a.erode)
    masks0 = eroded_masks(gt, sn.K, 0)
    print(f"{a.n} held-out maps (seeds {seeds[0]}..{seeds[-1]}) + {a.n} for the FD floor in "
          f"{time.time() - t0:.0f}s", flush=True)

    conf = sn.confusion(gt, sn.predict(seg_model, renders, a.batch))
    rs = sn.scores(conf)
    rf = feature_sets(penultimate(seg_model, renders, a.batch), a.fd_stride)
    rf2 = feature_sets(penultimate(seg_model, renders2, a.batch), a.fd_stride)
    ref = dict(miou=rs["miou"], pixel_acc=rs["pixel_acc"], per_class_iou=rs["per_class_iou"],
               banding=banding(renders, masks0, a.min_run), detail=detail(renders, masks),
               banding_in=banding(renders, masks, a.min_run),
               feats=rf, fd_pixel_floor=frechet(rf2["pixel"], rf["pixel"]),
               fd_image_floor=frechet(rf2["image"], rf["image"]))
    ref["banding_abs"] = band_value(ref["banding"])
    ref["detail_abs"] = ref["detail"]["mean"]

    rows, all_gens = [], []
    for (kind, path), name in zip(models, names):
        t0 = time.time()
        info = {}
        if kind == "w":
            gd = os.path.join(a.gen_dir, name) if a.gen_dir else tempfile.mkdtemp(prefix="quality_")
            gens = render_rust(a, path, labels_ade, seeds, gd)
            if not a.gen_dir:
                import shutil
                shutil.rmtree(gd, ignore_errors=True)
            info = dict(weights=path, bin=a.bin, z="spadework --seed = map seed")
        else:
            d = os.path.join(a.gen_dir, name) if a.gen_dir else None
            pngs = [os.path.join(d, f"{s}_gen.png") for s in seeds] if d else []
            if a.reuse and pngs and all(os.path.exists(p) for p in pngs):
                from PIL import Image
                gens = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in pngs])
                info = dict(reused=d)
            else:
                gens, info = render_torch(path, gt, seeds, a.batch_gen)
            info["z"] = "torch.Generator().manual_seed(map seed)"
            if a.gen_dir and not info.get("reused"):
                from PIL import Image
                d = os.path.join(a.gen_dir, name)
                os.makedirs(d, exist_ok=True)
                for s, g in zip(seeds, gens):
                    Image.fromarray(g).save(os.path.join(d, f"{s}_gen.png"))
        if gens.shape[1:3] != gt.shape[1:]:
            raise SystemExit(f"{name}: images are {gens.shape[1:3]}, maps {gt.shape[1:]}")
        r = score_model(name, gens, gt, renders.astype(np.float64), masks0, masks, seg_model,
                        ref, a)
        r.update(source=info, seconds=time.time() - t0)
        rows.append(r)
        all_gens.append(gens[:a.figure_n])
        print(f"{name}: mIoU {r['miou'] * 100:.1f}, banding {r['banding']:.2f}x (sky "
              f"{r['banding_sky']:.2f}x), detail {r['detail']:.2f}x, FD-seg {r['fd_pixel']:.3f} "
              f"({time.time() - t0:.0f}s)", flush=True)
    print()
    print_table(rows, ref)
    if a.figure:
        figure(a.figure, labels_ade[:a.figure_n], renders[:a.figure_n], all_gens, names)
    if a.json:
        out = dict(n=a.n, seeds=[seeds[0], seeds[-1]], size=a.size, erode=a.erode,
                   min_run=a.min_run, fd_stride=a.fd_stride,
                   classes=[[i, n] for i, n, _ in sn.CLASSES],
                   segnet=dict(path=a.segnet, step=meta.get("step"), val=meta.get("val")),
                   renders=dict(miou=rs["miou"], pixel_acc=rs["pixel_acc"],
                                per_class_iou=rs["per_class_iou"], confusion=conf.tolist(),
                                banding_abs=ref["banding_abs"], detail_abs=ref["detail_abs"],
                                fd_pixel_floor=ref["fd_pixel_floor"],
                                fd_image_floor=ref["fd_image_floor"]),
                   models=rows)
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
