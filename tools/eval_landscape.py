#!/usr/bin/env python3
"""Score the landscape demo generator the way the SPADE paper does: segment its outputs.

    python3 tools/eval_landscape.py --weights landscape.safetensors --json eval.json --grid eval.png
    python3 tools/eval_landscape.py --no-gen ...     # only (a): the segmenter on real renders

For ``--n`` (200) held-out seeds ``--seed0`` (1,000,000) ... (never seen by the generator, whose
training seeds are < 1,000,000, nor by the segmenter, trained on seeds >= 2,000,000) at
``--size`` (128, the demo model's crop size):

(a) *real*: ``landscape.sample(seed, size)``'s own render is segmented by ``tools/segnet.py``'s
    net: the ceiling, i.e. how well the segmenter reads the images it was trained on;
(b) *generated*: the map is written as a palette PNG (pixel values = ADE ids,
    ``landscape.palette_png``) and rendered by the Rust engine, one process per map::

        spadework render --weights W --map MAP.png --seed SEED --backend cpu -o GEN.png

    (the generator is a VAE model; ``--seed`` = the map's seed picks z ~ N(0, I), so a run is
    reproducible), and the output is segmented.

Both are compared with the input maps: confusion matrix over the whole set (rows = map, columns
= prediction, 14 classes in ``landscape.CLASSES`` order), per-class IoU = TP / (TP + FP + FN),
mIoU = mean IoU over the classes present in the union of ground truth and predictions across
the set, pixel accuracy = trace / total.  (b) / (a) is the fraction of the segmenter's ceiling
the generator reaches.  Printed as a table; ``--json`` also stores the confusion matrices,
per-image pixel accuracies, the segmenter's own validation scores and timings.  ``--grid`` writes
``--grid-rows`` (8) rows, evenly spaced over the set: map (ADE colours) | procedural render |
generated | segmentation of generated (ADE colours); ``--grid-scale`` upsamples (nearest).

Rendering speed: one ``spadework`` process per map; there is no batch mode in the CLI, and the
per-process overhead (model load ~40-90 ms) is small next to the render.  Measured with the
cores busy (1 rayon thread at nice 19): 0.22-0.26 s per map for an ngf-8 test model; the ngf-32
demo generator has ~3-4x the MACs (15.4 G per 128x128 image), so expect roughly 0.5-1 s per map
on 2 free cores, i.e. 2-4 minutes for 200 maps (the Python side, 200 procedural samples and
the segmentation, is a few seconds).  ``--jobs J`` runs J processes at once (give each
``--render-threads`` = cores / J; the default leaves rayon's thread count alone, i.e. all
cores, with ``--jobs 1``).
Generated images go to ``--gen-dir`` (default: a temporary directory, removed afterwards);
``--reuse`` skips maps whose output already exists there (same weights assumed: the JSON of
a reused run records it).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import landscape  # noqa: E402
import segnet as sn  # noqa: E402

EVAL_SEED0 = 1_000_000
IDS = np.array([c[0] for c in sn.CLASSES], np.uint8)  # channel index -> ADE id


def _find(path: str, what: str) -> str:
    """``path`` as given, else relative to the repo root."""
    for p in (path, os.path.join(ROOT, path)):
        if os.path.exists(p):
            return os.path.abspath(p)
    raise SystemExit(f"{what} not found: {path}")


def render_one(binary: str, weights: str, label_ade: np.ndarray, seed: int, gen_dir: str,
               env: dict, reuse: bool) -> tuple[np.ndarray, float]:
    out = os.path.join(gen_dir, f"{seed}_gen.png")
    if not (reuse and os.path.exists(out)):
        mp = os.path.join(gen_dir, f"{seed}_map.png")
        landscape.palette_png(label_ade, mp)
        cmd = [binary, "render", "--weights", weights, "--map", mp, "--seed", str(seed),
               "--backend", "cpu", "-o", out]
        t0 = time.time()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        dt = time.time() - t0
        if r.returncode != 0:
            raise RuntimeError(f"seed {seed}: {' '.join(cmd)} failed ({r.returncode}):\n"
                               f"{r.stdout}{r.stderr}")
    else:
        dt = 0.0
    with Image.open(out) as im:
        return np.asarray(im.convert("RGB")), dt


def render_all(a, labels_ade: np.ndarray, seeds: list[int], gen_dir: str) -> tuple[np.ndarray, dict]:
    env = dict(os.environ)
    if a.render_threads:
        env["RAYON_NUM_THREADS"] = str(a.render_threads)
    n = len(seeds)
    gens: list = [None] * n
    times = []
    t0 = last = time.time()
    with cf.ThreadPoolExecutor(max(1, a.jobs)) as ex:
        futs = {ex.submit(render_one, a.bin, a.weights, labels_ade[i], seeds[i], gen_dir, env,
                          a.reuse): i for i in range(n)}
        done = 0
        for f in cf.as_completed(futs):
            i = futs[f]
            gens[i], dt = f.result()
            times.append(dt)
            done += 1
            if time.time() - last > 10 or done == n:
                last = time.time()
                el = last - t0
                print(f"  rendered {done}/{n}  {el:.0f}s  ETA {el / done * (n - done):.0f}s",
                      flush=True)
    shapes = {g.shape for g in gens}
    if len(shapes) != 1:
        raise SystemExit(f"generated images have different shapes: {shapes}")
    wall = time.time() - t0
    rendered = [t for t in times if t > 0]
    return np.stack(gens), dict(wall_seconds=wall, n_rendered=len(rendered),
                                mean_process_seconds=float(np.mean(rendered)) if rendered else None)


def resize_labels(labels: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """PIL nearest, as the engine resizes a map to the model's crop size."""
    return np.stack([np.asarray(Image.fromarray(l).resize((hw[1], hw[0]), Image.NEAREST))
                     for l in labels])


