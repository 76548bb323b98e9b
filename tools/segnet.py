#!/usr/bin/env python3
"""A small segmentation network for measuring the landscape demo model (SPADE-paper style).

The SPADE paper scores a generator by running a segmentation network trained on *real* images
over the *generated* ones and comparing its prediction with the input map (mIoU, pixel
accuracy).  Here the "real" images are the procedural renders of ``tools/landscape.py``; this
script trains that segmenter, ``tools/eval_landscape.py`` applies it.

    python3 tools/segnet.py                                   # ~20-30 min on 2 free CPU cores
    python3 tools/segnet.py --work DIR --max-minutes 30       # resumes if DIR has a checkpoint
    python3 tools/segnet.py --bench 10                        # time 10 steps (stand-in data)
    python3 tools/segnet.py --eval-only [--weights PT]        # re-score segnet.pt on the val set
    python3 tools/segnet.py --export tools/weights/segnet2.pt # f16 copy of <work>/segnet.pt

The generator's perceptual-loss segmenter (``--work .../segnet2 --train-seed0 2400000 --seed
1``) is committed as an f16 copy, ``tools/weights/segnet2.pt`` (``--export``), so a training run
needs no segmenter training first. The segmenter that scores (the defaults) is trained per
machine.

Data
----
``landscape.sample(seed, size)`` for seeds ``TRAIN_SEED0 = 2_000_000 + i`` (``--n-train``,
default 4000) and a validation set ``VAL_SEED0 = 2_900_000 + i`` (``--n-val``, default 200).
Neither overlaps the generator's training seeds (< 1,000,000) nor the held-out evaluation seeds
(1,000,000 ...) that eval_landscape.py scores on.  Both are rendered once (``--threads`` worker
processes; ~15 ms per 128x128 sample) and cached as
``<work>/segdata_<size>_<seed0>_<n>_<hash>.npz`` (hash over CLASSES, size and landscape.py's
source, so a changed world re-renders).  Labels are stored as channel indices (position in
``landscape.CLASSES``, 14 classes).

Augmentation (per sample, on the fly, deterministic per step so resumes replay exactly):
horizontal flip (p 0.5); colour jitter: brightness x[0.85, 1.15], contrast x[0.85, 1.15],
saturation x[0.8, 1.2], per-channel gain x[0.95, 1.05]; resolution loss (p 0.25): bilinear down
to 50-85 % and back up; Gaussian blur (p 0.5, sigma 0.3-1.2, 5-tap separable); Gaussian noise
(p 0.5, sigma 0-0.04 of full range).  The point is that the net must not key on the renderer's
exact pixel textures, since it is applied to GAN outputs.  No vertical flips (sky is up).

Model: ``SegUNet`` (``--width 16``: 1.94 M parameters, ~0.77 G MAC per 128x128 image)
-------------------------------------------------------------------------------------
A compact U-Net with 4 poolings, BatchNorm, ReLU; input RGB normalised to [-1, 1] (x/127.5-1,
as the generator's output), any size divisible by 16, output ``K`` = 14 logits per pixel::

    enc0  2x(conv3x3-BN-ReLU)  3 -> w            @ 128
    enc1  maxpool2, 2x conv    w -> 2w           @ 64
    enc2  maxpool2, 2x conv   2w -> 4w           @ 32
    enc3  maxpool2, 2x conv   4w -> 8w           @ 16
    mid   maxpool2, 2x conv   8w -> 16w          @ 8     (receptive field covers the image)
    dec3  convT2x2 16w->8w, concat enc3, 2x conv 16w -> 8w   @ 16
    dec2  convT2x2  8w->4w, concat enc2, 2x conv  8w -> 4w   @ 32
    dec1  convT2x2  4w->2w, concat enc1, 2x conv  4w -> 2w   @ 64
    dec0  convT2x2  2w->w,  concat enc0, 2x conv  2w -> w    @ 128
    head  conv1x1 w -> K

Objective / schedule
--------------------
Pixel-wise cross-entropy, class-weighted by ``(median_freq / freq) ** 0.5`` clipped to
[0.5, 4] (frequencies from the training labels; ``--no-class-weights`` turns it off) so the
small classes (flower, path, rock, river) count for mIoU.  AdamW (lr ``--lr`` 2e-3, wd 1e-4),
linear warm-up over the first 3 % of ``--steps`` then cosine to 1 % of lr.  Batch ``--batch`` 16.

Throughput (``--bench``): measured only with the cores busy (the generator's training run on
both cores, this at nice 19 with 1 thread): 1.6 s/step at batch 16, width 16, 128x128 (2.1 s at
width 24).  Two free cores should give roughly 0.4-0.6 s/step, so the default ``--steps 2000``
(8 epochs of 4000 images) is ~15-20 min, inside the ~20-30 min budget; re-measure with
``--bench 10`` first.  ``--max-minutes`` (default 40) stops a slower run cleanly (the cosine
schedule is over ``--steps``, so an early stop leaves lr high; run again to resume and finish).

Outputs / resume
----------------
``<work>/segnet_ckpt.pt`` (model, optimiser, step, args, class weights; temp file + rename)
every ``--save-every`` steps (default 250), at the end, on SIGINT/SIGTERM and at
``--max-minutes``; a new run in the same ``--work`` resumes from it (``--steps`` is the total).
``<work>/segnet.pt`` is the inference file: ``{"model": state_dict, "arch": {...}, "classes":
CLASSES, "step", "val": {miou, pixel_acc, per_class_iou}, "input": "rgb uint8 / 127.5 - 1"}``,
rewritten with validation metrics at each save.  ``<work>/log.jsonl`` holds losses and val
metrics.  Use ``load(path)`` / ``predict(model, images)`` / ``confusion`` / ``scores`` from
Python (eval_landscape.py does).

Result
------
Not measured yet: the smoke tests ran while the generator's training run had both cores (a
200-step, 32-image run at 64x64 reached 33 % val mIoU, i.e. the loop learns).  After the first
full run, record here: ``python3 tools/segnet.py --eval-only`` (val mIoU / pixel accuracy on
seeds 2,900,000...) and the (a) row of eval_landscape.py (held-out seeds 1,000,000...).
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import math
import os
import signal
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import landscape  # noqa: E402

TRAIN_SEED0 = 2_000_000
VAL_SEED0 = 2_900_000
MAX_TRAIN = VAL_SEED0 - TRAIN_SEED0
CLASSES = [(int(i), str(n), tuple(int(c) for c in rgb)) for i, n, rgb in landscape.CLASSES]
K = len(CLASSES)


# ------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------


def _cbr(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class _Block(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(_cbr(cin, cout), _cbr(cout, cout))


class SegUNet(nn.Module):
    """Compact U-Net (see module docstring). Input N x 3 x H x W in [-1, 1], H, W % 16 == 0."""

    def __init__(self, k: int = K, width: int = 16):
        super().__init__()
        w = [width * 2 ** i for i in range(5)]
        self.k, self.width = k, width
        self.enc = nn.ModuleList([_Block(3, w[0])] + [_Block(w[i], w[i + 1]) for i in range(3)])
        self.mid = _Block(w[3], w[4])
        self.up = nn.ModuleList([nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2) for i in range(4)])
        self.dec = nn.ModuleList([_Block(2 * w[i], w[i]) for i in range(4)])
        self.head = nn.Conv2d(w[0], k, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def encoder_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of the four encoder blocks (the skips) and of the bottleneck."""
        out = []
        for i, e in enumerate(self.enc):
            x = e(x if i == 0 else F.max_pool2d(x, 2))
            out.append(x)
        out.append(self.mid(F.max_pool2d(x, 2)))
        return out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last decoder block's output (the input of the 1x1 head)."""
        *skips, x = self.encoder_features(x)
        for i in reversed(range(4)):
            x = self.dec[i](torch.cat([self.up[i](x), skips[i]], 1))
        return x


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def to_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """N x H x W x 3 uint8 -> N x 3 x H x W float in [-1, 1]."""
    t = torch.as_tensor(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    return t.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0).contiguous()


