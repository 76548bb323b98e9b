#!/usr/bin/env python3
"""DrawBench-style evaluation of the built-in text-to-image stack: held-out prompts written
unlike the procedural world's captions, scored on the layouts spadework generates.

    python3 tools/eval_text_to_image.py --spadework target/release/spadework [--samples 4]
        [--layout-model DIR] [--guidance G] [--dynamic-threshold P] [--segnet PATH] [--out DIR]
    python3 tools/eval_text_to_image.py --torch-base WORK --encoder minilm|bow   # base stage only

A sample passes when every class its prompt names covers at least 2 % of the layout and no
class it excludes covers more than 30 %. Reported: the pass rate overall and per category, and,
with --segnet (tools/segnet.py's checkpoint), the mIoU of the segmenter on the rendered images
against the generated layouts (does the image show the layout?), and the diversity (the mean
pixel disagreement between a prompt's samples). A grid prompt → layout | image of the first
samples is written to DIR/grid.png. With --look-classifier, prompts that name a look (in words
the captions do not use) are rendered and the look classifier of tools/train_prior.py reads the
look off each image: the look agreement.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import landscape  # noqa: E402

IDS = {name: i for i, name in landscape._NAMES.items()}

# (category, prompt, classes it names, classes it excludes). Written away from the captions'
# phrasing: synonyms (ocean, woods, stream, trail, boulders, peaks, beach, wheat, dirt), word
# order, misspellings, negation, counts, unusual combinations and looks.
PROMPTS = [
    ("synonym", "the ocean beneath a clear sky", ["sea", "sky"], []),
    ("synonym", "deep woods", ["tree"], []),
    ("synonym", "a stream running through grassland", ["river", "grass"], []),
    ("synonym", "a trail across a meadow", ["path", "grass"], []),
    ("synonym", "big boulders on grass", ["rock", "grass"], []),
    ("synonym", "tall peaks far away", ["mountain", "sky"], []),
    ("synonym", "a beach by the ocean", ["sand", "sea"], []),
    ("synonym", "wheat as far as the eye can see", ["field"], []),
    ("synonym", "a pond surrounded by forest", ["water", "tree"], []),
    ("synonym", "dunes of sand under the sun", ["sand", "sky"], []),
    ("paraphrase", "there is a lake and behind it some mountains", ["water", "mountain"], []),
    ("paraphrase", "you can see hills covered in grass", ["hill", "grass"], []),
    ("paraphrase", "flowers everywhere in a field of green", ["flower", "grass"], []),
    ("paraphrase", "a river cuts through the valley between mountains", ["river", "mountain"], []),
    ("order", "mountains, a lake, and pine trees", ["mountain", "water", "tree"], []),
    ("order", "sky above, sea below", ["sky", "sea"], []),
    ("order", "at dusk: a forest and a river", ["tree", "river"], []),
    ("misspelling", "a montain lake", ["mountain", "water"], []),
    ("misspelling", "a forrest by a rivr", ["tree", "river"], []),
    ("misspelling", "wildflowers in a medow", ["flower", "grass"], []),
    ("misspelling", "snowy mountians at sunset", ["mountain"], []),
    ("negation", "a calm sea and nothing else", ["sea", "sky"], ["tree", "mountain", "field"]),
    ("negation", "an open grassland with no trees", ["grass"], ["tree"]),
    ("negation", "a lake without any mountains", ["water"], ["mountain"]),
    ("negation", "only sky and sea", ["sky", "sea"], ["tree", "grass", "mountain"]),
    ("count", "a single rock in a field", ["rock", "field"], []),
    ("count", "two hills and a path", ["hill", "path"], []),
    ("count", "a few trees on a grassy hill", ["tree", "grass"], []),
    ("combination", "a desert with a river", ["sand", "river"], []),
    ("combination", "wheat fields beside the sea", ["field", "sea"], []),
    ("combination", "flowers at the foot of snowy mountains", ["flower", "mountain"], []),
    ("combination", "a path leading to a lake", ["path", "water"], []),
    ("look", "a lake at golden hour", ["water"], []),
    ("look", "grey overcast sky over the fields", ["sky", "field"], []),
    ("look", "mountains in the purple twilight", ["mountain", "sky"], []),
    ("look", "a sunny day on the beach", ["sand", "sky"], []),
]

# A second, disjoint set in the same categories, for choosing defaults (--prompts dev), so
# the figures reported on PROMPTS are not tuned on them.
PROMPTS_DEV = [
    ("synonym", "the open ocean", ["sea"], []),
    ("synonym", "a thick woodland", ["tree"], []),
    ("synonym", "a brook winding through a meadow", ["river", "grass"], []),
    ("synonym", "a footpath over the lawn", ["path", "grass"], []),
    ("synonym", "stones lying in the grass", ["rock", "grass"], []),
    ("synonym", "distant summits under the sky", ["mountain", "sky"], []),
    ("synonym", "a sandy shore and the ocean", ["sand", "sea"], []),
    ("synonym", "farmland stretching to the horizon", ["field"], []),
    ("paraphrase", "behind the lake rise high mountains", ["water", "mountain"], []),
    ("paraphrase", "green grass covers the rolling hills", ["hill", "grass"], []),
    ("paraphrase", "the meadow is full of blossoms", ["flower", "grass"], []),
    ("paraphrase", "mountains on both sides of a river", ["river", "mountain"], []),
    ("order", "trees, a river, and mountains", ["tree", "river", "mountain"], []),
    ("order", "below the sky, the sea", ["sky", "sea"], []),
    ("order", "grass in front, forest behind", ["grass", "tree"], []),
    ("misspelling", "a lak in the mountins", ["water", "mountain"], []),
    ("misspelling", "a grassy feild with trees", ["field", "tree"], []),
    ("misspelling", "rocky montains", ["mountain"], []),
    ("misspelling", "a sandy beech by the see", ["sand", "sea"], []),
    ("negation", "just the sea, no land", ["sea"], ["tree", "grass", "field"]),
    ("negation", "a meadow without a single tree", ["grass"], ["tree"]),
    ("negation", "a river with no mountains around", ["river"], ["mountain"]),
    ("count", "one big rock on the grass", ["rock", "grass"], []),
    ("count", "three trees by a pond", ["tree", "water"], []),
    ("count", "a couple of hills under the sky", ["hill", "sky"], []),
    ("combination", "sand dunes next to the ocean", ["sand", "sea"], []),
    ("combination", "a wheat field at the foot of mountains", ["field", "mountain"], []),
    ("combination", "a river through a desert", ["river", "sand"], []),
    ("look", "a pond in the evening glow", ["water"], []),
    ("look", "fields on a cloudy day", ["field", "sky"], []),
]


# Prompts that name a look in words the captions do not use, and the look they name.
LOOK_PROMPTS = [
    ("day", "a lake on a bright sunny afternoon"), ("day", "mountains under clear blue skies"),
    ("day", "a meadow at noon"), ("day", "fields in full sunshine"),
    ("golden", "a lake at sundown"), ("golden", "warm light of the setting sun over hills"),
    ("golden", "the sea in the golden glow of evening"), ("golden", "a forest lit by a low orange sun"),
    ("overcast", "a lake on a gloomy grey day"), ("overcast", "hills under a dull cloudy sky"),
    ("overcast", "a rainy-looking grey afternoon over fields"), ("overcast", "mountains under thick cloud cover"),
    ("dusk", "a lake at twilight"), ("dusk", "mountains in the evening after the sun went down"),
    ("dusk", "the coast at nightfall"), ("dusk", "a dim violet evening over a meadow"),
]


def look_agreement(a, tmp):
    """How often the look classifier (tools/train_prior.py) reads the named look off the image."""
    import torch
    import train_prior as tp
    lc = torch.load(a.look_classifier)
    ok, conf = 0, np.zeros((4, 4), int)
    for i, (look, prompt) in enumerate(LOOK_PROMPTS):
        _, grid = run(a, prompt, tmp, f"look{i}")
        for im in images_of(grid, a.samples):
            pred = int(tp.classify_looks(lc, tp.color_features(im[None])).argmax())
            conf[tp.LOOKS.index(look), pred] += 1
            ok += tp.LOOKS[pred] == look
    n = len(LOOK_PROMPTS) * a.samples
    print(f"look agreement {ok}/{n} = {100 * ok / n:.1f} % (rows: named look, cols: classified; "
          f"{tp.LOOKS})\n{conf}")
    return {"look_agreement": ok / n, "look_confusion": conf.tolist()}


def run(a, prompt, tmp, k):
    out, lay = os.path.join(tmp, f"img{k}.png"), os.path.join(tmp, f"lay{k}.png")
    cmd = [a.spadework, "txt2img", prompt, "-o", out, "--layout-out", lay, "--samples",
           str(a.samples), "--seed", str(a.seed), "--backend", a.backend]
    for flag, v in [("--guidance", a.guidance), ("--dynamic-threshold", a.dynamic_threshold),
                    ("--layout-model", a.layout_model), ("--steps", a.steps),
                    ("--layout-aug", a.layout_aug)]:
        if v is not None:
            cmd += [flag, str(v)]
    if a.no_sr:
        cmd.append("--no-sr")
    if a.static_threshold:
        cmd.append("--static-threshold")
    subprocess.run(cmd, check=True, capture_output=True)
    layouts = []
    for j in range(a.samples):
        p = lay if a.samples == 1 else lay[:-4] + f"-{j}.png"
        layouts.append(np.array(Image.open(p)))  # palette indices = ADE ids
    grid = np.array(Image.open(out).convert("RGB"))
    return layouts, grid


_TORCH = {}


def run_torch(a, prompt):
    """--torch-base: the base stage alone in PyTorch (train_layout.py's twin of the engine's
    sampler, DDIM with guidance against the empty text), upsampled by nearest to 128², with the
    frozen MiniLM or the bag-of-words baseline (--encoder) → (layouts as ADE ids, no images)."""
    import torch
    import train_layout as tl
    if not _TORCH:
        torch.set_num_threads(1)
        if a.encoder == "bow":
            _TORCH["base"], _TORCH["enc"] = tl.load_bow(a.torch_base)
        else:
            _TORCH["base"], _TORCH["enc"] = tl.load_ema(a.torch_base, "base"), tl.TextEncoder()
        with torch.no_grad():
            _TORCH["empty"] = _TORCH["enc"]([""])
    g = torch.Generator().manual_seed(a.seed + 7919 * len(prompt))
    with torch.no_grad():
        text = _TORCH["enc"]([prompt] * a.samples)
        low, _ = tl.sample_layouts(_TORCH["base"], None, text, _TORCH["empty"], steps=a.steps or 10,
                                   guidance=3.0 if a.guidance is None else a.guidance,
                                   dyn=a.dynamic_threshold, clip=a.static_threshold, generator=g)
    ids = np.array(tl.ADE_IDS, np.uint8)[low.argmax(1).numpy()]
    return [np.kron(x, np.ones((4, 4), np.uint8)) for x in ids], None


def ade_colours(layout):
    """A layout of ADE20K ids → its ADE20K colours [H, W, 3]."""
    pal = np.array(landscape.ADE20K_PALETTE, np.uint8)
    return pal[np.clip(layout.astype(int) - 1, 0, len(pal) - 1)]


def images_of(grid, n, size=128, gap=2):
    """The rendered images out of a --samples grid (each tile: layout | image)."""
    if n == 1:
        return [grid]
    cols = int(np.ceil(np.sqrt(n)))
    tw = 2 * size + gap
    out = []
    for j in range(n):
        oy, ox = (j // cols) * (size + gap), (j % cols) * (tw + gap)
        out.append(grid[oy:oy + size, ox + size + gap:ox + tw])
    return out


def evaluate(a):
    """The prompt set through `spadework txt2img` with `a`'s settings → summary dict."""
    results, per_cat, rows, renders, layouts_all, diversity = [], {}, [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (cat, prompt, need, excl) in enumerate(PROMPTS_DEV if a.prompts == "dev" else PROMPTS):
            if a.torch_base:
                layouts, grid = run_torch(a, prompt)
                imgs = [np.zeros((128, 128, 3), np.uint8)] * len(layouts)
            else:
                layouts, grid = run(a, prompt, tmp, i)
                imgs = images_of(grid, a.samples)
            passed = 0
            # Diversity: the mean pixel disagreement between this prompt's samples.
            pairs = [(x != y).mean() for j, x in enumerate(layouts) for y in layouts[j + 1:]]
            diversity.append(float(np.mean(pairs)) if pairs else 0.0)
            for lay in layouts:
                share = {c: float((lay == IDS[c]).mean()) for c in IDS}
                ok = all(share[c] >= 0.02 for c in need) and all(share[c] <= 0.30 for c in excl)
                passed += ok
            results.append({"category": cat, "prompt": prompt, "passed": passed, "of": len(layouts)})
            c = per_cat.setdefault(cat, [0, 0])
            c[0] += passed
            c[1] += len(layouts)
            renders += imgs
            layouts_all += layouts
            rows.append((prompt, layouts[0], imgs[0]))
            if not a.quiet:
                print(f"{passed}/{len(layouts)}  [{cat}] {prompt}", flush=True)
    total = sum(r["passed"] for r in results), sum(r["of"] for r in results)
    print(f"guidance {a.guidance}, static threshold {a.static_threshold}, dynamic threshold {a.dynamic_threshold}: pass rate "
          f"{total[0]}/{total[1]} = {100 * total[0] / total[1]:.1f} %, diversity "
          f"{np.mean(diversity):.3f} (mean pixel disagreement between a prompt's samples)",
          flush=True)
    if not a.quiet:
        for cat, (ok, n) in per_cat.items():
            print(f"  {cat:12s} {100 * ok / n:5.1f} % ({ok}/{n})")
    summary = {"pass_rate": total[0] / total[1], "diversity": float(np.mean(diversity)),
               "per_category": {c: v[0] / v[1] for c, v in per_cat.items()},
               "prompts": results, "args": vars(a)}
    return summary, rows, renders, layouts_all


FIGURE_PROMPTS = [
    "a calm lake below snowy mountains at dusk",
    "the ocean beneath a clear sky",
    "a trail across a meadow full of flowers",
    "a stream running through deep woods",
    "golden wheat fields and rolling hills at sundown",
    "a desert with red rock formations",
    "an open grassland with no trees, overcast",
    "a beach by the ocean on a sunny day",
]


def figure(a, path):
    """The README figure: each prompt, then layout | image for three seeds."""
    from PIL import ImageDraw
    a.samples = 3
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, prompt in enumerate(FIGURE_PROMPTS):
            _, grid = run(a, prompt, tmp, f"fig{i}")
            # The grid is 2 columns × 2 rows of tiles for 3 samples: take the tiles in order.
            size, gap, tw = 128, 2, 2 * 128 + 2
            tiles = []
            for j in range(3):
                oy, ox = (j // 2) * (size + gap), (j % 2) * (tw + gap)
                tiles.append(grid[oy:oy + size, ox:ox + tw])
            label = Image.new("RGB", (200, size), "white")
            d = ImageDraw.Draw(label)
            words, line, y = prompt.split(), "", 8
            for w in words:  # wrap at ~30 characters
                if len(line) + len(w) > 30:
                    d.text((6, y), line, fill="black")
                    line, y = "", y + 14
                line = (line + " " + w).strip()
            d.text((6, y), line, fill="black")
            gapc = np.full((size, 6, 3), 255, np.uint8)
            rows.append(np.concatenate([np.array(label)] + sum([[gapc, t] for t in tiles], []), 1))
            print(prompt, flush=True)
    sep = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    Image.fromarray(np.concatenate(sum([[r, sep] for r in rows], [])[:-1], 0)).save(path)
    print(f"wrote {path}")


def threshold_figure(a, path, prompt="a trail across a meadow", guidances=(1, 3, 8)):
    """Layouts of one prompt (4 samples) per guidance weight: without thresholding, static, and
    dynamic (0.995) — what thresholding does to a guided layout."""
    from PIL import ImageDraw
    a.samples = 4
    cols = []
    with tempfile.TemporaryDirectory() as tmp:
        for g in guidances:
            rows = []
            for label, st, dy in [("none", False, None), ("static", True, None), ("dynamic", False, 0.995)]:
                a.guidance, a.static_threshold, a.dynamic_threshold = float(g), st, dy
                layouts, _ = run(a, prompt, tmp, f"th{g}{label}")
                tiles = [ade_colours(l)[::2, ::2] for l in layouts]
                row = np.concatenate(sum([[t, np.full((64, 2, 3), 255, np.uint8)] for t in tiles], [])[:-1], 1)
                head = Image.new("RGB", (row.shape[1], 14), "white")
                ImageDraw.Draw(head).text((2, 1), f"guidance {g:g}, {label}", fill="black")
                rows += [np.array(head), row, np.full((6, row.shape[1], 3), 255, np.uint8)]
            cols += [np.concatenate(rows, 0), np.full((sum(r.shape[0] for r in rows), 10, 3), 255, np.uint8)]
    Image.fromarray(np.concatenate(cols[:-1], 1)).save(path)
    print(f"wrote {path}")


def pareto_plot(points, path):
    """points: {label: [(guidance, pass rate, diversity)]} → a scatter/line PNG (PIL only):
    x = diversity, y = pass rate, one colour per label, guidance written at each point."""
    from PIL import ImageDraw
    W, H, M = 640, 420, 50
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    xs = [p[2] for v in points.values() for p in v]
    x0, x1 = 0.0, max(xs + [0.05]) * 1.1
    X = lambda x: M + (x - x0) / (x1 - x0) * (W - 2 * M)
    Y = lambda y: H - M - y * (H - 2 * M)
    d.line([(M, H - M), (W - M, H - M)], fill="black")
    d.line([(M, M), (M, H - M)], fill="black")
    for k in range(6):
        d.text((M - 30, Y(k / 5) - 5), f"{k * 20}%", fill="black")
        d.text((X(x0 + k / 5 * (x1 - x0)) - 10, H - M + 8), f"{x0 + k / 5 * (x1 - x0):.2f}", fill="black")
    d.text((W // 2 - 120, H - 20), "diversity (pixel disagreement between samples)", fill="black")
    d.text((M, 15), "prompt pass rate vs diversity per guidance weight", fill="black")
    for (label, pts), col in zip(points.items(), ["#1f77b4", "#d62728", "#2ca02c"]):
        pts = sorted(pts)
        if not pts:
            continue
        d.line([(X(p[2]), Y(p[1])) for p in pts], fill=col, width=2)
        for g, pr, dv in pts:
            d.ellipse([X(dv) - 4, Y(pr) - 4, X(dv) + 4, Y(pr) + 4], fill=col)
            d.text((X(dv) + 6, Y(pr) - 12), f"{g:g}", fill=col)
        d.text((W - M - 150, M + 15 * list(points).index(label)), label, fill=col)
    img.save(path)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spadework", default="target/release/spadework")
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--prompts", choices=["test", "dev"], default="test",
                   help="the held-out prompts reported (test) or the disjoint set for choosing "
                        "defaults (dev)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="cpu")
    p.add_argument("--guidance", type=float)
    p.add_argument("--dynamic-threshold", type=float)
    p.add_argument("--static-threshold", action="store_true", help="clip x̂₀ to [-1, 1] (Imagen's static thresholding)")
    p.add_argument("--steps", type=int)
    p.add_argument("--layout-model")
    p.add_argument("--no-sr", action="store_true", help="the base layout upsampled by nearest")
    p.add_argument("--layout-aug", type=float, help="the SR stage's noise-conditioning "
                   "augmentation level at inference (spadework's default 0.1)")
    p.add_argument("--segnet", help="tools/segnet.py checkpoint: mIoU of the renders vs layouts")
    p.add_argument("--look-classifier", help="tools/train_prior.py's look_classifier.pt: how "
                   "often the image shows the look a prompt names")
    p.add_argument("--sweep", help="guidance weights, e.g. 1,2,3,5,8: each without thresholding, "
                   "with static thresholding and with --dynamic-threshold (default 0.995) → "
                   "DIR/sweep.json (resumable) and DIR/pareto.png (Imagen's Pareto curve)")
    p.add_argument("--torch-base", metavar="WORK", help="score train_layout.py's base stage in "
                   "WORK in PyTorch instead (no SR, no images), with --encoder")
    p.add_argument("--encoder", choices=["minilm", "bow"], default="minilm",
                   help="with --torch-base: the frozen MiniLM or the bag-of-words baseline")
    p.add_argument("--looks-only", action="store_true", help="only the look agreement (needs "
                   "--look-classifier)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--figure", help="write the README figure (8 prompts × 3 seeds) here and stop")
    p.add_argument("--out", default=None, help="write grid.png and results.json here")
    p.add_argument("--threshold-figure", help="write the thresholding figure (one prompt's layouts "
                   "per guidance weight, without / static / dynamic thresholding) here and stop")
    a = p.parse_args()
    if a.looks_only and not a.look_classifier:
        p.error("--looks-only needs --look-classifier")
    if a.torch_base and (a.segnet or a.look_classifier):
        p.error("--torch-base scores layouts only (no images): --segnet and --look-classifier need "
                "the images spadework renders")
    if a.figure:
        return figure(a, a.figure)
    if a.threshold_figure:
        return threshold_figure(a, a.threshold_figure)
    if a.sweep:
        # Three curves: no thresholding, static (clip to [-1, 1]) and dynamic. Points already in
        # DIR/sweep.json are kept, so a sweep resumes or extends an earlier one.
        dyn = a.dynamic_threshold or 0.995
        out = a.out or "."
        os.makedirs(out, exist_ok=True)
        path = os.path.join(out, "sweep.json")
        all_ = json.load(open(path)) if os.path.exists(path) else []
        curves = [("none", None), ("static", "static"), (f"dynamic {dyn}", dyn)]
        for g in [float(x) for x in a.sweep.split(",")]:
            for label, th in curves:
                if any(r["guidance"] == g and r["threshold"] == th for r in all_):
                    continue
                a.guidance, a.quiet = g, True
                a.static_threshold, a.dynamic_threshold = th == "static", None if th in (None, "static") else th
                s_, _, _, _ = evaluate(a)
                all_.append({"guidance": g, "threshold": th, "pass_rate": s_["pass_rate"],
                             "diversity": s_["diversity"]})
                with open(path, "w") as f:
                    json.dump(all_, f, indent=1)
        points = {label: [(r["guidance"], r["pass_rate"], r["diversity"]) for r in all_
                          if r["threshold"] == th] for label, th in curves}
        pareto_plot(points, os.path.join(out, "pareto.png"))
        return
    if a.looks_only:
        with tempfile.TemporaryDirectory() as tmp:
            return look_agreement(a, tmp)
    summary, rows, renders, layouts_all = evaluate(a)
    if a.look_classifier:
        with tempfile.TemporaryDirectory() as tmp:
            summary.update(look_agreement(a, tmp))
    if a.segnet:
        import segnet as sn
        model, _ = sn.load(a.segnet)
        pred = sn.predict(model, np.stack(renders))
        gt = sn.to_channels(np.stack(layouts_all))
        s = sn.scores(sn.confusion(gt, pred))
        summary["segmenter"] = s
        print(f"segmenter on the renders vs the layouts: mIoU {100 * s['miou']:.1f}, "
              f"pixel accuracy {100 * s['pixel_acc']:.1f}")
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "results.json"), "w") as f:
            json.dump(summary, f, indent=1)
        tiles = [np.concatenate([ade_colours(l), np.full((128, 2, 3), 255, np.uint8), im], 1)
                 for _, l, im in rows]
        Image.fromarray(np.concatenate([np.concatenate([t, np.full((2, t.shape[1], 3), 255, np.uint8)], 0)
                                        for t in tiles], 0)).save(os.path.join(a.out, "grid.png"))


if __name__ == "__main__":
    main()