def per_image_acc(gt: np.ndarray, pred: np.ndarray) -> list[float]:
    return [float(v) for v in (gt == pred).reshape(len(gt), -1).mean(1)]


def print_table(res: dict, have_gen: bool) -> None:
    a, b = res["real"], res.get("generated")
    hdr = f"{'id':>4} {'class':<9} {'map px%':>8} {'IoU real':>9}"
    if have_gen:
        hdr += f" {'IoU gen':>8} {'gen px%':>8}"
    print(hdr)
    for j, (ade, name, _) in enumerate(sn.CLASSES):
        def f(v):
            return "      -" if v is None else f"{v * 100:7.1f}"
        row = f"{ade:>4} {name:<9} {a['gt_frac'][j] * 100:8.2f} {f(a['per_class_iou'][j]):>9}"
        if have_gen:
            pf = b["pred_frac"][j] * 100
            row += f" {f(b['per_class_iou'][j]):>8} {pf:8.2f}"
        print(row)
    line = f"{'':>4} {'mIoU':<9} {'':>8} {a['miou'] * 100:9.1f}"
    acc = f"{'':>4} {'pixel acc':<9} {'':>8} {a['pixel_acc'] * 100:9.1f}"
    if have_gen:
        line += f" {b['miou'] * 100:8.1f}"
        acc += f" {b['pixel_acc'] * 100:8.1f}"
    print(line)
    print(acc)
    print(f"classes in the mIoU: real {a['n_present']}" +
          (f", generated {b['n_present']}" if have_gen else ""))
    if have_gen:
        print(f"generated / real: mIoU {b['miou'] / max(a['miou'], 1e-9) * 100:.0f} %, pixel acc "
              f"{b['pixel_acc'] / max(a['pixel_acc'], 1e-9) * 100:.0f} %")