def load(path: str) -> tuple[SegUNet, dict]:
    """-> (model in eval mode, metadata dict) from a segnet.pt (or segnet_ckpt.pt)."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    arch = ck["arch"]
    m = SegUNet(arch["k"], arch["width"])
    m.load_state_dict(ck["model"], strict=True)
    m.eval()
    meta = {k: v for k, v in ck.items() if k not in ("model", "opt")}
    classes = [(int(i), str(n), tuple(int(c) for c in rgb)) for i, n, rgb in meta["classes"]]
    if classes != CLASSES:
        raise SystemExit(f"{path}: its classes differ from landscape.CLASSES")
    return m, meta


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, batch: int = 32, tta: bool = False) -> np.ndarray:
    """N x H x W x 3 uint8 -> N x H x W uint8 channel indices (argmax). ``tta``: + h-flip."""
    model.eval()
    out = np.zeros(images.shape[:3], np.uint8)
    for s in range(0, len(images), batch):
        x = to_input(images[s:s + batch])
        logits = model(x)
        if tta:
            logits = logits.softmax(1) + model(x.flip(3)).flip(3).softmax(1)
        out[s:s + batch] = logits.argmax(1).to(torch.uint8).numpy()
    return out


def confusion(gt: np.ndarray, pred: np.ndarray, k: int = K) -> np.ndarray:
    """k x k int64 matrix, rows = ground truth, columns = prediction (channel indices)."""
    g = gt.astype(np.int64).ravel()
    p = pred.astype(np.int64).ravel()
    return np.bincount(g * k + p, minlength=k * k).reshape(k, k)


def scores(conf: np.ndarray) -> dict:
    """Standard confusion-matrix scores. IoU_c = TP / (TP + FP + FN); mIoU averages over the
    classes present in the union of ground truth and predictions (row or column sum > 0)."""
    conf = conf.astype(np.float64)
    tp = np.diag(conf)
    gt, pr = conf.sum(1), conf.sum(0)
    union = gt + pr - tp
    present = union > 0
    iou = np.where(present, tp / np.maximum(union, 1), np.nan)
    return dict(miou=float(np.nanmean(iou)) if present.any() else float("nan"),
                pixel_acc=float(tp.sum() / max(conf.sum(), 1)),
                per_class_iou=[None if np.isnan(v) else float(v) for v in iou],
                gt_frac=(gt / max(conf.sum(), 1)).tolist(), n_present=int(present.sum()))


# ------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------


def _lut() -> np.ndarray:
    lut = np.full(256, 255, np.uint8)
    for ch, (ade, _, _) in enumerate(CLASSES):
        lut[ade] = ch
    return lut


LUT = _lut()


def to_channels(label_ade: np.ndarray) -> np.ndarray:
    ch = LUT[label_ade.astype(np.uint8)]
    if (ch == 255).any():
        raise ValueError(f"label ids {sorted(set(np.unique(label_ade[ch == 255]).tolist()))} "
                         "are not in landscape.CLASSES")
    return ch


def world_hash(size: int) -> str:
    h = hashlib.sha1(repr((CLASSES, size)).encode())
    h.update(open(inspect.getsourcefile(landscape), "rb").read())
    return h.hexdigest()[:10]


def _sample_task(args):
    seed, size = args
    lab, img, _ = landscape.sample(seed, size)
    return seed, lab, img


def render_set(seed0: int, n: int, size: int, workers: int, what: str) -> dict:
    labels = np.zeros((n, size, size), np.uint8)
    images = np.zeros((n, size, size, 3), np.uint8)
    tasks = [(seed0 + i, size) for i in range(n)]
    t0 = last = time.time()
    pool = None
    if workers > 1 and n > 1:
        import multiprocessing as mp
        pool = mp.get_context("fork").Pool(workers)
        it = pool.imap(_sample_task, tasks, chunksize=8)
    else:
        it = map(_sample_task, tasks)
    try:
        for i, (seed, lab, img) in enumerate(it):
            assert seed == seed0 + i
            labels[i], images[i] = to_channels(np.asarray(lab)), np.asarray(img)[..., :3]
            if time.time() - last > 10 or i == n - 1:
                last = time.time()
                el = last - t0
                print(f"  rendering {what}: {i + 1}/{n}  {el:.0f}s  ETA "
                      f"{el / (i + 1) * (n - i - 1):.0f}s", flush=True)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return dict(labels=labels, images=images, seeds=np.arange(seed0, seed0 + n, dtype=np.int64))


def cached_set(work: str, seed0: int, n: int, size: int, workers: int, what: str) -> dict:
    path = os.path.join(work, f"segdata_{size}_{seed0}_{n}_{world_hash(size)}.npz")
    if os.path.exists(path):
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    print(f"rendering {path}", flush=True)
    d = render_set(seed0, n, size, workers, what)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **d)
    os.replace(tmp, path)
    return d


def class_weights(labels: np.ndarray) -> np.ndarray:
    freq = np.bincount(labels.ravel(), minlength=K).astype(np.float64)
    freq /= freq.sum()
    med = np.median(freq[freq > 0])
    w = np.where(freq > 0, np.sqrt(med / np.maximum(freq, 1e-12)), 1.0)
    return np.clip(w, 0.5, 4.0).astype(np.float32)


# ------------------------------------------------------------------------------------------
# Augmentation (torch, per batch; x in [-1, 1], N x 3 x H x W)
# ------------------------------------------------------------------------------------------


def augment(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    n = x.shape[0]

    def u(lo, hi, *shape):
        return torch.rand(n, *shape, generator=g) * (hi - lo) + lo

    def p(prob):
        return torch.rand(n, generator=g) < prob

    flip = p(0.5)
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    y = torch.where(flip[:, None, None], y.flip(2), y)

    x = (x + 1) * 0.5  # [0, 1]
    x = x * u(0.85, 1.15, 1, 1, 1)                                   # brightness
    m = x.mean((1, 2, 3), keepdim=True)
    x = (x - m) * u(0.85, 1.15, 1, 1, 1) + m                         # contrast
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - gray) * u(0.8, 1.2, 1, 1, 1) + gray                     # saturation
    x = x * u(0.95, 1.05, 3, 1, 1)                                   # channel gains

    h, w = x.shape[2:]
    low = p(0.25)
    if low.any():  # resolution loss: down to 50-85 % and back up
        f = float(u(0.5, 0.85)[0])
        xs = x[low]
        xs = F.interpolate(xs, size=(max(8, round(h * f)), max(8, round(w * f))), mode="bilinear",
                           align_corners=False, antialias=True)
        x = x.clone()
        x[low] = F.interpolate(xs, size=(h, w), mode="bilinear", align_corners=False)

    blur = p(0.5)
    if blur.any():  # per-sample Gaussian blur, 5 taps, separable, reflect padding
        sig = u(0.3, 1.2)
        t = torch.arange(-2, 3, dtype=torch.float32)
        k = torch.exp(-(t[None] ** 2) / (2 * sig[:, None] ** 2))
        k = k / k.sum(1, keepdim=True)
        k = torch.where(blur[:, None], k, torch.tensor([0, 0, 1.0, 0, 0]))
        kk = k.repeat_interleave(3, 0)  # (n*3, 5)
        z = F.pad(x.reshape(1, n * 3, h, w), (2, 2, 2, 2), mode="reflect")
        z = F.conv2d(z, kk[:, None, None, :], groups=n * 3)
        z = F.conv2d(z, kk[:, None, :, None], groups=n * 3)
        x = z.reshape(n, 3, h, w)

    noise = p(0.5).float() * u(0.0, 0.04)
    x = x + torch.randn(x.shape, generator=g) * noise[:, None, None, None]
    return (x.clamp(0, 1) * 2 - 1).contiguous(), y.contiguous()


# ------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------


def lr_at(step: int, total: int, base: float) -> float:
    warm = max(1, int(0.03 * total))
    if step < warm:
        return base * (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


class _Perms:
    """Sample indices for a step: the epoch-e permutation is default_rng([seed, e]) (cached)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.cache = n, seed, {}

    def __call__(self, step: int, batch: int) -> np.ndarray:
        out = np.empty(batch, np.int64)
        for b, i in enumerate(range(step * batch, (step + 1) * batch)):
            e, j = divmod(i, self.n)
            if e not in self.cache:
                self.cache = {e: np.random.default_rng([self.seed, e]).permutation(self.n)}
            out[b] = self.cache[e][j]
        return out


