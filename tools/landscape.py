#!/usr/bin/env python3
"""Procedural landscape world: (ADE20K segmentation map, painted render, English caption) triples.

Deterministic by seed: ``sample(seed, size)`` always returns byte-identical arrays and the same
caption (all randomness comes from ``numpy.random.default_rng([seed, stream])``; no BLAS, no
threads, only element-wise float32 numpy).  Maps use ADE20K's 1-based SceneParsing ids, which the
official SPADE ade20k checkpoint consumes as raw label values, so the same maps drive both the
small demo generator trained on this data and the official checkpoint.

How a scene is built
--------------------
* a scene type (lake, coast, mountains, river valley, forest, fields, desert, meadow) picks which
  features may appear; a look (day, golden hour, overcast, dusk) picks light, sky and haze;
* a camera over a ground plane: a pixel below the horizon ``hz`` sees ground at depth
  ``Z = (1-hz)/(v-hz)`` (1 at the bottom row) and lateral ``X = (u-.5)*2Z``; ground zones, lakes,
  fields, flower patches and forests are noise in (X, Z), so they shrink toward the horizon;
  rivers and paths are row-wise curves whose width and wander scale with ``v-hz`` and that
  converge on the horizon;
* standing things are painted back to front: mountain ridges (fractal 1-D profiles) behind the
  horizon, rounded hills, tree lines with ragged crowns, forests as rows of trees at log-spaced
  depths over their ground-plane patches, coastal cliffs / desert buttes, then individual trees
  and boulders, all sorted by depth;
* the render textures each class procedurally, shades with the light direction, reflects the
  scene in lakes and rivers, adds aerial perspective and grades the whole by look.

CLI::

    python3 tools/landscape.py --seed 7 --size 256 --out DIR      # DIR/7_label.png, 7_image.png, 7.txt
    python3 tools/landscape.py --grid 12 grid.png [--seed 0] [--size 256]
    python3 tools/landscape.py --dataset 5000 --size 128 --out data.npz [--seed 0] [--workers 2]
    python3 tools/landscape.py --stats [--n 500] [--size 128]
    python3 tools/landscape.py --time [--n 40] [--size 256]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from types import SimpleNamespace

import numpy as np
from PIL import Image

# --------------------------------------------------------------------------------------------
# ADE20K classes and palette
# --------------------------------------------------------------------------------------------
# The standard ADE20K 150-class palette, RGB, for ADE ids 1..150 (entry k-1 is ADE id k).
# Source: open-mmlab/mmsegmentation mmseg/datasets/ade.py, ADE20KDataset.METAINFO['palette']
# (0-based over the 150 classes); ids/names checked against CSAIL semantic-segmentation-pytorch
# data/object150_info.csv (objectInfo150: 3 sky, 5 tree, 10 grass, 14 earth;ground,
# 17 mountain;mount, 22 water, 27 sea, 30 field, 35 rock;stone, 47 sand, 53 path, 61 river,
# 67 flower, 69 hill).  (ADE id 92 is "dirt;track"; our dirt tracks use 53 "path".)
ADE20K_PALETTE = [
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3),
    (120, 120, 80), (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7),
    (224, 5, 255), (235, 255, 7), (150, 5, 61), (120, 120, 70), (8, 255, 51),
    (255, 6, 82), (143, 255, 140), (204, 255, 4), (255, 51, 7), (204, 70, 3),
    (0, 102, 200), (61, 230, 250), (255, 6, 51), (11, 102, 255), (255, 7, 71),
    (255, 9, 224), (9, 7, 230), (220, 220, 220), (255, 9, 92), (112, 9, 255),
    (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10),
    (7, 255, 255), (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7),
    (255, 122, 8), (0, 255, 20), (255, 8, 41), (255, 5, 153), (6, 51, 255),
    (235, 12, 255), (160, 150, 20), (0, 163, 255), (140, 140, 140), (250, 10, 15),
    (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0), (153, 255, 0),
    (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255),
    (11, 200, 200), (255, 82, 0), (0, 255, 245), (0, 61, 255), (0, 255, 112),
    (0, 255, 133), (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0),
    (0, 143, 255), (51, 255, 0), (0, 82, 255), (0, 255, 41), (0, 255, 173),
    (10, 0, 255), (173, 255, 0), (0, 255, 153), (255, 92, 0), (255, 0, 255),
    (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20), (255, 184, 184),
    (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194),
    (0, 255, 82), (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255),
    (0, 122, 255), (0, 255, 163), (255, 153, 0), (0, 255, 10), (255, 112, 0),
    (143, 255, 0), (82, 0, 255), (163, 255, 0), (255, 235, 0), (8, 184, 170),
    (133, 0, 255), (0, 255, 92), (184, 0, 255), (255, 0, 31), (0, 184, 255),
    (0, 214, 255), (255, 0, 112), (92, 255, 0), (0, 224, 255), (112, 224, 255),
    (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0), (255, 0, 163),
    (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235),
    (245, 0, 255), (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0),
    (0, 204, 255), (20, 0, 255), (255, 255, 0), (0, 153, 255), (0, 41, 255),
    (0, 255, 204), (41, 0, 255), (41, 255, 0), (173, 0, 255), (0, 245, 255),
    (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255), (184, 255, 0),
    (0, 133, 255), (255, 214, 0), (25, 194, 194), (102, 255, 0), (92, 0, 255),
]
assert len(ADE20K_PALETTE) == 150

SKY, TREE, GRASS, EARTH, MOUNTAIN, WATER, SEA = 3, 5, 10, 14, 17, 22, 27
FIELD, ROCK, SAND, PATH, RIVER, FLOWER, HILL = 30, 35, 47, 53, 61, 67, 69
_NAMES = {SKY: "sky", TREE: "tree", GRASS: "grass", EARTH: "earth", MOUNTAIN: "mountain",
          WATER: "water", SEA: "sea", FIELD: "field", ROCK: "rock", SAND: "sand", PATH: "path",
          RIVER: "river", FLOWER: "flower", HILL: "hill"}
#: (ade_id, name, rgb) in channel order (ascending ADE id).
CLASSES = [(i, _NAMES[i], tuple(ADE20K_PALETTE[i - 1])) for i in sorted(_NAMES)]
_WET = (WATER, SEA, RIVER)

ZMAX = 80.0     # ground depth clip (bottom row is depth 1)
ZSKY = 400.0    # "depth" of the sky

SCENES = {  # scene type -> (probability, horizon range, feature probabilities)
    "lake": (0.15, (0.34, 0.55), dict(mountains=.85, hills=.4, lake=1, treeline=.8, trees=.6,
                                       rocks=.5, flowers=.2, path=.15, fields=.1, earth=.2,
                                       beach=.35)),
    "coast": (0.17, (0.34, 0.56), dict(mountains=.25, hills=.45, sea=1, cliffs=.5, trees=.3,
                                        rocks=.6, flowers=.15, path=.2, treeline=.3, earth=.1)),
    "mountains": (0.14, (0.45, 0.66), dict(mountains=1, near_range=.5, hills=.25, treeline=.5,
                                            trees=.5, rocks=.85, flowers=.3, path=.35, river=.3,
                                            earth=.35, pond=.2)),
    "river_valley": (0.14, (0.30, 0.55), dict(mountains=.5, hills=.7, river=1, treeline=.6,
                                               trees=.6, fields=.45, rocks=.35, flowers=.3,
                                               path=.25, earth=.3, sandbank=.45)),
    "forest": (0.12, (0.36, 0.60), dict(mountains=.35, hills=.4, forest=1, treeline=.8, trees=1,
                                         path=.5, flowers=.3, rocks=.35, river=.15, pond=.15,
                                         earth=.25)),
    "fields": (0.12, (0.30, 0.50), dict(mountains=.25, hills=.7, fields=1, treeline=.7,
                                         trees=.5, path=.5, flowers=.25, river=.15, rocks=.15)),
    "desert": (0.08, (0.40, 0.60), dict(mountains=.7, buttes=.7, rocks=1, earth=.6, path=.3,
                                         hills=.1, trees=.1, river=.1, pond=.1)),
    "meadow": (0.08, (0.30, 0.55), dict(mountains=.4, hills=.8, flowers=1, treeline=.6, trees=.7,
                                         path=.4, rocks=.4, river=.2, pond=.2, earth=.1)),
}
LOOKS = (("day", 0.40), ("golden", 0.22), ("overcast", 0.20), ("dusk", 0.18))


# --------------------------------------------------------------------------------------------
# noise
# --------------------------------------------------------------------------------------------
def _axis(ncell, npx, off):
    p = (np.arange(npx, dtype=np.float32) + 0.5) * np.float32(ncell / npx) + np.float32(off)
    i = np.floor(p).astype(np.intp)
    f = p - i
    return i, f * f * (3 - 2 * f)


def _resize(a, h, w):
    """Bilinear resize (pixel-centre aligned, edge clamp) by two separable gathers."""
    sh, sw = a.shape
    py = np.clip((np.arange(h, dtype=np.float32) + 0.5) * np.float32(sh / h) - 0.5, 0, sh - 1)
    px = np.clip((np.arange(w, dtype=np.float32) + 0.5) * np.float32(sw / w) - 0.5, 0, sw - 1)
    iy = np.minimum(py.astype(np.intp), sh - 2) if sh > 1 else np.zeros(h, np.intp)
    ix = np.minimum(px.astype(np.intp), sw - 2) if sw > 1 else np.zeros(w, np.intp)
    fy = (py - iy)[:, None]
    fx = px - ix
    b = a[iy] * (1 - fy) + a[np.minimum(iy + 1, sh - 1)] * fy
    return b[:, ix] * (1 - fx) + b[:, np.minimum(ix + 1, sw - 1)] * fx


def fbm2(rng, h, w, cells, octaves, gain=0.5, ay=1.0, res=None):
    """Screen-space value-noise fBm, ~unit std; ``cells`` lattice cells across the width,
    ``cells*ay`` down the height (ay < 1: vertical streaks, ay > 1: horizontal streaks).
    ``res``: compute at res x res and resize (for smooth, low-frequency fields)."""
    if res is not None and res < max(h, w):
        return _resize(fbm2(rng, res, res, cells, octaves, gain, ay), h, w)
    out = np.zeros((h, w), np.float32)
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        cx = max(1, int(round(cells * 2 ** o)))
        cy = max(1, int(round(cells * ay * 2 ** o)))
        g = rng.standard_normal((cy + 2, cx + 2), dtype=np.float32)
        ox, oy = rng.random(2)
        ix, fx = _axis(cx, w, ox)
        iy, fy = _axis(cy, h, oy)
        a = g[:, ix] * (1 - fx) + g[:, ix + 1] * fx
        out += np.float32(amp) * (a[iy] * (1 - fy)[:, None] + a[iy + 1] * fy[:, None])
        norm += amp * amp
        amp *= gain
    out *= np.float32(1.0 / (0.6 * math.sqrt(norm)))
    return out


def fbm1(rng, n, cells, octaves, gain=0.5):
    out = np.zeros(n, np.float32)
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        c = max(1, int(round(cells * 2 ** o)))
        g = rng.standard_normal(c + 2, dtype=np.float32)
        i, f = _axis(c, n, rng.random())
        out += np.float32(amp) * (g[i] * (1 - f) + g[i + 1] * f)
        norm += amp * amp
        amp *= gain
    return out * np.float32(1.0 / (0.6 * math.sqrt(norm)))


class _Lattice:
    """Value noise at arbitrary coordinates (ground plane, perspective sky) from a 256² table."""

    def __init__(self, rng):
        t = rng.standard_normal((256, 256), dtype=np.float32)
        tp = np.empty((257, 257), np.float32)   # wrap-padded so corners are i, i+1, i+257, i+258
        tp[:256, :256] = t
        tp[256, :256] = t[0]
        tp[:, 256] = tp[:, 0]
        self.flat = tp.ravel()
        self.off = (rng.random((8, 2)) * 256).astype(np.float32)

    def fbm(self, x, z, octaves, fp=None, gain=0.5):
        """fBm at (x, z); ``fp`` = pixel footprint in the same units: octaves finer than the
        footprint fade out (no aliasing toward the horizon)."""
        out = np.zeros(np.broadcast(x, z).shape, np.float32)
        amp, norm = 1.0, 0.0
        t = self.flat
        for o in range(octaves):
            f = np.float32(2.0 ** o)
            xx = x * f + self.off[o, 0]
            zz = z * f + self.off[o, 1]
            xi = np.floor(xx)
            zi = np.floor(zz)
            fx = xx - xi
            fz = zz - zi
            fx = fx * fx * (3 - 2 * fx)
            fz = fz * fz * (3 - 2 * fz)
            i = (zi.astype(np.int32) & 255) * 257 + (xi.astype(np.int32) & 255)
            a = t.take(i)
            a += (t.take(i + 1) - a) * fx
            b = t.take(i + 257)
            b += (t.take(i + 258) - b) * fx
            val = a + (b - a) * fz
            if fp is not None:
                val = val * np.clip(np.float32(1.6) - fp * (f * 2), 0, 1)
            out += np.float32(amp) * val
            norm += amp * amp
            amp *= gain
        return out * np.float32(1.0 / (0.6 * math.sqrt(norm)))


def _sstep(e0, e1, x):
    t = np.clip((x - e0) / np.float32(e1 - e0), 0, 1)
    return t * t * (3 - 2 * t)


def _box1(a, r):
    """1-D box blur with edge clamp."""
    if r < 1:
        return a
    p = np.concatenate([np.full(r, a[0]), a, np.full(r, a[-1])])
    c = np.cumsum(np.concatenate([[0.0], p]))
    return ((c[2 * r + 1:] - c[:-2 * r - 1]) / (2 * r + 1)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# look
# --------------------------------------------------------------------------------------------
def _look(seed):
    rng = np.random.default_rng([seed, 3])
    names = [n for n, _ in LOOKS]
    name = names[rng.choice(len(LOOKS), p=[p for _, p in LOOKS])]
    j = lambda c, s=0.04: np.clip(np.array(c, np.float32) + rng.uniform(-s, s, 3), 0, 1).astype(np.float32)
    sun_x = float(rng.choice([-1, 1]) * rng.uniform(0.35, 1.0))
    if name == "day":
        lk = dict(sky_top=j((0.20, 0.42, 0.78)), sky_hor=j((0.70, 0.82, 0.93)),
                  sun=j((1.00, 0.97, 0.90), .02), amb=j((0.32, 0.36, 0.44), .02),
                  cloud_lit=j((0.98, 0.98, 0.98), .01), cloud_dark=j((0.68, 0.72, 0.80)),
                  cover=rng.uniform(-0.6, 0.4), sun_v=rng.uniform(-0.3, 0.1), glow=0.25,
                  zfog=rng.uniform(25, 60), fog=0.75, tint=(1.0, 1.0, 1.0), sat=1.05, gain=1.0,
                  direct=1.0)
    elif name == "golden":
        lk = dict(sky_top=j((0.28, 0.40, 0.68)), sky_hor=j((0.98, 0.76, 0.48)),
                  sun=j((1.15, 0.86, 0.58), .03), amb=j((0.30, 0.28, 0.36), .02),
                  cloud_lit=j((1.0, 0.80, 0.58)), cloud_dark=j((0.55, 0.46, 0.52)),
                  cover=rng.uniform(-0.5, 0.4), sun_v=None, glow=0.7,
                  zfog=rng.uniform(20, 45), fog=0.8, tint=(1.06, 0.98, 0.86), sat=1.1, gain=1.0,
                  direct=1.0)
    elif name == "overcast":
        lk = dict(sky_top=j((0.55, 0.58, 0.63), .03), sky_hor=j((0.80, 0.81, 0.83), .02),
                  sun=j((0.62, 0.63, 0.65), .02), amb=j((0.42, 0.44, 0.48), .02),
                  cloud_lit=j((0.86, 0.86, 0.88), .02), cloud_dark=j((0.50, 0.52, 0.56), .03),
                  cover=rng.uniform(0.6, 1.2), sun_v=rng.uniform(-0.2, 0.1), glow=0.0,
                  zfog=rng.uniform(25, 50), fog=0.7, tint=(0.98, 1.0, 1.02), sat=0.85,
                  gain=1.0, direct=0.45)
    else:  # dusk
        lk = dict(sky_top=j((0.14, 0.16, 0.34)), sky_hor=j((0.92, 0.52, 0.40)),
                  sun=j((0.85, 0.62, 0.52), .03), amb=j((0.26, 0.26, 0.36), .02),
                  cloud_lit=j((0.95, 0.50, 0.45)), cloud_dark=j((0.26, 0.20, 0.32)),
                  cover=rng.uniform(-0.4, 0.5), sun_v=None, glow=0.8,
                  zfog=rng.uniform(18, 40), fog=0.75, tint=(0.95, 0.9, 0.97), sat=1.0,
                  gain=0.86, direct=0.8)
    lk["name"] = name
    lk["sun_x"] = sun_x
    lk["sun_u"] = float(0.5 + 0.55 * sun_x)
    lk["snowline"] = float(rng.uniform(0.45, 0.8)) if rng.random() < 0.6 else 2.0
    lk["rng_hue"] = rng.uniform(-1, 1, 8).astype(np.float32)
    return SimpleNamespace(**lk)


# --------------------------------------------------------------------------------------------
# layout
# --------------------------------------------------------------------------------------------
class _Canvas:
    def __init__(self, h, w):
        self.label = np.full((h, w), SKY, np.uint8)
        self.depth = np.full((h, w), ZSKY, np.float32)
        self.shade = np.zeros((h, w), np.float32)
        self.aux = np.zeros((h, w), np.float32)

    def paint(self, m, cls, depth=None, shade=0.0, aux=0.0, sl=None):
        sl = sl if sl is not None else (slice(None), slice(None))
        self.label[sl][m] = cls
        for arr, val in ((self.depth, depth), (self.shade, shade), (self.aux, aux)):
            if val is None:
                continue
            view = arr[sl]
            if isinstance(val, np.ndarray) and val.ndim == 2:
                view[m] = np.broadcast_to(val, m.shape)[m]
            else:
                view[m] = val


def _mountain_profile(rng, w):
    u = (np.arange(w, dtype=np.float32) + 0.5) / w
    base = np.zeros(w, np.float32)
    for _ in range(int(rng.integers(1, 4))):
        c, hgt, wd = rng.uniform(-0.1, 1.1), rng.uniform(0.55, 1.0), rng.uniform(0.2, 0.7)
        base = np.maximum(base, hgt * np.clip(1 - np.abs(u - c) / wd, 0, 1) ** rng.uniform(0.8, 1.3))
    det = fbm1(rng, w, 5, 6, 0.55)
    ridged = 1 - np.abs(fbm1(rng, w, 3, 4))
    p = 0.2 + 0.65 * base + 0.1 * det + 0.12 * ridged
    p = (p - p.min()) / (p.max() - p.min() + 1e-6)
    return 0.12 + 0.88 * p


def _layout(seed, size, lk):
    rng = np.random.default_rng([seed, 1])
    H = W = size
    names = list(SCENES)
    scene = names[rng.choice(len(names), p=[SCENES[n][0] for n in names])]
    _, hzr, fprob = SCENES[scene]
    feat = {k: bool(rng.random() < p) for k, p in fprob.items()}
    hz = float(rng.uniform(*hzr))
    sun_x = lk.sun_x
    fcols = ["red", "yellow", "purple", "pink", "orange", "blue"]
    flower_cols = [str(c) for c in rng.choice(fcols, int(rng.integers(1, 3)), replace=False)]
    meta = dict(scene=scene, feat=feat, snow=False, conifer=False, cliffs=False, buttes=False,
                flower_cols=flower_cols, treeline=False, forest=False, nobjects=0,
                beach_fg=False)

    v = ((np.arange(H, dtype=np.float32) + 0.5) / H)[:, None]
    u = ((np.arange(W, dtype=np.float32) + 0.5) / W)[None, :]
    uu = u[0]
    cv = _Canvas(H, W)
    nfine = fbm2(rng, H, W, 20, 3)
    lat = _Lattice(rng)

    # ground plane coordinates (for rows above the horizon they are clamped, unused)
    dv = np.maximum(v - hz, np.float32(0.5 / H))
    Z = np.minimum((1 - hz) / dv, ZMAX).astype(np.float32)              # (H,1)
    X = ((u - 0.5) * 2 * Z).astype(np.float32)                          # (H,W)
    fp = np.maximum(Z * Z / ((1 - hz) * H), 2 * Z / W).astype(np.float32)
    r0 = int(min(H - 1, max(0, math.floor(hz * H + 0.5))))              # first ground row
    ground = np.broadcast_to(v > hz, (H, W))
    Zf = np.broadcast_to(Z, (H, W))

    def gnoise(scale, octaves, dx=0.0):
        out = np.zeros((H, W), np.float32)
        out[r0:] = lat.fbm(X[r0:] / scale + dx, Z[r0:] / scale, octaves, fp[r0:] / scale)
        return out

    def row_of(vv):
        return np.clip(((vv * H) - 0.5).astype(np.int64), 0, H - 1)

    # ---- far background: mountains -----------------------------------------------------------
    standing = []  # (key, fn)

    if feat.get("mountains"):
        amp = rng.uniform(0.12, 0.42) * min(1.0, (hz - 0.05) / 0.45)
        ranges = [(amp, rng.uniform(50, 75))]
        if feat.get("near_range") or rng.random() < 0.25:
            ranges.append((amp * rng.uniform(0.45, 0.8), rng.uniform(22, 35)))
        gully = fbm2(rng, H, W, 6, 3, ay=0.5, res=96)
        # ridged 2-D relief (spurs and couloirs), lit by its gradient
        relief = 1 - np.abs(fbm2(rng, H, W, 7, 4, ay=0.7, res=128))
        rgx = np.gradient(relief, axis=1) * (W / 40)
        rgy = np.gradient(relief, axis=0) * (H / 40)
        for k, (a, d) in enumerate(ranges):
            prof = _mountain_profile(rng, W)
            top = hz - a * prof                                          # (W,)
            base = hz + 0.004
            m = (v >= top[None, :]) & (v < base)
            smooth = _box1(prof, max(1, W // 48))
            slope = np.gradient(smooth) * W                              # d prof / du
            below = (v - top[None, :]) / max(a, 1e-3)                    # 0 at ridge
            # faces: slope sampled at a column drifting downward with a noisy gully field
            col = np.clip(((u + 0.35 * below * a * gully) * W).astype(np.int64), 0, W - 1)
            face = -np.tanh(2.5 * slope[col]) * sun_x
            sh = 0.55 * face + np.clip(-rgx * sun_x * 0.9 - rgy * 0.3, -0.8, 0.8)
            sh = sh + 0.25 * (0.3 - below)
            alt = (hz - v) / max(amp, 1e-3)                              # altitude fraction
            cv.paint(m, MOUNTAIN, depth=d, shade=sh.astype(np.float32),
                     aux=np.broadcast_to(alt, (H, W)).astype(np.float32))
        if lk.snowline < 1.5 and amp > 0.14 and scene != "desert":
            meta["snow"] = True

    # ---- flat ground layers ---------------------------------------------------------------
    base_cls = SAND if scene == "desert" else GRASS
    cv.paint(ground, base_cls, depth=Zf)
    n1 = gnoise(3.5, 4)

    if feat.get("fields"):
        K = 28
        Zk = np.exp(rng.uniform(math.log(0.7), math.log(45), K)).astype(np.float32)
        Xk = (rng.uniform(-1.3, 1.3, K) * Zk).astype(np.float32)
        if scene == "fields":
            kinds = rng.choice([FIELD, GRASS, EARTH, FLOWER], K, p=[.6, .22, .13, .05])
        else:
            kinds = rng.choice([FIELD, GRASS, EARTH], K, p=[.45, .45, .10])
        ang = rng.uniform(0, np.pi, K).astype(np.float32)
        sub = slice(r0, H)
        Xs, Zs = X[sub], np.broadcast_to(Z[sub], X[sub].shape)
        wx = Xs + Zs * (0.12 * n1[sub] + 0.05 * nfine[sub])
        wz = Zs * (1 + 0.12 * n1[sub] + 0.05 * nfine[sub])
        lz = np.log(wz)
        best = np.full(Xs.shape, np.inf, np.float32)
        arg = np.zeros(Xs.shape, np.int64)
        for k in range(K):  # cells sized ~ proportional to depth
            d2 = ((wx - Xk[k]) / (0.9 * Zk[k])) ** 2 + ((lz - math.log(Zk[k])) / 0.45) ** 2
            better = d2 < best
            best = np.where(better, d2, best)
            arg = np.where(better, k, arg)
        lab_sub = kinds[arg].astype(np.uint8)
        m = np.zeros((H, W), bool)
        m[sub] = True
        patch = np.zeros((H, W), np.uint8)
        patch[sub] = lab_sub
        auxa = np.zeros((H, W), np.float32)
        auxa[sub] = ang[arg]
        for c in (FIELD, EARTH, FLOWER, GRASS):
            mc = m & (patch == c)
            cv.paint(mc, c, depth=Zf, aux=auxa if c == FIELD else 0.0)
        if scene == "fields":
            meta["fields_main"] = True
    elif feat.get("earth"):
        q = rng.uniform(0.6, 1.1)
        cv.paint(ground & (n1 < -q), EARTH, depth=Zf)

    flower_on = feat.get("flowers") or (scene in ("meadow",) and rng.random() < 0.5)
    if flower_on:
        n2 = gnoise(rng.uniform(0.8, 1.6), 3, dx=40.0)
        tf = rng.uniform(-0.2, 0.5) if scene == "meadow" else rng.uniform(0.3, 0.9)
        mf = (cv.label == GRASS) & (n2 > tf)
        cv.paint(mf, FLOWER, depth=Zf)

    forest_g = None
    if feat.get("forest"):
        n3 = gnoise(rng.uniform(3, 6), 3, dx=90.0)
        thr = rng.uniform(-0.2, 0.5)
        zlim = rng.uniform(6, 30)
        forest_g = ground & (n3 > thr) & (Zf < zlim) & (Zf > 2.5)
        cv.paint(forest_g, TREE, depth=Zf, shade=-0.2)
        meta["forest"] = True

    # lake: a wide lake from a far shore to a curved near shore, or a pond in the ground plane
    lake_top = None
    if feat.get("lake"):
        ft = hz + rng.uniform(0.015, 0.07) * (1 - hz)
        d = rng.uniform(0.2, 0.6) * (1 - hz)
        uc, wd = rng.uniform(0.25, 0.75), rng.uniform(0.6, 1.6)
        shore = ft + d * (1 - ((uu - uc) / wd) ** 2) + 0.03 * (1 - hz) * fbm1(rng, W, 3, 4)
        shore = shore.astype(np.float32)
        lm = (v >= ft) & (v < shore[None, :] + 0.01 * (1 - hz) * nfine)
        if feat.get("beach"):
            bw = rng.uniform(0.15, 0.5)
            bm = ground & (v < shore[None, :] + bw * (shore[None, :] - hz) + 0.008 * nfine) & ~lm & (v > ft)
            cv.paint(bm, SAND if rng.random() < 0.6 else EARTH, depth=Zf)
        cv.paint(lm, WATER, depth=Zf)
        lake_top = ft
    if feat.get("pond"):
        Zc = float(np.exp(rng.uniform(math.log(2.5), math.log(8))))
        Xc = rng.uniform(-0.7, 0.7) * Zc
        Rx, Rz = rng.uniform(0.8, 2.5) * (Zc / 4) ** 0.5, rng.uniform(0.5, 1.6) * (Zc / 4) ** 0.5
        pn = gnoise(0.7, 2, dx=13.0)
        pm = ground & ((((X - Xc) / Rx) ** 2 + ((Zf - Zc) / Rz) ** 2 + 0.35 * pn) < 1)
        cv.paint(pm, WATER, depth=Zf)

    # sea with a beach: shoreline may run diagonally so land reaches the horizon on one side
    if feat.get("sea"):
        d0 = rng.uniform(0.08, 0.45) * (1 - hz)
        sl = rng.uniform(-0.7, 0.7) * (1 - hz) if rng.random() < 0.6 else 0.0
        s = hz + d0 + sl * (uu - 0.5) + 0.02 * (1 - hz) * fbm1(rng, W, 4, 4)
        s = s.astype(np.float32)
        sm = ground & (v < s[None, :])
        kb = rng.uniform(0.25, 1.6)
        beach_fg = rng.random() < 0.35
        meta["beach_fg"] = beach_fg
        bm = ground & ~sm & ((v < s[None, :] + kb * (s[None, :] - hz) + 0.01 * nfine) | beach_fg)
        cv.paint(bm, SAND, depth=Zf)
        cv.paint(sm, SEA, depth=Zf)
        meta["shore"] = s

    # river: row-wise centreline converging on the horizon, width ∝ v-hz
    river_u0 = None
    if feat.get("river"):
        t = np.clip((v[:, 0] - hz) / (1 - hz), 1e-4, 1)
        s_log = -np.log(t)
        u_end = rng.uniform(0.2, 0.8)
        u_bot = rng.uniform(0.15, 0.85)
        A = rng.uniform(0.15, 0.45)
        om, ph = rng.uniform(1.4, 3.0), rng.uniform(0, 2 * np.pi)
        wig = fbm1(rng, 64, 2, 3)
        wi = np.interp(np.clip(s_log, 0, 6), np.linspace(0, 6, 64), wig)
        uc = u_end + t * (u_bot - u_end + A * (np.sin(om * s_log + ph) + 0.3 * wi))
        w0 = rng.uniform(0.14, 0.38)
        hw = (t * w0 / 2 + 0.6 / W).astype(np.float32)
        across = (u - uc[:, None].astype(np.float32)) / hw[:, None]
        ok = ground & ~np.isin(cv.label, (SEA, WATER))
        rm = ok & (np.abs(across) < 1 + 0.12 * nfine)
        if feat.get("sandbank"):
            bm = ok & (np.abs(across) < 1.35 + 0.25 * nfine) & ~rm
            cv.paint(bm, SAND if rng.random() < 0.6 else EARTH, depth=Zf)
        cv.paint(rm, RIVER, depth=Zf, aux=np.clip(across, -1.5, 1.5).astype(np.float32))
        river_u0 = u_bot

    # dirt path: like a river but narrow, ending somewhere in the middle distance
    if feat.get("path"):
        t = np.clip((v[:, 0] - hz) / (1 - hz), 1e-4, 1)
        s_log = -np.log(t)
        t_end = rng.uniform(0.06, 0.45)
        if river_u0 is not None:
            u_bot = (river_u0 + 0.5 + rng.uniform(0.1, 0.3)) % 1.0
        else:
            u_bot = rng.uniform(0.2, 0.8)
        u_end = np.clip(u_bot + rng.uniform(-0.4, 0.4), 0.1, 0.9)
        A = rng.uniform(0.1, 0.4)
        om, ph = rng.uniform(1.0, 2.5), rng.uniform(0, 2 * np.pi)
        uc = u_end + t * (u_bot - u_end + A * np.sin(om * s_log + ph))
        w0 = rng.uniform(0.06, 0.16)
        taper = np.clip((t - t_end) / 0.08, 0, 1) ** 0.5
        hw = (t * w0 / 2 * taper + 0.45 / W * (taper > 0)).astype(np.float32)
        across = (u - uc[:, None].astype(np.float32)) / np.maximum(hw[:, None], 1e-6)
        pm = ground & (hw[:, None] > 0) & (np.abs(across) < 1 + 0.2 * nfine) & \
            ~np.isin(cv.label, _WET) & (v > hz + t_end * (1 - hz))
        cv.paint(pm, PATH, depth=Zf, aux=np.clip(across, -1.5, 1.5).astype(np.float32))

    # ---- standing things ------------------------------------------------------------------
    def add_hills(hb, amp, depth):
        prof = np.zeros(W, np.float32)
        for _ in range(int(rng.integers(2, 6))):
            c, wd, hh = rng.uniform(-0.2, 1.2), rng.uniform(0.15, 0.6), rng.uniform(0.4, 1.0)
            d = np.clip(np.abs(uu - c) / wd, 0, 1)
            prof = np.maximum(prof, hh * (0.5 + 0.5 * np.cos(np.pi * d)))
        prof = np.clip(prof + 0.05 * fbm1(rng, W, 3, 3), 0, None)
        prof = (prof / (prof.max() + 1e-6)).astype(np.float32)
        top = hb - amp * prof
        m = (v >= top[None, :]) & (v <= hb) & (prof[None, :] > 0.01)
        slope = _box1(np.gradient(prof) * W, max(1, W // 40))
        rel = np.clip((v - top[None, :]) / (hb - top[None, :] + 1e-6), 0, 1)
        # rounded: the side tilt fades toward the foot, the top catches more light
        tilt = np.tanh(2.0 * amp * slope)[None, :] * (1 - 0.6 * rel)
        sh = -tilt * sun_x * 0.9 + 0.45 * (0.35 - rel) + 0.15 * nfine
        cv.paint(m, HILL, depth=depth, shade=sh.astype(np.float32))
        return top

    def add_treeline(b, hs, conifer, cov, trunks=False):
        """A row of trees standing on the base curve b(u) (normalised rows), crown height hs;
        ``cov``: columns (bool, W) where the row has trees."""
        tw = hs * (0.45 if conifer else 0.8)
        n = int(1.3 / max(tw, 2.0 / W) * 1.4) + 2
        c = np.sort(rng.uniform(-0.1, 1.1, n)).astype(np.float32)
        hh = (hs * rng.uniform(0.6, 1.0, n)).astype(np.float32)
        ww = (tw * rng.uniform(0.6, 1.2, n) / 2).astype(np.float32)
        d = np.abs(uu[None, :] - c[:, None]) / ww[:, None]
        if conifer:
            pr = hh[:, None] * np.clip(1 - d, 0, 1) ** 0.9
        else:
            pr = hh[:, None] * np.sqrt(np.clip(1 - d * d, 0, 1))
        idx = np.argmax(pr, axis=0)
        cols = np.arange(W)
        prof = np.maximum(pr[idx, cols], hs * 0.4)
        lift = hs * 0.3 if trunks else 0.0          # trunks show below the crowns of near rows
        top = b - lift - prof * (1 + 0.06 * fbm1(rng, W, 40, 2))
        brow = row_of(b)
        cov = cov & ~np.isin(cv.label[brow, cols], _WET)
        m = (v >= top[None, :]) & (v <= (b - lift)[None, :] + 0.5 / H) & cov[None, :]
        nx = (uu - c[idx]) / ww[idx]
        rel = np.clip((v - top[None, :]) / (b - lift - top + 1e-6)[None, :], 0, 1)
        sh = 0.9 * nx[None, :] * sun_x + 0.4 * (0.3 - rel) + 0.25 * nfine
        dep = np.minimum((1 - hz) / np.maximum(b - hz, 0.5 / H), ZMAX)
        aux = np.float32(rng.random() * 0.9)
        if trunks:
            tk = (np.abs(nx) < np.maximum(0.09, 0.7 / (ww[idx] * W)))[None, :] & \
                (v > (b - lift - 0.3 * prof)[None, :]) & (v <= b[None, :]) & cov[None, :]
            aux = np.where(tk & ~m, np.float32(2.0), aux).astype(np.float32)
            m = m | tk
        cv.paint(m, TREE, depth=np.broadcast_to(dep[None, :], (H, W)).astype(np.float32),
                 shade=sh.astype(np.float32), aux=aux)

    if feat.get("hills"):
        hb = (lake_top + 0.002) if lake_top is not None and rng.random() < 0.6 else \
            hz + rng.uniform(0.0, 0.12) * (1 - hz)
        amp = rng.uniform(0.05, 0.2) * min(1.0, hz / 0.4)
        dep = min((1 - hz) / max(hb - hz, 0.5 / H), ZMAX) * 0.8
        standing.append((hb, lambda hb=hb, amp=amp, dep=dep: add_hills(hb, amp, dep)))
        if rng.random() < 0.3:  # a nearer, bigger row of hills
            hb2 = hz + rng.uniform(0.1, 0.3) * (1 - hz)
            amp2 = amp * rng.uniform(1.1, 1.8)
            dep2 = min((1 - hz) / (hb2 - hz), ZMAX)
            standing.append((hb2, lambda hb=hb2, amp=amp2, dep=dep2: add_hills(hb, amp, dep)))

    conifer = bool(rng.random() < (0.75 if scene in ("lake", "mountains", "forest") else 0.3))
    meta["conifer"] = conifer
    if feat.get("treeline"):
        if lake_top is not None:
            bl = lake_top + 0.002
        else:
            bl = hz + rng.uniform(0.0, 0.1) * (1 - hz)
        b = (bl + 0.004 * fbm1(rng, W, 3, 2)).astype(np.float32)
        hs = rng.uniform(0.015, 0.04) + rng.uniform(1.0, 2.2) * (bl - hz)
        cov = fbm1(rng, W, 2, 3) > rng.uniform(-1.2, 0.3)
        meta["treeline"] = True
        standing.append((bl + 1e-4, lambda b=b, hs=hs, cov=cov: add_treeline(b, hs, conifer, cov)))

    if feat.get("buttes"):
        meta["buttes"] = True
        for _ in range(int(rng.integers(1, 4))):
            bb = hz + rng.uniform(0.0, 0.08) * (1 - hz)
            c, wdt = rng.uniform(0.05, 0.95), rng.uniform(0.05, 0.2)
            hgt = rng.uniform(0.05, 0.18) * min(1.0, hz / 0.45)

            def butte(bb=bb, c=c, wdt=wdt, hgt=hgt):
                dd = np.abs(uu - c)
                p = np.clip((wdt - dd) / (0.015 + 0.1 * wdt), 0, 1) ** 0.6
                talus = np.clip((wdt * 1.5 - dd) / (wdt * 0.6), 0, 1) * 0.35
                er = 1 + 0.06 * fbm1(rng, W, 12, 3)
                top = bb - hgt * np.maximum(p * er, talus)
                m = (v >= top[None, :]) & (v <= bb) & (np.maximum(p, talus) > 0.01)[None, :]
                sl = np.gradient(np.maximum(p, talus)) * W
                sh = -np.tanh(0.2 * sl)[None, :] * sun_x + 0.2 * nfine + 0.2
                dep = min((1 - hz) / max(bb - hz, 0.5 / H), ZMAX)
                cv.paint(m, ROCK, depth=dep, shade=sh.astype(np.float32), aux=1.0)
            standing.append((bb, butte))

    if feat.get("cliffs"):
        meta["cliffs"] = True
        left = rng.random() < 0.5
        cb = hz + rng.uniform(0.03, 0.25) * (1 - hz)
        u0, ramp = rng.uniform(0.15, 0.45), rng.uniform(0.05, 0.2)
        hgt = rng.uniform(0.08, 0.3) * min(1.0, hz / 0.45)
        grass_cap = rng.random() < 0.6

        def cliff(cb=cb, u0=u0, ramp=ramp, hgt=hgt, left=left, grass_cap=grass_cap):
            x = uu if left else 1 - uu
            p = np.clip((u0 - x) / ramp, 0, 1) ** 0.6
            er = 1 + 0.05 * fbm1(rng, W, 10, 3)
            top = cb - hgt * p * er
            # the cliff foot slopes down toward the viewer near the frame edge
            foot = cb + (1 - hz) * 0.5 * np.clip((u0 - x) / (u0 + 1e-3), 0, 1) ** 2
            m = (v >= top[None, :]) & (v <= foot[None, :]) & (p > 0.01)[None, :]
            sh = 0.25 * nfine + (0.5 if left else -0.5) * sun_x * -1 + 0.1
            cv.paint(m, ROCK, depth=min((1 - hz) / (cb - hz), ZMAX), shade=sh.astype(np.float32), aux=0.0)
            if grass_cap:
                cap = m & (v < top[None, :] + 0.012 + 0.02 * p[None, :] + 0.006 * nfine)
                cv.paint(cap, GRASS, depth=min((1 - hz) / (cb - hz), ZMAX))
        standing.append((cb, cliff))

    # forests: rows of trees at log-spaced depths, each covering the columns where the
    # ground-plane forest noise says "forest" at that depth
    if forest_g is not None:
        kt = rng.uniform(1.3, 2.2)
        ratio = rng.uniform(1.3, 1.5)
        zk = zlim
        while zk > 2.5:
            bk = hz + (1 - hz) / zk
            rk = row_of(np.float32(bk))
            cov = forest_g[rk] | forest_g[min(H - 1, rk + 1)]
            if cov.any():
                b = np.full(W, bk, np.float32) + 0.003 * fbm1(rng, W, 4, 2)
                hs = min(0.45, kt * (bk - hz))
                standing.append((bk, lambda b=b, hs=hs, cov=cov: add_treeline(b, hs, conifer, cov, trunks=hs * H > 30)))
            zk /= ratio

    # individual trees and rocks, in clusters on the ground plane
    def stamp_tree(uc, vb, hgt, con, hue):
        hp = hgt * H
        wp = hp * (rng.uniform(0.24, 0.32) if con else rng.uniform(0.45, 0.7))
        cx = uc * W
        yb = vb * H
        x0, x1 = int(max(0, math.floor(cx - wp * 0.7))), int(min(W, math.ceil(cx + wp * 0.7) + 1))
        y0, y1 = int(max(0, math.floor(yb - hp))), int(min(H, math.ceil(yb) + 1))
        if x1 <= x0 or y1 <= y0:
            return
        sl = (slice(y0, y1), slice(x0, x1))
        yy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5
        xx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
        nz = nfine[sl]
        dx = xx - cx
        trunk_w = max(0.55, wp * 0.035)
        if con:
            ytop = yb - hp
            cb = yb - hp * 0.1
            tt = np.clip((yy - ytop) / (cb - ytop), 0, 1)
            tiers = rng.uniform(4, 7)
            saw = (tt * tiers) % 1.0
            hwid = wp / 2 * tt ** 0.9 * (0.78 + 0.3 * saw) + 0.5
            crown = (yy >= ytop) & (yy <= cb) & (np.abs(dx) < hwid * (1 + 0.15 * nz))
            nx = dx / np.maximum(hwid, 1)
            sh = nx * sun_x * 0.9 + 0.35 * (0.3 - tt) + 0.45 * (saw - 0.5)
        else:
            cyc = yb - hp * 0.62
            rx, ry = wp / 2, hp * 0.38
            crown = np.zeros(nz.shape, bool)
            best = np.full(nz.shape, 9.0, np.float32)
            for _ in range(5):
                ox, oy = rng.uniform(-0.5, 0.5) * rx, rng.uniform(-0.45, 0.35) * ry
                r = rng.uniform(0.45, 0.7)
                dd = np.sqrt(((dx - ox) / (rx * r)) ** 2 + ((yy - cyc - oy) / (ry * r)) ** 2)
                best = np.minimum(best, dd)
            crown = best + 0.13 * nz < 1
            nx = dx / rx
            ny = (yy - cyc) / ry
            sh = 0.8 * nx * sun_x - 0.6 * ny + 0.5 * (0.6 - best)
        trunk = (np.abs(dx) < trunk_w * (1.3 - 0.5 * (yb - yy) / hp)) & (yy <= yb) & \
            (yy > yb - hp * (0.45 if not con else 0.15))
        m = crown | trunk
        dep = min((1 - hz) / max(vb - hz, 0.5 / H), ZMAX)
        aux = np.where(trunk & ~crown, np.float32(2.0), np.float32(hue))
        cv.paint(m, TREE, depth=dep, shade=sh.astype(np.float32), aux=aux.astype(np.float32), sl=sl)

    def stamp_rock(uc, vb, r, aux):
        rp = r * H
        rx, ry = rp * rng.uniform(0.9, 1.6), rp * rng.uniform(0.55, 0.95)
        cx, yb = uc * W, vb * H
        cy = yb - ry * rng.uniform(0.55, 0.85)
        x0, x1 = int(max(0, math.floor(cx - rx * 1.4))), int(min(W, math.ceil(cx + rx * 1.4) + 1))
        y0, y1 = int(max(0, math.floor(cy - ry * 1.4))), int(min(H, math.ceil(yb) + 1))
        if x1 <= x0 or y1 <= y0:
            return
        sl = (slice(y0, y1), slice(x0, x1))
        yy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5
        xx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
        ex, ey = (xx - cx) / rx, (yy - cy) / ry
        rho = np.sqrt(ex * ex + ey * ey)
        th = np.arctan2(ey, ex)
        R = np.ones_like(th)
        for k in range(2, 6):
            R += rng.uniform(-0.22, 0.22) / k * np.cos(k * th + rng.uniform(0, 6.3))
        m = (rho < R + 0.06 * nfine[sl]) & (yy <= yb)
        facet = np.round(th / rng.uniform(0.6, 1.1)) * 0.7
        sh = 0.8 * ex * sun_x - 0.7 * ey + 0.25 * np.sin(facet * 3.1)
        dep = min((1 - hz) / max(vb - hz, 0.5 / H), ZMAX)
        cv.paint(m, ROCK, depth=dep, shade=sh.astype(np.float32), aux=aux, sl=sl)

    def clusters(n_clusters, per, spread, zr):
        pts = []
        for _ in range(n_clusters):
            Zc = float(np.exp(rng.uniform(math.log(zr[0]), math.log(zr[1]))))
            Xc = rng.uniform(-0.95, 0.95) * Zc
            k = int(rng.integers(per[0], per[1] + 1))
            for _ in range(k):
                Zi = Zc + rng.normal(0, spread * (Zc ** 0.5))
                if Zi < 0.8:
                    continue
                Xi = Xc + rng.normal(0, spread * 1.5 * (Zc ** 0.5))
                pts.append((0.5 + Xi / (2 * Zi), hz + (1 - hz) / Zi))
        return pts

    objs = []
    if feat.get("trees") or feat.get("forest"):
        n_cl = int(rng.integers(1, 4)) + (2 if scene == "forest" else 0)
        pts = clusters(n_cl, (1, 6), 0.5, (1.3, 14))
        for (pu, pv) in pts:
            if not (-0.05 < pu < 1.05) or pv > 1.2:
                continue
            brow = min(H - 1, int(pv * H))
            bcol = int(np.clip(pu * W, 0, W - 1))
            if cv.label[brow, bcol] in (WATER, SEA, RIVER, PATH, ROCK):
                continue
            hgt = min(0.85, rng.uniform(2.2, 4.5) * (pv - hz))
            con = conifer if rng.random() < 0.85 else not conifer
            hue = float(rng.random() * 0.9)
            objs.append((pv, lambda pu=pu, pv=pv, hgt=hgt, con=con, hue=hue: stamp_tree(pu, pv, hgt, con, hue)))
    if feat.get("rocks"):
        n_cl = int(rng.integers(1, 4))
        zr = (1.4, 7) if scene != "desert" else (1.4, 12)
        pts = clusters(n_cl, (1, 5), 0.35, zr)
        shore = meta.get("shore")
        if shore is not None and rng.random() < 0.7:  # rocks along the waterline
            for _ in range(int(rng.integers(2, 6))):
                pu = rng.uniform(0.02, 0.98)
                pv = float(shore[int(pu * W)]) + rng.uniform(-0.01, 0.03)
                if pv > hz + 0.01:
                    pts.append((pu, pv))
        big = scene == "desert" or scene == "mountains"
        for (pu, pv) in pts:
            if not (-0.05 < pu < 1.05) or pv > 1.15 or pv <= hz:
                continue
            r = min(0.12, rng.uniform(0.05, 0.32 if big else 0.22) * (pv - hz))
            if r * H < 1.0:
                continue
            objs.append((pv, lambda pu=pu, pv=pv, r=r: stamp_rock(pu, pv, r, 0.5)))

    allobj = standing + objs
    allobj.sort(key=lambda t: t[0])
    for _, fn in allobj:
        fn()
    meta["nobjects"] = len(objs)

    return SimpleNamespace(label=cv.label, depth=cv.depth, shade=cv.shade, aux=cv.aux, hz=hz,
                           X=X, Z=Zf, fp=np.broadcast_to(fp, (H, W)), meta=meta, H=H, W=W, r0=r0, lat=lat)


# --------------------------------------------------------------------------------------------
# render
# --------------------------------------------------------------------------------------------
_FLOWER_RGB = {"red": (0.86, 0.12, 0.10), "yellow": (0.98, 0.86, 0.18), "white": (0.96, 0.95, 0.92),
               "purple": (0.56, 0.32, 0.80), "pink": (0.96, 0.55, 0.72), "orange": (0.98, 0.55, 0.12),
               "blue": (0.35, 0.50, 0.95)}


def _render(L, lk, seed):
    rng = np.random.default_rng([seed, 2])
    H, W = L.H, L.W
    lab = L.label
    hz = L.hz
    img = np.zeros((H, W, 3), np.float32)
    v = ((np.arange(H, dtype=np.float32) + 0.5) / H)[:, None]
    u = ((np.arange(W, dtype=np.float32) + 0.5) / W)[None, :]
    vv = np.broadcast_to(v, (H, W))
    uu = np.broadcast_to(u, (H, W))
    hue = lk.rng_hue

    f_lo = fbm2(rng, H, W, 3, 4, res=64)
    f_mid = fbm2(rng, H, W, 12, 3, res=128)
    f_hi = fbm2(rng, H, W, 48, 2)
    f_vert = fbm2(rng, H, W, 110, 2, ay=0.35)
    f_horz = fbm2(rng, H, W, 5, 3, ay=10.0)
    white = rng.random((H, W), dtype=np.float32)
    tground = np.clip((vv - hz) / (1 - hz), 0, 1)  # 0 at horizon, 1 at the bottom

    amb = lk.amb
    sun = lk.sun * np.float32(lk.direct)

    def light(alb, sh):
        k = np.clip(0.62 + 0.5 * sh, 0.08, 1.35)[:, None]
        return alb * (amb[None, :] + sun[None, :] * k)

    def C(*c):
        return np.array(c, np.float32)

    def var(base, m, amt, f):
        return base[None, :] * (1 + amt * f[m])[:, None]

    # ---- sky --------------------------------------------------------------------------------
    sun_v = lk.sun_v if lk.sun_v is not None else hz - 0.03 - 0.08 * rng.random()
    skym = lab == SKY
    if skym.any():
        vs, us = vv[skym], uu[skym]
        t = np.clip(vs / max(hz, 0.05), 0, 1) ** 0.9
        tt = t[:, None]
        sky = lk.sky_top[None, :] * (1 - tt) + lk.sky_hor[None, :] * tt
        du, dv_ = (us - lk.sun_u), (vs - sun_v)
        d2 = du * du + dv_ * dv_
        glow = lk.glow * np.exp(-d2 / 0.06) + 0.5 * lk.glow * np.exp(-d2 / 0.004)
        sky += glow[:, None] * (lk.sun * 0.6)[None, :]
        # perspective clouds: noise on a cloud layer above the camera; shaded by the density
        # a little toward the sun (denser toward the sun = in shadow)
        zc = 0.35 / (np.maximum(hz - vs, 0.02) + 0.06)
        cx, cz = (us - 0.5) * zc * 1.2 + 31.0, zc * 2.5 + 11.0
        cn = L.lat.fbm(cx, cz, 4)
        cn2 = L.lat.fbm(cx - 0.08 * lk.sun_x, cz + 0.12, 2)
        cover = lk.cover
        cloud = _sstep(0.55 - 0.5 * cover, 1.3 - 0.5 * cover, cn)
        cl_sh = np.clip((cn2 - cn) * 3.0 + 0.35 * (cn - 1), -1, 1)[:, None]
        ccol = lk.cloud_lit[None, :] * (0.5 - 0.5 * cl_sh) + lk.cloud_dark[None, :] * (0.5 + 0.5 * cl_sh)
        ccol = ccol * (1 - 0.35 * tt) + lk.sky_hor[None, :] * (0.35 * tt)
        al = (cloud * (1 - 0.5 * t ** 3))[:, None]
        sky = sky * (1 - al) + ccol * al
        if lk.name in ("golden", "dusk") and sun_v < hz:
            disc = np.exp(-d2 / 0.0009)
            sky += (disc * (1 - cloud * 0.8))[:, None] * (C(1.0, 0.9, 0.7) * 0.8)[None, :]
        img[skym] = sky
    sky_hor = lk.sky_hor

    # ---- mountains ----------------------------------------------------------------------------
    m = lab == MOUNTAIN
    if m.any():
        tone = rng.uniform(-1, 1)
        alb = C(0.40, 0.42, 0.48) + C(0.06, 0.02, -0.04) * tone
        tex = 0.55 * f_horz[m] + 0.35 * f_mid[m] + 0.25 * f_hi[m]
        sh = L.shade[m] + 0.25 * tex
        col = light(alb[None, :] * (1 + 0.16 * tex)[:, None], sh)
        alt = L.aux[m]
        snowy = lk.snowline < 1.5 and L.meta["snow"]
        if snowy:
            s = _sstep(-0.05, 0.05, alt - lk.snowline - 0.12 * f_mid[m] - 0.1 * f_hi[m] + 0.08 * L.shade[m])
            snow = light(C(0.93, 0.95, 1.0)[None, :].repeat(len(s), 0), L.shade[m] * 1.2)
            col = col * (1 - s[:, None]) + snow * s[:, None]
        # foot of the range: darker, vegetated tint
        foot = np.clip(1 - alt * 4, 0, 1)[:, None]
        col = col * (1 - 0.25 * foot) + col * C(0.8, 1.0, 0.85)[None, :] * 0.25 * foot
        img[m] = col

    # ---- hills --------------------------------------------------------------------------------
    m = lab == HILL
    if m.any():
        alb = C(0.34, 0.50, 0.22) + C(0.06, 0.02, 0.0) * hue[0]
        tex = 0.5 * f_mid[m] + 0.3 * f_lo[m]
        col = light(alb[None, :] * (1 + 0.12 * tex)[:, None], L.shade[m] + 0.15 * f_lo[m])
        img[m] = col

    # ---- grass & flowers ----------------------------------------------------------------------
    grass_alb = C(0.30, 0.50, 0.16) + C(0.08, 0.05, 0.0) * hue[1]
    for cls in (GRASS, FLOWER):
        m = lab == cls
        if not m.any():
            continue
        tg = tground[m]
        blades = f_vert[m] * (0.16 * tg + 0.04) + 0.12 * f_mid[m] + 0.14 * f_hi[m] * tg
        gp = L.lat.fbm(L.X[m] * 1.5 + 70.0, L.Z[m] * 1.5, 2, L.fp[m] * 1.5)  # clumps in perspective
        patch = 0.1 * f_lo[m] + 0.12 * gp
        alb = grass_alb[None, :] * (1 + 0.35 * blades + patch)[:, None]
        alb = alb + C(0.07, 0.03, -0.02)[None, :] * f_lo[m][:, None]
        col = light(alb, L.shade[m] + 0.25 * blades)
        if cls == FLOWER:
            names = L.meta["flower_cols"] or ["yellow"]
            pal = np.array([_FLOWER_RGB[n] for n in names], np.float32)
            pick = (np.clip(f_mid[m] * 0.5 + 0.5, 0, 0.999) * len(pal)).astype(np.int64)
            fc = pal[pick]
            # far: blossoms are sub-pixel -> a tinted carpet; near: distinct blossom dots
            dots = (white[m] > 0.6) | (f_hi[m] > 0.35 - 0.2 * tg)
            fcol = light(fc * (0.9 + 0.2 * white[m])[:, None], np.full(len(fc), 0.4, np.float32))
            k = (0.45 * (1 - tg) + dots * (0.35 + 0.5 * tg))[:, None]
            col = col * (1 - k) + fcol * k
        img[m] = col

    # ---- field --------------------------------------------------------------------------------
    m = lab == FIELD
    if m.any():
        kind = rng.random()
        if kind < 0.6:
            alb = C(0.86, 0.70, 0.34)      # wheat
        elif kind < 0.8:
            alb = C(0.92, 0.82, 0.18)      # rapeseed
        else:
            alb = C(0.76, 0.66, 0.30)      # ripe barley/hay
        ang = L.aux[m]
        Xm, Zm, fpm = L.X[m], L.Z[m], L.fp[m]
        freq = np.float32(rng.uniform(3.0, 6.0))
        ph = (Xm * np.cos(ang) + Zm * np.sin(ang)) * freq
        att = np.clip(1.2 - fpm * freq * 2.5, 0, 1)
        stripe = np.sin(ph * 2 * np.pi) * att
        tex = 0.22 * stripe + 0.12 * f_mid[m] + 0.08 * f_hi[m] + 0.06 * (white[m] - 0.5)
        col = light(alb[None, :] * (1 + tex)[:, None], 0.3 * stripe + 0.1 * f_lo[m])
        img[m] = col

    # ---- earth, path, sand ----------------------------------------------------------------------
    m = lab == EARTH
    if m.any():
        alb = C(0.42, 0.29, 0.19) + C(0.05, 0.03, 0.02) * hue[2]
        tex = 0.1 * f_hi[m] + 0.07 * f_mid[m] + 0.2 * (white[m] - 0.5)
        clods = (f_hi[m] > 1.1) * -0.08
        img[m] = light(alb[None, :] * (1 + tex + clods)[:, None], 0.1 * f_lo[m])
    m = lab == PATH
    if m.any():
        alb = C(0.62, 0.53, 0.42) + C(0.04, 0.03, 0.03) * hue[3]
        ac = np.abs(L.aux[m])
        ruts = -0.22 * np.exp(-((ac - 0.5) / 0.14) ** 2) * tground[m]
        edge = -0.25 * _sstep(0.75, 1.2, ac)
        tex = 0.12 * f_hi[m] + 0.12 * (white[m] - 0.5) + 0.1 * f_mid[m]
        img[m] = light(alb[None, :] * (1 + tex + ruts + edge)[:, None], 0.1 * f_mid[m])
    m = lab == SAND
    if m.any():
        desert = L.meta["scene"] == "desert"
        alb = C(0.93, 0.85, 0.64) if not desert else C(0.93, 0.78, 0.55)
        Zm, fpm = L.Z[m], L.fp[m]
        rip = np.sin((Zm * 9 + 0.6 * f_mid[m]) * 2 * np.pi) * np.clip(1.0 - fpm * 25, 0, 1) * (0.3 if desert else 0.1)
        tex = 0.05 * rip + 0.05 * f_mid[m] + 0.12 * (white[m] - 0.5) + 0.03 * f_hi[m]
        dune = 0.25 * f_lo[m]
        img[m] = light(alb[None, :] * (1 + tex)[:, None], dune + 0.2 * rip)

    # ---- rock ---------------------------------------------------------------------------------
    m = lab == ROCK
    if m.any():
        desert = L.meta["scene"] == "desert"
        alb = C(0.50, 0.48, 0.46) if not desert else C(0.66, 0.42, 0.30)
        alb = alb + C(0.04, 0.03, 0.02) * hue[4]
        strata = f_horz[m]
        cracks = -0.35 * np.exp(-(f_mid[m] / 0.08) ** 2)
        tex = 0.18 * strata + 0.12 * f_hi[m] + cracks + 0.08 * (white[m] - 0.5)
        sh = L.shade[m] * 1.3 + 0.3 * f_mid[m]
        img[m] = light(alb[None, :] * (1 + tex)[:, None], sh)

    # ---- trees --------------------------------------------------------------------------------
    m = lab == TREE
    if m.any():
        aux = L.aux[m]
        con = L.meta["conifer"]
        base = C(0.10, 0.25, 0.11) if con else C(0.16, 0.32, 0.10)
        alb = base[None, :] * (1 + 0.25 * (aux[:, None] - 0.45) * C(1.0, 0.6, 0.2)[None, :])
        clump = f_hi[m] * 0.6 + f_mid[m] * 0.4
        leaf = np.where(clump > 0.3, 0.25, np.where(clump < -0.4, -0.25, 0.0))
        sh = L.shade[m] + 0.35 * clump
        col = light(alb * (1 + leaf + 0.1 * (white[m] - 0.5))[:, None], sh)
        trunk = aux > 1.5
        if trunk.any():
            tb = C(0.34, 0.26, 0.19)[None, :] * (1 + 0.2 * f_hi[m][trunk])[:, None]
            col[trunk] = light(tb, L.shade[m][trunk])
        img[m] = col

    # ---- aerial perspective on land ------------------------------------------------------------
    land = ~skym & ~np.isin(lab, _WET)
    haze = (0.75 * sky_hor + 0.25 * lk.sky_top).astype(np.float32)
    fog = (lk.fog * (1 - np.exp(-L.depth / lk.zfog))).astype(np.float32)
    fl = fog[land][:, None]
    img[land] = img[land] * (1 - fl) + haze[None, :] * fl

    # ---- water: reflections ---------------------------------------------------------------------
    wet = np.isin(lab, _WET)
    if wet.any():
        rows = np.arange(H)[:, None]
        top = np.maximum.accumulate(np.where(wet, -1, rows), axis=0)[wet] + 1  # first row of the run
        ys, xs = np.nonzero(wet)
        tg = tground[wet]
        fh, fz, fm, fv = f_hi[wet], f_horz[wet], f_mid[wet], f_vert[wet]
        rip = (fz * 2.0 + fh * 0.8) * (0.3 + 2.5 * tg)
        sy = np.clip(2 * top - ys - 1 + np.round(rip * 0.6).astype(np.intp), 0, H - 1)
        sx = np.clip(xs + np.round(rip * (0.5 + 3 * tg)).astype(np.intp), 0, W - 1)
        refl = img[sy, sx]
        refl[np.isin(lab[sy, sx], _WET)] = lk.sky_hor
        fres = 0.35 + 0.55 * (1 - tg) ** 2
        lw = lab[wet]
        out = np.zeros((len(lw), 3), np.float32)
        zero = lambda k: np.zeros(k, np.float32)

        m = lw == WATER
        if m.any():
            k = int(m.sum())
            deep = C(0.10, 0.22, 0.26) + C(0.02, 0.03, 0.02) * hue[5]
            f = fres[m][:, None]
            streak = (fz[m] > 1.0) * 0.12
            col = refl[m] * f * 0.92 + light(np.tile(deep, (k, 1)), zero(k)) * (1 - f)
            out[m] = col * (1 + streak + 0.05 * fh[m] * tg[m])[:, None]
        m = lw == RIVER
        if m.any():
            k = int(m.sum())
            deep = C(0.16, 0.32, 0.30) + C(0.03, 0.04, 0.0) * hue[6]
            ac = np.abs(L.aux[wet][m])
            f = (fres[m] * 0.6)[:, None]
            flow = fv[m] * 0.5 + fh[m] * 0.5
            sparkle = (flow > 1.1) * 0.3
            col = refl[m] * f + light(np.tile(deep, (k, 1)), 0.2 * flow) * (1 - f)
            out[m] = col * (1 + 0.1 * flow + sparkle - 0.25 * _sstep(0.6, 1.1, ac))[:, None]
        m = lw == SEA
        if m.any():
            k = int(m.sum())
            ms = lab == SEA
            tgs = tg[m]
            far = (1 - tgs)[:, None]
            deep = C(0.04, 0.18, 0.38) + C(0.0, 0.04, 0.04) * hue[7]
            shallow = C(0.10, 0.40, 0.50)
            # waves: anisotropic ground-plane noise (long crests across the view)
            wv = L.lat.fbm(L.X[ms] * 0.6 + 200.0, L.Z[ms] * 5.0, 3, L.fp[ms] * 5.0)
            crest = _sstep(1.0, 1.6, wv) * _sstep(0.2, 0.6, tgs)
            # distance to the shore (rows to the first non-sea pixel below)
            nb = np.minimum.accumulate(np.where(ms, H + 10, rows)[::-1], axis=0)[::-1][ms]
            dshore = (nb - ys[m]) / H
            near_shore = np.exp(-dshore / (0.015 + 0.05 * tgs)) * (nb < H)
            alb = deep[None, :] * (0.6 + 0.4 * far) + shallow[None, :] * (near_shore * 0.6)[:, None]
            col = light(alb, 0.3 * wv) * (1 - 0.45 * far) + \
                lk.sky_hor[None, :] * (0.45 * far ** 2) + refl[m] * (0.15 * far)
            foam = np.clip(crest * 0.5 + _sstep(0.45, 0.9, near_shore + 0.2 * fh[m]), 0, 1)[:, None]
            fcol = light(np.tile(C(0.92, 0.94, 0.96), (k, 1)), np.full(k, 0.3, np.float32))
            col = col * (1 - foam) + fcol * foam
            if lk.name in ("golden", "dusk", "day"):
                gl = np.exp(-((xs[m] / W - lk.sun_u) / (0.05 + 0.15 * tgs)) ** 2)
                glint = gl * (wv > 0.4) * (0.8 if lk.name != "day" else 0.3)
                col += glint[:, None] * (lk.sun * 0.6)[None, :]
            out[m] = col
        fw = fog[wet][:, None] * 0.85
        img[wet] = out * (1 - fw) + haze[None, :] * fw

    # ---- grade --------------------------------------------------------------------------------
    sat = np.float32(lk.sat)
    lum = (img[..., 0] + img[..., 1] + img[..., 2]) * np.float32((1 - sat) / 3)
    img *= sat
    img += lum[..., None]
    r2 = (uu - 0.5) ** 2 + (vv - 0.5) ** 2
    img *= (1 - 0.22 * r2)[..., None] * (np.float32(lk.gain * 255) * np.array(lk.tint, np.float32))[None, None, :]
    img += (white[..., None] - 0.5) * np.float32(0.012 * 255) + np.float32(0.5)
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)


# --------------------------------------------------------------------------------------------
# caption
# --------------------------------------------------------------------------------------------
def _caption(L, lk, seed):
    rng = np.random.default_rng([seed, 4])
    lab = L.label
    n = lab.size
    cnt = np.bincount(lab.ravel(), minlength=256)
    share = {c: cnt[c] / n for c in _NAMES}
    meta = L.meta
    has = lambda c, t=0.004: share[c] > t
    pick = lambda *xs: xs[int(rng.integers(len(xs)))]

    # subject: the most salient large element (weights favour what a viewer names first)
    cand = [
        (MOUNTAIN, 0.03, 2.5), (ROCK, 0.01, 4.0 if meta["buttes"] else 0.0), (HILL, 0.03, 1.6),
        (TREE, 0.25, 1.0), (FIELD, 0.12, 1.4), (SEA, 0.05, 1.2), (FLOWER, 0.08, 1.5),
        (SAND, 0.2, 0.8 if meta["scene"] == "desert" else 0.0),
    ]
    score = [(share[c] * w, c) for c, t, w in cand if share[c] > t and w > 0]
    top = max(score)[1] if score else None
    if top == MOUNTAIN:
        if meta["snow"]:
            subject = pick("snow-capped mountains", "a snowy mountain range", "snowy peaks")
        elif meta["scene"] == "desert":
            subject = pick("bare mountains", "a barren mountain range")
        else:
            subject = pick("a rocky mountain range", "jagged grey mountains", "distant mountains",
                           "a rocky mountain")
    elif top == ROCK:
        subject = pick("red rock buttes", "sandstone mesas")
    elif top == HILL:
        subject = pick("rolling green hills", "gentle green hills", "grassy hills")
    elif top == TREE:
        subject = pick("a dense forest", "a thick pine forest" if meta["conifer"] else "a leafy forest")
    elif top == FIELD:
        subject = pick("golden fields", "a patchwork of fields", "fields of ripe wheat")
    elif top == SEA:
        subject = pick("the open sea", "a wide sea")
    elif top == FLOWER:
        subject = pick("a flowering meadow", "a meadow full of wildflowers")
    elif top == SAND:
        subject = pick("a sandy desert", "desert sand")
    else:
        subject = pick("a green landscape", "an open grassland", "a quiet countryside")

    water = None
    used = set()
    if has(SEA, 0.02) and "sea" in subject:
        water = pick("with a sandy beach", "and a sandy shore") if has(SAND, 0.02) else None
        used |= {SEA, SAND}
    elif has(SEA, 0.02):
        water = pick("above the sea", "by the sea", "over a sandy beach and the sea") if has(SAND, 0.02) \
            else pick("above the sea", "by the sea")
        used |= {SEA}
        if "beach" in water:
            used.add(SAND)
    elif has(WATER, 0.02):
        water = pick("above a calm lake", "reflected in a still lake", "beside a calm lake")
        used.add(WATER)
    elif has(RIVER, 0.01):
        water = pick("with a river winding through the valley", "along a winding river",
                     "above a meandering river")
        used.add(RIVER)

    when = {
        "day": ("on a sunny day", "under a blue sky", "in bright daylight"),
        "golden": ("at golden hour", "in warm evening light", "at sunset"),
        "overcast": ("under an overcast sky", "on a grey cloudy day", "under heavy clouds"),
        "dusk": ("at dusk", "in the purple twilight", "after sunset"),
    }[lk.name]
    if lk.name == "day" and lk.cover > 0.1:
        when = ("under a blue sky with white clouds", "on a bright day with scattered clouds")
    when = pick(*when)

    det = []
    if has(TREE, 0.01) and "forest" not in subject:
        kind = "pine trees" if meta["conifer"] else "trees"
        if has(WATER, 0.02) and meta["treeline"]:
            det.append(f"{kind} on the shore")
        elif has(TREE, 0.2):
            det.append(pick(f"a dense forest of {kind}", f"thick woods of {kind}"))
        elif meta["treeline"] and share[TREE] < 0.06:
            det.append(pick(f"a line of {kind} in the distance", f"{kind} along the horizon"))
        else:
            det.append(pick(f"scattered {kind}", f"a few {kind}", f"clumps of {kind}"))
    if has(RIVER, 0.005) and RIVER not in used:
        det.append(pick("a winding river", "a small river"))
    if has(WATER, 0.005) and WATER not in used:
        det.append(pick("a small pond", "a little lake"))
    if has(FIELD, 0.01) and "field" not in subject:
        det.append(pick("yellow wheat fields", "golden fields", "striped crop fields"))
    if has(FLOWER, 0.005) and "flower" not in subject:
        cols = meta["flower_cols"]
        c = " and ".join(cols) if cols else "colourful"
        det.append(pick(f"{c} wildflowers", f"patches of {c} flowers"))
    if has(ROCK, 0.004) and "butte" not in subject and "mesa" not in subject:
        if meta["cliffs"]:
            det.append(pick("rocky cliffs", "steep sea cliffs"))
        elif meta["buttes"]:
            det.append("rock formations")
        else:
            det.append(pick("boulders in the foreground", "scattered rocks", "large grey boulders"))
    if has(PATH, 0.004):
        det.append(pick("a dirt path", "a winding dirt track", "a footpath"))
    if has(SAND, 0.01) and SAND not in used and "desert" not in subject:
        det.append(pick("a sandy shore", "sand banks") if (has(SEA) or has(WATER) or has(RIVER)) else
                   pick("sandy ground", "dry sand"))
    if has(EARTH, 0.01):
        det.append(pick("patches of bare brown earth", "ploughed earth", "bare soil"))
    if has(HILL, 0.01) and "hill" not in subject:
        det.append(pick("green hills behind", "rolling hills"))
    if has(MOUNTAIN, 0.005) and "mountain" not in subject and "peak" not in subject:
        det.append(pick("mountains in the distance", "a distant mountain ridge"))
    if has(GRASS, 0.05) and len(det) < 3:
        det.append(pick("green grass", "a grassy meadow", "lush grass"))
    det = det[:4]

    s = subject
    if water:
        s += " " + water
    s += " " + when
    if det:
        s += ", " + (", ".join(det[:-1]) + " and " + det[-1] if len(det) > 1 else det[0])
    return s


# --------------------------------------------------------------------------------------------
# API
# --------------------------------------------------------------------------------------------
def sample(seed: int, size: int = 256):
    """-> (label HxW uint8 of ADE ids, image HxWx3 uint8, caption)"""
    lk = _look(seed)
    L = _layout(seed, size, lk)
    img = _render(L, lk, seed)
    cap = _caption(L, lk, seed)
    return L.label, img, cap


def _pil_palette():
    pal = [0, 0, 0]
    for c in ADE20K_PALETTE:
        pal += list(c)
    pal += [0, 0, 0] * (256 - 1 - len(ADE20K_PALETTE))
    return pal


def colorize(label: np.ndarray) -> np.ndarray:
    lut = np.zeros((256, 3), np.uint8)
    lut[1:151] = np.array(ADE20K_PALETTE, np.uint8)
    return lut[label]


def palette_png(label: np.ndarray, path: str):
    """Write an 8-bit 'P' PNG whose index is the ADE id, palette = ADE20K colours (0 = black)."""
    im = Image.fromarray(np.ascontiguousarray(label, dtype=np.uint8), mode="P")
    im.putpalette(_pil_palette())
    im.save(path, optimize=False)


def _sample_task(args):
    seed, size = args
    return sample(seed, size)


def make_dataset(n, size, seed0=0, workers=2):
    labels = np.zeros((n, size, size), np.uint8)
    images = np.zeros((n, size, size, 3), np.uint8)
    caps = []
    tasks = [(seed0 + i, size) for i in range(n)]
    if workers > 1 and n > 1:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(workers) as pool:
            it = pool.imap(_sample_task, tasks, chunksize=16)
            for i, (lb, im, cp) in enumerate(it):
                labels[i], images[i] = lb, im
                caps.append(cp)
    else:
        for i, t in enumerate(tasks):
            lb, im, cp = _sample_task(t)
            labels[i], images[i] = lb, im
            caps.append(cp)
    return labels, images, caps


def _grid(k, size, seed0, path, cols=3):
    rows = (k + cols - 1) // cols
    pad = 4
    cw = 2 * size + pad
    out = np.full((rows * (size + pad) + pad, cols * (cw + pad) + pad, 3), 255, np.uint8)
    caps = []
    for i in range(k):
        lb, im, cp = sample(seed0 + i, size)
        r, c = divmod(i, cols)
        y, x = pad + r * (size + pad), pad + c * (cw + pad)
        out[y:y + size, x:x + size] = colorize(lb)
        out[y:y + size, x + size + pad:x + 2 * size + pad] = im
        caps.append(f"{seed0 + i}: {cp}")
    Image.fromarray(out).save(path)
    return caps


def _stats(n, size, seed0, workers=2):
    labels, _, caps = make_dataset(n, size, seed0, workers)
    tot = labels.size
    cnt = np.bincount(labels.ravel(), minlength=256)
    per = np.stack([(labels == c).reshape(n, -1).mean(1) for c, _, _ in CLASSES], 1)
    pres = per > 0
    big = per >= 0.005
    print(f"{n} samples at {size}² (seeds {seed0}..{seed0 + n - 1})")
    print(f"{'id':>4} {'class':<9} {'pixel %':>8} {'present %':>10} {'>=0.5% px':>10}")
    ok = True
    for j, (c, name, _) in enumerate(CLASSES):
        p = pres[:, j].mean() * 100
        ok &= p >= 10
        print(f"{c:>4} {name:<9} {cnt[c] / tot * 100:8.2f} {p:10.1f} {big[:, j].mean() * 100:10.1f}")
    looks = {}
    for i in range(n):
        looks[_look(seed0 + i).name] = looks.get(_look(seed0 + i).name, 0) + 1
    print("looks:", ", ".join(f"{k} {v / n * 100:.0f}%" for k, v in looks.items()))
    other = tot - sum(cnt[c] for c, _, _ in CLASSES)
    print(f"other ids: {other} px; every class present in >= 10% of samples: {ok}")
    return ok


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out")
    ap.add_argument("--grid", nargs=2, metavar=("K", "OUT_PNG"))
    ap.add_argument("--dataset", type=int, metavar="N")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--stats", action="store_true")
    ap.add_argument("--time", action="store_true")
    ap.add_argument("--n", type=int, default=500)
    a = ap.parse_args(argv)

    if a.grid:
        caps = _grid(int(a.grid[0]), a.size, a.seed, a.grid[1])
        print("\n".join(caps))
        print(f"wrote {a.grid[1]}")
    elif a.dataset:
        if not a.out:
            ap.error("--dataset needs --out file.npz")
        t0 = time.time()
        labels, images, caps = make_dataset(a.dataset, a.size, a.seed, a.workers)
        np.savez(a.out, labels=labels, images=images, captions=np.array(caps),
                 seeds=np.arange(a.seed, a.seed + a.dataset, dtype=np.int64),
                 class_ids=np.array([c for c, _, _ in CLASSES], np.uint8))
        print(f"wrote {a.out}: {a.dataset} samples at {a.size}² in {time.time() - t0:.1f}s")
    elif a.stats:
        ok = _stats(a.n, a.size, a.seed, a.workers)
        sys.exit(0 if ok else 1)
    elif a.time:
        sample(a.seed, a.size)
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(a.n):
            sample(a.seed + i, a.size)
        dt = (time.perf_counter() - t0) / a.n
        dc = (time.process_time() - c0) / a.n
        print(f"{a.size}² sample: {dc * 1000:.1f} ms CPU, {dt * 1000:.1f} ms wall "
              f"(mean over {a.n} seeds from {a.seed}, one process)")
    else:
        if not a.out:
            ap.error("give --out DIR (or --grid / --dataset / --stats / --time)")
        os.makedirs(a.out, exist_ok=True)
        lb, im, cp = sample(a.seed, a.size)
        palette_png(lb, os.path.join(a.out, f"{a.seed}_label.png"))
        Image.fromarray(im).save(os.path.join(a.out, f"{a.seed}_image.png"))
        with open(os.path.join(a.out, f"{a.seed}.txt"), "w") as f:
            f.write(cp + "\n")
        print(cp)


if __name__ == "__main__":
    main()