def write_grid(path: str, rows: list[int], labels_ade, images, gens, seg_gen, seg_real,
               scale: int) -> None:
    have_gen = gens is not None
    cols = ["map", "procedural render", "generated", "seg. of generated"] if have_gen else \
        ["map", "procedural render", "seg. of render"]
    h, w = labels_ade.shape[1:]
    if have_gen and gens.shape[1:3] != (h, w):
        h, w = gens.shape[1:3]
    th, tw, pad, head = h * scale, w * scale, 4, 16
    out = Image.new("RGB", (len(cols) * (tw + pad) + pad, head + len(rows) * (th + pad) + pad),
                    (255, 255, 255))
    d = ImageDraw.Draw(out)
    for c, name in enumerate(cols):
        d.text((pad + c * (tw + pad) + 2, 2), name, fill=(0, 0, 0))

    def tile(arr):
        im = Image.fromarray(np.ascontiguousarray(arr))
        if im.size != (w, h):
            im = im.resize((w, h), Image.NEAREST)
        return im.resize((tw, th), Image.NEAREST) if scale != 1 else im

    for r, i in enumerate(rows):
        y = head + pad + r * (th + pad)
        tiles = [landscape.colorize(labels_ade[i]), images[i]]
        if have_gen:
            tiles += [gens[i], landscape.colorize(IDS[seg_gen[i]])]
        else:
            tiles += [landscape.colorize(IDS[seg_real[i]])]
        for c, t in enumerate(tiles):
            out.paste(tile(t), (pad + c * (tw + pad), y))
    out.save(path)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="landscape.safetensors")
    ap.add_argument("--bin", default="target/release/spadework")
    ap.add_argument("--segnet", default=os.path.join(HERE, "weights", "segnet.pt"))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed0", type=int, default=EVAL_SEED0)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--grid", help="write a sample grid PNG here")
    ap.add_argument("--grid-rows", type=int, default=8)
    ap.add_argument("--grid-scale", type=int, default=1)
    ap.add_argument("--gen-dir", help="keep maps / generated PNGs here (default: temp dir)")
    ap.add_argument("--reuse", action="store_true", help="reuse existing outputs in --gen-dir")
    ap.add_argument("--jobs", type=int, default=1, help="parallel spadework processes")
    ap.add_argument("--render-threads", type=int, help="RAYON_NUM_THREADS for each process")
    ap.add_argument("--no-gen", action="store_true", help="skip (b): only segment real renders")
    ap.add_argument("--tta", action="store_true", help="segmenter h-flip test-time augmentation")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (segmentation)")
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.seed0 < EVAL_SEED0 or a.seed0 + a.n > sn.TRAIN_SEED0:
        print(f"warning: seeds {a.seed0}..{a.seed0 + a.n - 1} are not all in the held-out range "
              f"[{EVAL_SEED0}, {sn.TRAIN_SEED0})", flush=True)
    if a.reuse and not a.gen_dir:
        ap.error("--reuse needs --gen-dir")
    a.segnet = _find(a.segnet, "segmenter (train it with tools/segnet.py)")
    if not a.no_gen:
        a.bin = _find(a.bin, "spadework binary (cargo build --release)")
        try:
            a.weights = _find(a.weights, "generator weights")
        except SystemExit as e:
            raise SystemExit(f"{e}\n(export + convert: tools/export_landscape.py prints the "
                             f"command; or pass --no-gen to score only the real renders)")

    model, meta = sn.load(a.segnet)
    print(f"segmenter {a.segnet}: step {meta.get('step')}, width {meta['arch']['width']}, "
          f"trained at {meta['arch']['size']}^2; its val: "
          + (sn.fmt_scores(meta["val"]) if meta.get("val") else "?"), flush=True)

    seeds = list(range(a.seed0, a.seed0 + a.n))
    t0 = time.time()
    labels_ade = np.zeros((a.n, a.size, a.size), np.uint8)
    images = np.zeros((a.n, a.size, a.size, 3), np.uint8)
    for i, s in enumerate(seeds):
        lab, img, _ = landscape.sample(s, a.size)
        labels_ade[i], images[i] = lab, np.asarray(img)[..., :3]
    gt = sn.to_channels(labels_ade)
    print(f"{a.n} held-out maps (seeds {seeds[0]}..{seeds[-1]}) at {a.size}^2 in "
          f"{time.time() - t0:.1f}s", flush=True)

    t0 = time.time()
    seg_real = sn.predict(model, images, a.batch, a.tta)
    conf_a = sn.confusion(gt, seg_real)
    res = dict(n=a.n, seeds=[seeds[0], seeds[-1]], size=a.size, tta=a.tta,
               classes=[[i, n] for i, n, _ in sn.CLASSES],
               segnet=dict(path=a.segnet, step=meta.get("step"), arch=meta["arch"],
                           val=meta.get("val")),
               real=dict(sn.scores(conf_a), confusion=conf_a.tolist()))
    res["real"]["pred_frac"] = (conf_a.sum(0) / conf_a.sum()).tolist()
    print(f"segmented real renders in {time.time() - t0:.1f}s", flush=True)

    gens = seg_gen = None
    acc_gen = None
    if not a.no_gen:
        tmp = None
        gen_dir = a.gen_dir
        if not gen_dir:
            tmp = gen_dir = tempfile.mkdtemp(prefix="eval_landscape_")
        os.makedirs(gen_dir, exist_ok=True)
        print(f"rendering {a.n} maps with {a.bin} ({a.weights}), --backend cpu, {a.jobs} "
              f"process(es) at a time" + (f", {a.render_threads} threads each"
                                          if a.render_threads else ""), flush=True)
        try:
            gens, timing = render_all(a, labels_ade, seeds, gen_dir)
        finally:
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
        gt_b = gt
        if gens.shape[1:3] != gt.shape[1:]:
            print(f"note: generated images are {gens.shape[2]}x{gens.shape[1]}; the maps are "
                  f"resized (nearest) to that for (b)", flush=True)
            gt_b = resize_labels(gt, gens.shape[1:3])
        t0 = time.time()
        seg_gen = sn.predict(model, gens, a.batch, a.tta)
        conf_b = sn.confusion(gt_b, seg_gen)
        res["generated"] = dict(sn.scores(conf_b), confusion=conf_b.tolist(),
                                pred_frac=(conf_b.sum(0) / conf_b.sum()).tolist(),
                                weights=a.weights, bin=a.bin, z_seed="map seed",
                                render=timing, reused=a.reuse,
                                image_hw=list(gens.shape[1:3]))
        acc_gen = per_image_acc(gt_b, seg_gen)
        print(f"segmented generated images in {time.time() - t0:.1f}s; rendering "
              f"{timing['wall_seconds']:.0f}s wall ({timing['n_rendered']} rendered, "
              + (f"{timing['mean_process_seconds']:.2f}s per process)" if timing['n_rendered']
                 else "all reused)"), flush=True)
    acc_real = per_image_acc(gt, seg_real)
    res["per_image"] = [dict(seed=s, acc_real=acc_real[i],
                             **({"acc_gen": acc_gen[i]} if acc_gen else {}))
                        for i, s in enumerate(seeds)]

    print()
    print_table(res, not a.no_gen)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
        print(f"wrote {a.json}")
    if a.grid:
        k = min(a.grid_rows, a.n)
        rows = sorted({round(j * (a.n - 1) / max(1, k - 1)) for j in range(k)}) if k > 1 else [0]
        write_grid(a.grid, rows, labels_ade, images, gens, seg_gen, seg_real, a.grid_scale)
        print(f"wrote {a.grid} (seeds {', '.join(str(seeds[i]) for i in rows)})")


if __name__ == "__main__":
    main()