def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch: int = 32) -> dict:
    pred = predict(model, images, batch)
    return scores(confusion(labels, pred))


def _save(path: str, obj: dict) -> None:
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def fmt_scores(s: dict) -> str:
    per = " ".join(f"{CLASSES[i][1]} {v * 100:.0f}" for i, v in enumerate(s["per_class_iou"])
                   if v is not None)
    return f"mIoU {s['miou'] * 100:.1f}  pixel acc {s['pixel_acc'] * 100:.1f}  [{per}]"


def bench(a) -> None:
    model = SegUNet(K, a.width)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(a.batch, 3, a.size, a.size) * 2 - 1
    y = torch.randint(0, K, (a.batch, a.size, a.size))
    print(f"SegUNet width {a.width}: {n_params(model) / 1e6:.2f} M params; batch {a.batch} at "
          f"{a.size}x{a.size}, {torch.get_num_threads()} threads", flush=True)
    ts = []
    for i in range(a.bench + 2):
        t0 = time.perf_counter()
        xa, ya = augment(x, y, g)
        loss = F.cross_entropy(model(xa), ya)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:
            ts.append(time.perf_counter() - t0)
    s = float(np.mean(ts))
    print(f"{s:.3f} s/step ({a.batch / s:.1f} img/s); {a.steps} steps ~ {a.steps * s / 60:.1f} min")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/work/landscape_runs/segnet")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--n-val", type=int, default=200)
    ap.add_argument("--width", type=int, default=16, help="U-Net base width (16: 1.94 M params)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2000, help="total steps (cosine schedule)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--no-class-weights", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-seed0", type=int, default=TRAIN_SEED0,
                    help="first training seed; a second segmenter for a training loss takes other "
                         "seeds (e.g. 2400000) and --seed, so the one that scores stays independent")
    ap.add_argument("--max-minutes", type=float, default=40.0, help="per invocation")
    ap.add_argument("--save-every", type=int, default=250)
    ap.add_argument("--print-every", type=float, default=15.0, help="seconds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bench", type=int, metavar="N", help="time N steps on stand-in data, exit")
    ap.add_argument("--eval-only", action="store_true", help="score <work>/segnet.pt on val")
    ap.add_argument("--weights", help="--eval-only: score this file instead of <work>/segnet.pt")
    ap.add_argument("--export", metavar="PT", help="write <work>/segnet.pt with f16 weights, exit")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.size % 16:
        ap.error("--size must be divisible by 16")
    if a.bench:
        return bench(a)
    if not 0 < a.n_train <= MAX_TRAIN:
        ap.error(f"--n-train must be in 1..{MAX_TRAIN}")
    if not TRAIN_SEED0 <= a.train_seed0 <= VAL_SEED0 - a.n_train:
        ap.error(f"--train-seed0 must be in {TRAIN_SEED0}..{VAL_SEED0 - a.n_train} (the training "
                 f"seeds must not reach the validation seeds {VAL_SEED0}..)")
    os.makedirs(a.work, exist_ok=True)
    ck_path = os.path.join(a.work, "segnet_ckpt.pt")
    out_path = os.path.join(a.work, "segnet.pt")
    log_path = os.path.join(a.work, "log.jsonl")

    if a.export:
        ck = torch.load(out_path, map_location="cpu", weights_only=True)
        ck["model"] = {k: v.half() if v.is_floating_point() else v for k, v in ck["model"].items()}
        os.makedirs(os.path.dirname(os.path.abspath(a.export)), exist_ok=True)
        _save(a.export, ck)
        print(f"wrote {a.export} (f16 weights of {out_path}, step {ck['step']})")
        return
    val = cached_set(a.work, VAL_SEED0, a.n_val, a.size, a.threads, "val")
    if a.eval_only:
        path = a.weights or out_path
        model, meta = load(path)
        s = evaluate(model, val["images"], val["labels"])
        print(f"{path} (step {meta['step']}) on {a.n_val} val renders: {fmt_scores(s)}")
        return
    tr = cached_set(a.work, a.train_seed0, a.n_train, a.size, a.threads, "train")
    n = len(tr["labels"])

    model = SegUNet(K, a.width)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    cw = np.ones(K, np.float32) if a.no_class_weights else class_weights(tr["labels"])
    step, train_s = 0, 0.0
    arch = dict(k=K, width=a.width, size=a.size)
    if os.path.exists(ck_path):
        ck = torch.load(ck_path, map_location="cpu", weights_only=True)
        if ck["arch"] != arch:
            raise SystemExit(f"{ck_path} has arch {ck['arch']}, flags give {arch}: use another --work")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        cw = np.asarray(ck["class_weights"], np.float32)
        step, train_s = int(ck["step"]), float(ck.get("train_seconds", 0.0))
        print(f"resumed {ck_path} at step {step} ({train_s / 60:.1f} min trained)")
    print(f"SegUNet width {a.width}: {n_params(model) / 1e6:.2f} M params; {n} train "
          f"(seeds {a.train_seed0}..), {a.n_val} val (seeds {VAL_SEED0}..) at {a.size}^2; batch "
          f"{a.batch}, steps {step}->{a.steps}, {torch.get_num_threads()} threads")
    print("class weights: " + " ".join(f"{c[1]} {w:.2f}" for c, w in zip(CLASSES, cw)), flush=True)
    cw_t = torch.from_numpy(cw)
    perms = _Perms(n, a.seed)
    imgs_t = torch.from_numpy(tr["images"])
    labs_t = torch.from_numpy(tr["labels"])

    stop = {"sig": None}

    def on_sig(signum, _frame):
        stop["sig"] = signum
        print(f"signal {signum}: finishing the step and saving", flush=True)

    old = {s: signal.signal(s, on_sig) for s in (signal.SIGINT, signal.SIGTERM)}
    last_val = None

    def save(final: bool = False):
        nonlocal last_val
        t0 = time.time()
        s = evaluate(model, val["images"], val["labels"])
        last_val = s
        _save(ck_path, dict(model=model.state_dict(), opt=opt.state_dict(), step=step, arch=arch,
                            class_weights=cw.tolist(), train_seconds=train_s, args=vars(a),
                            classes=CLASSES))
        _save(out_path, dict(model=model.state_dict(), arch=arch, classes=CLASSES, step=step,
                             train_seconds=train_s, val=s, val_seeds=[VAL_SEED0, a.n_val],
                             train_seeds=[a.train_seed0, n], input="rgb uint8 / 127.5 - 1",
                             args=vars(a)))
        with open(log_path, "a") as f:
            f.write(json.dumps(dict(step=step, val=s, final=final)) + "\n")
        print(f"saved step {step}; val {fmt_scores(s)}  ({time.time() - t0:.0f}s)", flush=True)

    t_start = time.time()
    t_print, run_loss, run_n, step0 = time.time(), 0.0, 0, step
    model.train()
    try:
        while step < a.steps and stop["sig"] is None:
            if (time.time() - t_start) / 60 > a.max_minutes:
                print(f"--max-minutes {a.max_minutes} reached", flush=True)
                break
            t0 = time.time()
            lr = lr_at(step, a.steps, a.lr)
            for gr in opt.param_groups:
                gr["lr"] = lr
            idx = torch.from_numpy(perms(step, a.batch))
            x = to_input(imgs_t[idx])
            y = labs_t[idx].long()
            g = torch.Generator().manual_seed(a.seed * 1_000_003 + step)
            x, y = augment(x, y, g)
            loss = F.cross_entropy(model(x), y, weight=cw_t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            train_s += time.time() - t0
            run_loss += loss.item()
            run_n += 1
            if time.time() - t_print > a.print_every or step == a.steps:
                el = time.time() - t_start
                rate = (step - step0) / max(el, 1e-9)
                print(f"step {step}/{a.steps}  loss {run_loss / run_n:.4f}  lr {lr:.2e}  "
                      f"{rate:.2f} it/s  {el / 60:.1f} min  ETA "
                      f"{(a.steps - step) / max(rate, 1e-9) / 60:.1f} min", flush=True)
                with open(log_path, "a") as f:
                    f.write(json.dumps(dict(step=step, loss=run_loss / run_n, lr=lr,
                                            it_s=rate)) + "\n")
                t_print, run_loss, run_n = time.time(), 0.0, 0
            if step % a.save_every == 0 and step < a.steps:
                save()
                model.train()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    save(final=step >= a.steps)
    print(f"wrote {out_path} (step {step}/{a.steps}, {train_s / 60:.1f} min trained)")


if __name__ == "__main__":
    main()
