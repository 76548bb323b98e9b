#!/usr/bin/env python3
"""Train the spadework demo model: SPADE/GauGAN on the procedural landscape world (CPU).

    python3 tools/train_landscape.py                       # defaults: ~2 h on 2 CPU cores
    python3 tools/train_landscape.py --work DIR --max-minutes 30
    python3 tools/export_landscape.py --work DIR           # -> latest_net_G.pth, classes.json

Data
----
``tools/landscape.py`` provides ``CLASSES`` [(ade_id, name, rgb)] in channel order and
``sample(seed, size) -> (label HxW uint8 ADE ids, image HxWx3 uint8, caption)``. Seeds
``[0, n_train)`` are rendered once into ``<work>/data_<size>_<n>_<hash>.npz`` (the hash covers
CLASSES, the size and landscape.py's source, so a changed world re-renders); seeds
``>= 1_000_000`` are held out (never trained on), cached in ``eval_<size>_<n>_<hash>.npz`` and
drawn in the sample grids. ADE ids are
mapped to the compact channel index (position in CLASSES); one-hot with
``label_nc = len(CLASSES)``, no dontcare, no instance channel. Random horizontal flips.

Model (NVlabs layout, so the checkpoint loads in the Rust engine)
----------------------------------------------------------------
* netG = ``spade_reference.SPADEGenerator`` with label_nc K, no dontcare, no instance,
  crop_size ``--size``, aspect 1, ``normal`` upsampling, ``--ngf``, norm_G
  ``spectralspadesyncbatch3x3`` (plain ``BatchNorm2d(affine=False)``, default momentum 0.1,
  keys ``param_free_norm.*``). With ``--use-vae`` its ``fc`` is ``Linear(z_dim=256, 16*ngf*sh*sw)``.
* netE = ``spade_reference.ConvEncoder`` (VAE only). It always resizes the style image to 256x256
  (bilinear, as NVlabs). NVlabs drops ``layer6`` when crop_size < 256, which makes the flatten
  size (512*8*8) disagree with ``fc_mu`` (512*4*4): a latent NVlabs bug that would crash at 128.
  **What we do:** below 256 the encoder is built with ``crop_size=256`` options, i.e. the standard
  6-layer NVlabs encoder (256 -> 4x4, 8*ngf*16 features) on the 256-resized image; only its width
  (ndf = ngf) follows the generator. Consequence: spade_reference.load_encoder / the Rust
  converter, which derive the layer count from crop_size, expect 5 layers at crop 128, so the
  exported ``latest_net_E.pth`` is for Python use (load it with crop_size=256 options) and
  export_landscape.py leaves ``--netE`` out of the convert command below 256. The generator
  itself is unaffected (random z ~ N(0, I) or a given z works in Rust).
* netD = NVlabs ``MultiscaleDiscriminator``: ``--num-d`` 2 scales (avg-pool 3/2/1, no pad
  count), each an ``NLayerDiscriminator`` (kw 4, pad 2, ``--ndf`` 64, spectral norm + instance
  norm on the inner convs, plain first/last conv, lrelu 0.2), input = concat(one-hot, image),
  intermediate features returned for feature matching. ``--n-layers-d`` is 4 at size >= 256 and
  3 below (a 128 image then has the same relative receptive field as NVlabs at 256).
* Init as NVlabs ``init_weights('xavier', 0.02)`` (also for the spectral-norm ``weight_orig``).

Objective (SPADE paper minus VGG: no VGG weights offline)
--------------------------------------------------------
hinge GAN loss averaged over the D scales; D feature matching, weight ``--lambda-feat`` 10;
KL(mu, logvar) summed, weight ``--lambda-kld`` 0.05 (VAE); TTUR Adam betas (0, 0.9), lr G
(and E) 1e-4, D 4e-4. **Extra, documented deviations for CPU:**
* ``--lambda-l1`` 1.0: L1 between fake and real (the VAE makes the target well posed: the
  encoder carries the style). It stands in for the missing VGG loss and speeds up early
  training a lot; set 0 for the pure SPADE objective.
* ``--reuse-fake`` (default on): the D step reuses the G step's (detached) fake instead of
  running netG a second time, as pix2pixHD does. Saves one netG forward (~20 % of a step);
  the BN running stats are then updated once per step instead of twice.
* Order per step: G(+E) update, then D update (as NVlabs' trainer).

OASIS discriminator, warm start, EMA (options; the defaults above are unchanged)
----------------------------------------------------------------------------
For the banding / blur / weak-class problems of the shipped model (issue 16):

* ``--d oasis`` (architecture key ``d``, default ``patch``): the discriminator of OASIS
  (Sushko, Schönfeld et al., "You Only Need Adversarial Supervision for Semantic Image
  Synthesis", ICLR 2021), ``OasisDiscriminator``: a U-Net with spectral-norm residual blocks
  that segments the image alone into K + 1 classes (0 = fake). D loss: class-balanced
  cross-entropy on real images (target = class + 1, per-pixel weight N*H*W / (classes present
  * pixels of the class) over the batch) + plain cross-entropy to "fake" on generated images;
  G loss: the class-balanced cross-entropy of D(fake) against the map's classes. So every pixel
  of the fake gets a per-class "does this look like flower / rock / path" signal instead of
  a patch real/fake score; the PatchGAN's feature matching (``--lambda-feat``) does not apply.
  LabelMix (``--lambda-labelmix`` 10): D also sees a real/fake mix cut along the map's class
  regions, and its output there must equal the same mix of its outputs on real and fake (MSE).
  ``--ndf`` defaults to 32 for this D (0.74 M parameters at 128^2).
* ``--l1-pool N``: the L1 term on ``avg_pool(N)`` of fake and real. Per-pixel L1 (N = 1, the
  default) regresses unpredictable texture to its mean, i.e. blur; at N = 8 it only ties
  colour, light and layout at 16x16 to the style image (which keeps the VAE encoder useful)
  and leaves texture to the discriminator.
* ``--ema D``: an exponential moving average of G's weights (decay D, e.g. 0.999; BN running
  stats and spectral-norm vectors copied from G), as OASIS evaluates; stored as ``G_ema`` in the
  checkpoints, drawn in the sample grids and exported by export_landscape.py (``--raw-g`` for G).
* ``--init-from FILE.safetensors``: start G and E from a converted model (int8 dequantised;
  spectral norm: ``weight_orig`` = the folded weight, u/v converged, whose top singular values
  are 1.000-1.002 so the function is kept), only when ``--work`` has no checkpoint; D is fresh.
  ``--d-warmup N``: the first N steps train only D (G frozen), so a fresh D has learnt to
  segment before its gradients reach a trained G.

The run started from the shipped model (resume it with the same command; ``--steps`` is the
total, ``--max-minutes`` per invocation)::

    nohup nice -n 19 python3 tools/train_landscape.py --work /work/landscape_runs/oasis128 \
        --d oasis --init-from assets/landscape.safetensors --d-warmup 300 --ema 0.999 \
        --l1-pool 8 --steps 6000 --max-minutes 140 > /work/landscape_runs/oasis128/run.log 2>&1 &

(``--init-from`` is ignored once the run directory holds a checkpoint.)

Throughput and defaults (measured, 2 CPU cores shared with other jobs, torch 2.15, 2 threads)
---------------------------------------------------------------------------------------------
``--bench 10`` (10 steps after 2 warm-up steps, stand-in data), size 128, ngf 32, ndf 64,
n_layers_D 3, VAE on, L1 on, reuse-fake on. Load average ~2 (the cores to ourselves):

    batch 2: 1.48 s/step  (0.68 it/s, 1.35 img/s)
    batch 4: 2.44-2.59 s/step  (0.386-0.41 it/s, 1.54-1.64 img/s)   <- default
    batch 8: 4.72-4.89 s/step  (0.20-0.21 it/s, 1.64-1.70 img/s)

With other jobs on the cores (load 3-5) batch 4 took 4.2-11 s/step. Batch 4 is as fast per
image as batch 8 with twice the updates, and gives BatchNorm usable batch statistics. At
~2.5 s/step two hours are ~2,900 steps; the default ``--steps 3000`` (3 epochs of ``--n-train 4000``
images: landscape.py takes ~15 ms per 128x128 sample, so ~1 min and 260 MB) is the shipped model,
reached in 210 minutes over three resumed runs on shared cores (2,058 steps scored 59.8 mIoU,
3,000 steps 63.9). ``--max-minutes 120`` stops a run cleanly (resume with the same command). ``--save-every 120`` and
``--sample-every 120`` steps are ~5 minutes of work. A checkpoint is ~440 MB (G 31.7 M, D 1.35 M,
E 3.67 M parameters + Adam moments); the last 2 are kept.
netG forward cost at 128x128 per image: 15.4 G MAC at ngf 32 (12.7 G of it in the SPADE
mlp_* convs, whose hidden width 128 is fixed by NVlabs), 7.6 G at ngf 16, 34.9 G at ngf 64;
netD 1.06 G per image (both scales). ``--ngf 16`` would buy ~1.6-2x more steps at lower capacity.

Checkpoints / resume
--------------------
``<work>/ckpt_<step>.pt`` (G, D, E, both optimisers, step, data order, torch/numpy/python RNG
states, the architecture, CLASSES) every ``--save-every`` steps and at the end, written to a
temp file then renamed; the last ``--keep`` are kept. A new run in the same ``--work`` resumes
from the newest readable checkpoint; architecture flags default to the checkpoint's and an
explicit conflicting flag is an error. ``--max-minutes`` is per invocation, ``--steps`` is the
total. SIGINT/SIGTERM finish the current step and save. Sample grids
``<work>/samples/step_XXXXXX.png``: rows = held-out seeds then training seeds; columns = map |
real | generated (eval mode: BN running stats, z = E(real) mean) | generated with random z (VAE).
Losses go to ``<work>/log.jsonl``.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import random
import re
import signal
import sys
import time
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import spade_reference as sr  # noqa: E402

EVAL_SEED0 = 1_000_000  # seeds >= this are held out
Z_DIM = 256  # NVlabs ConvEncoder output width is hard-coded to 256
NORM_G = "spectralspadesyncbatch3x3"
DEFAULTS = dict(size=128, ngf=32, ndf=None, num_d=2, use_vae=True, n_train=4000, d="patch",
                noise=0.0)
NDF_DEFAULT = {"patch": 64, "oasis": 32}
ARCH_KEYS = ("size", "ngf", "ndf", "num_d", "n_layers_d", "use_vae", "n_train", "d", "noise")


# ------------------------------------------------------------------------------------------
# World / data
# ------------------------------------------------------------------------------------------


def load_world(name: str):
    """``landscape`` (tools/landscape.py) or a path to a module with the same API."""
    if name.endswith(".py") or os.sep in name:
        spec = importlib.util.spec_from_file_location("landscape_world", name)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    return importlib.import_module(name)


def world_classes(world) -> list[tuple[int, str, tuple[int, int, int]]]:
    classes = [(int(i), str(n), tuple(int(c) for c in rgb)) for i, n, rgb in world.CLASSES]
    ids = [c[0] for c in classes]
    if len(set(ids)) != len(ids) or not all(0 <= i < 256 for i in ids):
        raise ValueError(f"CLASSES ids must be distinct uint8 values, got {ids}")
    return classes


def class_lut(classes) -> np.ndarray:
    lut = np.full(256, 255, np.uint8)
    for ch, (ade, _, _) in enumerate(classes):
        lut[ade] = ch
    return lut


def world_hash(world, classes, size: int) -> str:
    h = hashlib.sha1(repr((classes, size)).encode())
    try:
        h.update(open(inspect.getsourcefile(world), "rb").read())
    except (TypeError, OSError):
        pass
    return h.hexdigest()[:10]


def render(world, seeds, size: int, lut: np.ndarray, what: str) -> dict:
    n = len(seeds)
    labels = np.zeros((n, size, size), np.uint8)
    images = np.zeros((n, size, size, 3), np.uint8)
    captions = []
    t0 = last = time.time()
    for k, seed in enumerate(seeds):
        lab, img, cap = world.sample(int(seed), size)
        lab, img = np.asarray(lab), np.asarray(img)
        if lab.shape != (size, size):  # NVlabs: labels PIL NEAREST, photos BICUBIC
            lab = np.array(Image.fromarray(lab.astype(np.uint8)).resize((size, size), Image.NEAREST))
        if img.shape[:2] != (size, size):
            img = np.array(Image.fromarray(img.astype(np.uint8)).resize((size, size), Image.BICUBIC))
        ch = lut[lab.astype(np.uint8)]
        if (ch == 255).any():
            bad = sorted(set(np.unique(lab[ch == 255]).tolist()))
            raise ValueError(f"seed {seed}: label ids {bad} are not in CLASSES")
        labels[k], images[k] = ch, img[..., :3]
        captions.append(str(cap))
        if time.time() - last > 10 or k == n - 1:
            last = time.time()
            el = last - t0
            print(f"  rendering {what}: {k + 1}/{n}  {el:.0f}s  ETA {el / (k + 1) * (n - k - 1):.0f}s",
                  flush=True)
    return dict(labels=labels, images=images, captions=np.array(captions), seeds=np.array(seeds))


def _cached(path: str, make) -> dict:
    if os.path.exists(path):
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    print(f"rendering {path}", flush=True)
    d = make()
    tmp = path + ".tmp.npz"
    np.savez(tmp, **d)
    os.replace(tmp, path)
    return d


def load_data(work: str, world, classes, size: int, n_train: int, n_eval: int) -> dict:
    """Training and held-out arrays, each rendered once and cached (atomic write)."""
    if n_train > EVAL_SEED0:
        raise ValueError(f"n_train must be <= {EVAL_SEED0} (seeds above are held out)")
    h = world_hash(world, classes, size)
    lut = class_lut(classes)
    tr = _cached(os.path.join(work, f"data_{size}_{n_train}_{h}.npz"),
                 lambda: render(world, range(n_train), size, lut, "train"))
    ev = _cached(os.path.join(work, f"eval_{size}_{n_eval}_{h}.npz"),
                 lambda: render(world, range(EVAL_SEED0, EVAL_SEED0 + n_eval), size, lut, "held-out"))
    d = {f"train_{k}": v for k, v in tr.items()}
    d.update({f"eval_{k}": v for k, v in ev.items()})
    return d


def to_tensors(labels: np.ndarray, images: np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    lab = torch.from_numpy(np.ascontiguousarray(labels)).long()
    seg = F.one_hot(lab, k).permute(0, 3, 1, 2).float().contiguous()
    img = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return seg, (img / 255.0 - 0.5) / 0.5  # ToTensor + Normalize(0.5, 0.5), as NVlabs


# The texture field: per-pixel noise through NVlabs' instance-edge channel
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 arrays (wrapping), as ``spadework::rng::splitmix64``."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def texture_field(seed: int, h: int, w: int, density: float) -> np.ndarray:
    """The instance map a noise model is fed: 1 where hash(seed, y, x) falls below ``density``
    (Bernoulli dots), else 0; its NVlabs edge map is the generator's per-pixel noise. The Rust
    twin is ``spadework::models::spade::input::texture_field`` (same bits for the same seed)."""
    y, x = np.mgrid[0:h, 0:w]
    with np.errstate(over="ignore"):
        k = (np.uint64(seed) * _GOLDEN) ^ ((y.astype(np.uint64) << np.uint64(32)) | x.astype(np.uint64))
        z = _mix64(k + _GOLDEN)
    thr = np.uint64(int(density * (1 << 24) + 0.5))
    return ((z >> np.uint64(40)) < thr).astype(np.int64)


def with_texture_field(seg: torch.Tensor, seeds, density: float) -> torch.Tensor:
    """A noise model's generator input: the one-hot maps ``seg`` (N x K x H x W) with the edges
    (``spade_reference.get_edges``, NVlabs' rule) of each sample's texture field appended; ``seg``
    itself when ``density`` is 0."""
    if not density:
        return seg
    _, _, h, w = seg.shape
    edges = np.stack([sr.get_edges(texture_field(int(s), h, w, density)) for s in seeds])
    return torch.cat([seg, torch.from_numpy(edges)[:, None]], 1)


# ------------------------------------------------------------------------------------------
# Networks
# ------------------------------------------------------------------------------------------


def g_options(size: int, ngf: int, use_vae: bool, k: int, noise: float = 0.0) -> sr.Options:
    return sr.Options(label_nc=k, contain_dontcare_label=False, no_instance=not noise, crop_size=size,
                      aspect_ratio=1.0, num_upsampling_layers="normal", use_vae=use_vae,
                      z_dim=Z_DIM, ngf=ngf, norm_G=NORM_G)


def e_options(opt: sr.Options) -> sr.Options:
    """Encoder options: the 6-layer NVlabs encoder even below crop 256 (see module docstring)."""
    return dataclasses.replace(opt, crop_size=max(256, opt.crop_size))


def spectral_instance(conv: nn.Conv2d) -> nn.Module:
    """NVlabs get_nonspade_norm_layer('spectralinstance')."""
    conv = nn.utils.spectral_norm(conv)
    delattr(conv, "bias")
    conv.register_parameter("bias", None)
    return nn.Sequential(conv, nn.InstanceNorm2d(conv.out_channels, affine=False))


class NLayerDiscriminator(nn.Module):
    """NVlabs NLayerDiscriminator (PatchGAN); returns every layer's output."""

    def __init__(self, input_nc: int, ndf: int, n_layers: int):
        super().__init__()
        kw, padw = 4, 2
        nf = ndf
        seq = [[nn.Conv2d(input_nc, nf, kw, stride=2, padding=padw), nn.LeakyReLU(0.2, False)]]
        for n in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            seq += [[spectral_instance(nn.Conv2d(nf_prev, nf, kw, stride=stride, padding=padw)),
                     nn.LeakyReLU(0.2, False)]]
        seq += [[nn.Conv2d(nf, 1, kw, stride=1, padding=padw)]]
        for n, layers in enumerate(seq):
            self.add_module(f"model{n}", nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for m in self.children():
            x = m(x)
            out.append(x)
        return out


class MultiscaleDiscriminator(nn.Module):
    def __init__(self, input_nc: int, ndf: int, n_layers: int, num_d: int):
        super().__init__()
        for i in range(num_d):
            self.add_module(f"discriminator_{i}", NLayerDiscriminator(input_nc, ndf, n_layers))

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        res = []
        for d in self.children():
            res.append(d(x))
            x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
        return res


class OasisResBlockD(nn.Module):
    """OASIS ``residual_block_D`` (spectral norm, LeakyReLU 0.2, no normalisation).
    ``updown`` -1: conv then 2x2 average pool (shortcut: conv_s then pool); +1: nearest 2x up
    then conv (shortcut: up then conv_s); ``first``: no activation before conv1 and the
    shortcut pools before its 1x1 conv, as in the OASIS code."""

    def __init__(self, fin: int, fout: int, updown: int, first: bool = False):
        super().__init__()
        sn = nn.utils.spectral_norm
        self.updown, self.first = updown, first
        act = [] if first else [nn.LeakyReLU(0.2, False)]
        up = [nn.Upsample(scale_factor=2)] if updown > 0 and not first else []
        self.conv1 = nn.Sequential(*act, *up, sn(nn.Conv2d(fin, fout, 3, 1, 1)))
        self.conv2 = nn.Sequential(nn.LeakyReLU(0.2, False), sn(nn.Conv2d(fout, fout, 3, 1, 1)))
        self.conv_s = sn(nn.Conv2d(fin, fout, 1, 1, 0)) if fin != fout else None

    def _sample(self, x):
        if self.updown > 0:
            return F.interpolate(x, scale_factor=2, mode="nearest")
        return F.avg_pool2d(x, 2) if self.updown < 0 else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x
        if self.first:
            if self.updown < 0:
                s = self._sample(s)
            if self.conv_s is not None:
                s = self.conv_s(s)
        else:
            if self.updown > 0:
                s = self._sample(s)
            if self.conv_s is not None:
                s = self.conv_s(s)
            if self.updown < 0:
                s = self._sample(s)
        dx = self.conv2(self.conv1(x))
        if self.updown < 0:
            dx = self._sample(dx)
        return s + dx


class OasisDiscriminator(nn.Module):
    """The OASIS discriminator (Schönfeld, Sushko et al., "You Only Need Adversarial Supervision
    for Semantic Image Synthesis", ICLR 2021): a U-Net segmenter of the image alone (no label
    input) into K + 1 classes, channel 0 = "fake", channel c + 1 = semantic class c. OASIS uses
    6 down and 6 up residual blocks at 256 with widths [128, 128, 256, 256, 512, 512]; here the
    number of blocks is log2(size / 4) (5 at 128, the bottleneck is 4x4 as in OASIS) and the
    widths are ``ndf`` x [1, 1, 2, 2, 4, 4, 8]. At 128^2 and ndf 32: 0.74 M parameters and
    1.04 G MAC per image, the PatchGAN's cost (1.06 G MAC; netG 15.4 G MAC); its D step sees
    three images per map (fake, real, LabelMix) instead of two. Returns ``[[logits]]`` so the PatchGAN helpers' list-of-lists shape holds.

    Init: torch's default (Kaiming-uniform), not NVlabs/OASIS xavier(0.02), and spectral norm's
    u/v converged before the first step (``converge_sn``). With the tiny xavier weights, Adam's
    first update (beta1 0: about lr per weight, all in the gradient's sign) changes every conv
    by ~30 % of its size; through ~20 SN convs in series the logits blew up to ~1e3 in step 2
    and the D then sat at uniform outputs (loss ln(K+1)) for tens of steps (measured)."""

    def __init__(self, k: int, ndf: int, size: int):
        super().__init__()
        nb = int(round(np.log2(size / 4)))
        ch = [3] + [ndf * m for m in (1, 1, 2, 2, 4, 4, 8, 8)][:nb]
        self.body_down = nn.ModuleList([OasisResBlockD(ch[i], ch[i + 1], -1, first=(i == 0))
                                        for i in range(nb)])
        up = [OasisResBlockD(ch[-1], ch[-2], 1)]
        for i in range(1, nb - 1):
            up.append(OasisResBlockD(2 * ch[-1 - i], ch[-2 - i], 1))
        up.append(OasisResBlockD(2 * ch[1], ndf, 1))
        self.body_up = nn.ModuleList(up)
        self.layer_up_last = nn.Conv2d(ndf, k + 1, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        res = []
        for b in self.body_down:
            x = b(x)
            res.append(x)
        x = self.body_up[0](x)
        for i in range(1, len(self.body_down)):
            x = self.body_up[i](torch.cat((res[-i - 1], x), 1))
        return [[self.layer_up_last(x)]]


@torch.no_grad()
def init_weights(net: nn.Module, gain: float = 0.02) -> None:
    """NVlabs init_weights('xavier', 0.02). For spectral-norm convs NVlabs writes through
    ``m.weight.data``, which aliases ``weight_orig`` before the first forward; we init
    ``weight_orig`` directly (same effect)."""
    for m in net.modules():
        name = m.__class__.__name__
        if "BatchNorm2d" in name:
            if getattr(m, "weight", None) is not None:
                nn.init.normal_(m.weight, 1.0, gain)
            if getattr(m, "bias", None) is not None:
                nn.init.constant_(m.bias, 0.0)
        elif ("Conv" in name or "Linear" in name) and hasattr(m, "weight"):
            w = m.weight_orig if hasattr(m, "weight_orig") else m.weight
            nn.init.xavier_normal_(w, gain=gain)
            if getattr(m, "bias", None) is not None:
                nn.init.constant_(m.bias, 0.0)


@torch.no_grad()
def converge_sn(net: nn.Module, iters: int = 30) -> None:
    """Run spectral-norm power iterations to convergence on every SN layer of ``net``. torch
    starts u/v at random and does one iteration per training forward, so a fresh layer's sigma
    is underestimated; harmless for NVlabs' 2-conv PatchGAN, but through the ~20 SN convs in
    series of the OASIS D the overestimated gains multiply and the logits explode in the first
    steps."""
    for m in net.modules():
        if hasattr(m, "weight_orig") and hasattr(m, "weight_u"):
            w = m.weight_orig.reshape(m.weight_orig.shape[0], -1)
            u, v = m.weight_u, m.weight_v
            for _ in range(iters):
                v.copy_(F.normalize(w.t() @ u, dim=0, eps=1e-12))
                u.copy_(F.normalize(w @ v, dim=0, eps=1e-12))


def build_models(arch: dict, k: int):
    opt = g_options(arch["size"], arch["ngf"], arch["use_vae"], k, arch.get("noise", 0.0))
    G = sr.SPADEGenerator(opt)
    if arch.get("d", "patch") == "oasis":
        D = OasisDiscriminator(k, arch["ndf"], arch["size"])
    else:
        D = MultiscaleDiscriminator(k + 3, arch["ndf"], arch["n_layers_d"], arch["num_d"])
    E = sr.ConvEncoder(e_options(opt)) if arch["use_vae"] else None
    oasis = arch.get("d", "patch") == "oasis"
    for net in (G, D, E):
        if net is not None:
            if not (oasis and net is D):
                init_weights(net)
            net.train()
    if oasis:  # torch's default init: see OasisDiscriminator
        converge_sn(D)
    return opt, G, D, E


# ------------------------------------------------------------------------------------------
# Losses (NVlabs models/networks/loss.py, hinge)
# ------------------------------------------------------------------------------------------


def hinge_d(preds: list[list[torch.Tensor]], real: bool) -> torch.Tensor:
    loss = 0.0
    for p in preds:
        x = p[-1]
        loss = loss + (F.relu(1 - x).mean() if real else F.relu(1 + x).mean())
    return loss / len(preds)


def _luma(img: torch.Tensor) -> torch.Tensor:
    return (0.299 * img[:, 0] + 0.587 * img[:, 1] + 0.114 * img[:, 2])[:, None]


def band_stat(img: torch.Tensor, seg: torch.Tensor, min_run: int = 16) -> torch.Tensor:
    """Mean |second difference| of every class region's row-mean and column-mean luminance
    profiles (rows / columns holding >= min_run of the region's pixels), per sample and class:
    N x K. The quantity tools/quality_landscape.py reports as banding, made differentiable."""
    y = _luma(img)
    out = 0.0
    for dim in (3, 2):  # row profiles (mean over x), then column profiles (mean over y)
        cnt = seg.sum(dim)  # N K L
        prof = (seg * y).sum(dim) / cnt.clamp(min=1)
        ok = cnt >= min_run
        d2 = (prof[..., 2:] - 2 * prof[..., 1:-1] + prof[..., :-2]).abs()
        ok3 = ok[..., 2:] & ok[..., 1:-1] & ok[..., :-2]
        out = out + (d2 * ok3).sum(-1) / ok3.sum(-1).clamp(min=1)
    return out / 2


def detail_stat(img: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
    """Mean |4-neighbour Laplacian| of the luminance inside each class region eroded by one
    pixel, per sample and class: N x K (quality_landscape.py's detail)."""
    y = _luma(img)
    lap = (F.pad(y, (1, 1, 1, 1), mode="replicate").unfold(2, 3, 1).unfold(3, 3, 1)
           * torch.tensor([[0., 1, 0], [1, -4, 1], [0, 1, 0]])).sum((-1, -2)).abs()
    inner = -F.max_pool2d(-seg, 3, 1, 1)  # erosion of each one-hot channel
    return (inner * lap).sum((2, 3)) / inner.sum((2, 3)).clamp(min=1)


def stats_loss(fake, real, seg, w_band: float, w_detail: float):
    """Texture statistics of the paired render: banding above the render's is penalised, and
    the fine detail of each region is pulled to the render's (both per sample and class)."""
    present = (seg.sum((2, 3)) >= 64).float()
    n = present.sum().clamp(min=1)
    band = (F.relu(band_stat(fake, seg) - band_stat(real, seg)) * present).sum() / n
    det = ((detail_stat(fake, seg) - detail_stat(real, seg)).abs() * present).sum() / n
    return band * w_band, det * w_detail


def hinge_g(preds: list[list[torch.Tensor]]) -> torch.Tensor:
    return sum(-p[-1].mean() for p in preds) / len(preds)


def feat_match(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]], w: float) -> torch.Tensor:
    loss = 0.0
    for pf, pr in zip(fake, real):
        for a, b in zip(pf[:-1], pr[:-1]):
            loss = loss + F.l1_loss(a, b.detach()) * w / len(fake)
    return loss


def class_balance(seg: torch.Tensor) -> torch.Tensor:
    """OASIS class balancing: per-pixel weight N*H*W / (classes present * pixels of its class),
    computed over the batch; N x H x W."""
    occ = seg.sum((0, 2, 3))
    present = (occ > 0).sum()
    coef = seg[:, 0].numel() / (present * occ.clamp(min=1))
    return coef[seg.argmax(1)]


def oasis_loss(logits: torch.Tensor, seg: torch.Tensor, for_real: bool) -> torch.Tensor:
    """OASIS (N+1)-class loss. ``for_real``: target = class + 1, class-balanced (the D loss on
    real images and the G loss on fakes); else target = 0 ("fake"), unweighted."""
    lab = seg.argmax(1)
    if for_real:
        return (F.cross_entropy(logits, lab + 1, reduction="none") * class_balance(seg)).mean()
    return F.cross_entropy(logits, torch.zeros_like(lab))


def labelmix_mask(seg: torch.Tensor, gen: Optional[torch.Generator] = None) -> torch.Tensor:
    """OASIS LabelMix: every class of every image is taken from the real (1) or the fake (0)
    image at random. N x 1 x H x W float."""
    coin = torch.randint(0, 2, (seg.shape[0], seg.shape[1]), generator=gen).float()
    return (seg * coin[:, :, None, None]).sum(1, keepdim=True)


def load_safetensors_np(path: str) -> tuple[dict, dict]:
    """-> ({name: float32 ndarray}, metadata), int8 tensors dequantised with their
    ``.q8_scale`` (per output channel), as ``spadework repack --storage int8`` writes them."""
    import struct
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        buf = f.read()
    meta = hdr.pop("__metadata__", {}) or {}
    dt = {"F32": np.float32, "I8": np.int8, "F16": np.float16, "BF16": None}
    raw = {}
    for k, v in hdr.items():
        if dt.get(v["dtype"]) is None:
            raise SystemExit(f"{path}: {k} has unsupported dtype {v['dtype']}")
        b0, b1 = v["data_offsets"]
        raw[k] = np.frombuffer(buf[b0:b1], dt[v["dtype"]]).reshape(v["shape"])
    out = {}
    for k, v in raw.items():
        if k.endswith(".q8_scale"):
            continue
        if k + ".q8_scale" in raw:
            sc = raw[k + ".q8_scale"].astype(np.float32)
            v = v.astype(np.float32) * sc.reshape((-1,) + (1,) * (v.ndim - 1))
        out[k] = np.array(v, dtype=np.float32)  # an own, writable copy
    return out, meta


@torch.no_grad()
def load_folded(net: nn.Module, weights: dict, prefix: str = "", noise_init: float = 0.0) -> list[str]:
    """Load a converted model's weights (spectral norm folded: ``W / sigma``) into a module
    with spectral-norm layers: ``weight_orig`` = the folded weight and ``u``/``v`` converged by
    power iteration, so the module's effective weight is ``W / sigma_max(W)`` (equal to the
    folded weight when its top singular value is 1, as folding makes it). -> missing keys."""
    missing = []
    sd = net.state_dict()
    for k in sd:
        if k.endswith((".weight_u", ".weight_v")):
            continue
        src = k[:-len("_orig")] if k.endswith(".weight_orig") else k
        if prefix + src not in weights:
            if not k.endswith("num_batches_tracked"):
                missing.append(k)
            continue
        w = torch.from_numpy(weights[prefix + src])
        if (w.ndim == 4 and sd[k].ndim == 4 and w.shape[1] + 1 == sd[k].shape[1]
                and w.shape[0] == sd[k].shape[0]):
            # a model without the instance-edge input warm-starts one with it: the edge
            # channel's weights start at zero (the function is unchanged at step 0) or, with
            # noise_init r, at N(0, (r * std of the other inputs' weights)^2)
            new = torch.randn_like(w[:, :1]) * (noise_init * float(w.std()))
            w = torch.cat([w, new], 1)
        sd[k].copy_(w.reshape(sd[k].shape))
    net.load_state_dict(sd)
    converge_sn(net, 50)
    return missing


@torch.no_grad()
def generator_from_file(path: str):
    """A model file as ``spadework`` runs it -> (G, opt, cfg, classes): the PyTorch
    ``SPADEGenerator`` with the file's weights as they are (int8 dequantised; spectral norm
    removed, since the file stores the folded W / sigma), in eval mode."""
    w, meta = load_safetensors_np(path)
    cfg = json.loads(meta["spade_config"])
    classes = [(int(c["id"]), str(c["name"]), tuple(c["color"])) for c in cfg["classes"]]
    opt = g_options(cfg["crop_size"], cfg["ngf"], cfg["use_vae"], len(classes),
                    cfg.get("texture_field") or 0.0)
    G = sr.SPADEGenerator(opt)
    missing = load_folded(G, w)
    if missing:
        raise SystemExit(f"{path}: generator keys missing: {missing[:8]}")
    for name, m in G.named_modules():  # use the folded weight as it is, not / sigma again
        if hasattr(m, "weight_orig"):
            torch.nn.utils.remove_spectral_norm(m)
            m.weight.copy_(torch.from_numpy(w[name + ".weight"]).reshape(m.weight.shape))
    return G.eval(), opt, cfg, classes


def generator_from_checkpoint(ck: dict, ema: bool = True):
    """A train_landscape.py checkpoint (dict) -> (G, opt, classes, which): the PyTorch
    ``SPADEGenerator`` with its EMA weights when it has them and ``ema`` (which = "G_ema"),
    else G's (which = "G"), in eval mode."""
    arch = ck["arch"]
    classes = [(int(i), str(n), tuple(int(x) for x in c)) for i, n, c in ck["classes"]]
    opt = g_options(arch["size"], arch["ngf"], arch["use_vae"], len(classes), arch.get("noise", 0.0))
    which = "G_ema" if ema and ck.get("G_ema") is not None else "G"
    G = sr.SPADEGenerator(opt)
    G.load_state_dict(ck[which], strict=True)
    return G.eval(), opt, classes, which


def split_preds(preds: list[list[torch.Tensor]], n: int):
    fake = [[t[:n] for t in p] for p in preds]
    real = [[t[n:] for t in p] for p in preds]
    return fake, real


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)


# ------------------------------------------------------------------------------------------
# Trainer
# ------------------------------------------------------------------------------------------


class Trainer:
    def __init__(self, a: argparse.Namespace, arch: dict, classes, data: dict):
        self.a, self.arch, self.classes = a, arch, classes
        self.k = len(classes)
        random.seed(a.seed)
        torch.manual_seed(a.seed)  # before building: init and spectral-norm u/v draw from it
        self.opt, self.G, self.D, self.E = build_models(arch, self.k)
        self.oasis = arch.get("d", "patch") == "oasis"
        self.G_ema = None
        if a.ema > 0:
            self.G_ema = sr.SPADEGenerator(dataclasses.replace(self.opt))
            self.G_ema.load_state_dict(self.G.state_dict())
            self.G_ema.eval()
            set_requires_grad(self.G_ema, False)
        g_params = list(self.G.parameters()) + (list(self.E.parameters()) if self.E else [])
        self.optG = torch.optim.Adam(g_params, lr=a.lr_g, betas=(0.0, 0.9))
        self.optD = torch.optim.Adam(self.D.parameters(), lr=a.lr_d, betas=(0.0, 0.9))
        self.labels, self.images = data["train_labels"], data["train_images"]
        self.eval_labels, self.eval_images = data["eval_labels"], data["eval_images"]
        self.rng = np.random.default_rng(a.seed)
        self.perm, self.pos = self.rng.permutation(len(self.labels)), 0
        self.step = 0
        self.train_seconds = 0.0
        self.segnet = None
        if a.lambda_seg > 0:
            import segnet as sn  # tools/segnet.py
            if not a.seg_loss:
                raise SystemExit("--lambda-seg needs --seg-loss SEGNET.pt")
            self.segnet, meta = sn.load(a.seg_loss)
            seeds = meta.get("train_seeds", [sn.TRAIN_SEED0])
            if seeds[0] == sn.TRAIN_SEED0:
                raise SystemExit(f"--seg-loss {a.seg_loss} was trained on seeds {sn.TRAIN_SEED0}.., "
                                 "like the segmenter that scores the generator; train a second one "
                                 "(tools/segnet.py --train-seed0 2400000 --seed 1) for the loss")
            set_requires_grad(self.segnet, False)

    # ---- data ---------------------------------------------------------------------------
    def next_batch(self):
        idx = []
        while len(idx) < self.a.batch:
            if self.pos >= len(self.perm):
                self.perm, self.pos = self.rng.permutation(len(self.labels)), 0
            idx.append(int(self.perm[self.pos]))
            self.pos += 1
        lab, img = self.labels[idx], self.images[idx]
        if not self.a.no_flip:
            flip = self.rng.random(len(idx)) < 0.5
            lab = np.where(flip[:, None, None], lab[:, :, ::-1], lab)
            img = np.where(flip[:, None, None, None], img[:, :, ::-1], img)
        seg, real = to_tensors(lab, img, self.k)
        # a noise model gets one fresh field per sample; D is given seg[:, :k] (the map alone)
        seeds = self.rng.integers(0, 2**63, len(idx))
        return with_texture_field(seg, seeds, self.arch.get("noise", 0.0)), real

    # ---- one iteration --------------------------------------------------------------------
    def encode(self, real: torch.Tensor):
        mu, logvar = self.E(real)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) * self.a.lambda_kld
        return z, kld

    def discriminate(self, seg, fake, real):
        if self.oasis:  # the OASIS D sees the image only
            return split_preds(self.D(torch.cat([fake, real], 0)), fake.shape[0])
        seg = seg[:, :self.k]
        x = torch.cat([torch.cat([seg, fake], 1), torch.cat([seg, real], 1)], 0)
        return split_preds(self.D(x), fake.shape[0])

    def warm_start(self, path: str) -> None:
        """Initialise G (and E) from a converted ``.safetensors`` (spadework convert/repack
        output, e.g. assets/landscape.safetensors); D starts fresh."""
        w, meta = load_safetensors_np(path)
        cfg = json.loads(meta.get("spade_config", "{}"))
        for key, want in (("crop_size", self.arch["size"]), ("ngf", self.arch["ngf"]),
                          ("use_vae", self.arch["use_vae"]), ("label_nc", self.k)):
            if key in cfg and cfg[key] != want:
                raise SystemExit(f"--init-from {path}: {key} {cfg[key]} != {want}")
        miss = load_folded(self.G, w, noise_init=self.a.noise_init)
        if miss:
            raise SystemExit(f"--init-from {path}: generator keys missing: {miss[:8]}")
        if self.E is not None:
            miss = load_folded(self.E, w, "netE.")
            if miss:
                raise SystemExit(f"--init-from {path}: encoder keys missing: {miss[:8]}")
        if self.G_ema is not None:
            self.G_ema.load_state_dict(self.G.state_dict())
        print(f"initialised G{' and E' if self.E is not None else ''} from {path}", flush=True)

    def warm_start_d(self, path: str) -> None:
        """Initialise D (and its optimiser's moments) from another run's checkpoint with the
        same discriminator, e.g. a trained OASIS D next to a generator that gains an input."""
        ck = torch.load(path, map_location="cpu", weights_only=True)
        other = dict(ck["arch"])
        other.setdefault("d", "patch")
        for key in ("d", "ndf", "num_d", "n_layers_d", "size"):
            if other.get(key) != self.arch.get(key):
                raise SystemExit(f"--init-d-from {path}: {key} {other.get(key)} != {self.arch.get(key)}")
        self.D.load_state_dict(ck["D"], strict=True)
        self.optD.load_state_dict(ck["optD"])
        print(f"initialised D from {path} (step {ck['step']})", flush=True)

    @torch.no_grad()
    def update_ema(self) -> None:
        d = self.a.ema
        for pe, p in zip(self.G_ema.parameters(), self.G.parameters()):
            pe.lerp_(p, 1 - d)
        for be, b in zip(self.G_ema.buffers(), self.G.buffers()):
            be.copy_(b)  # BN running stats and spectral-norm u/v follow the trained G

    def seg_perceptual(self, fake, real):
        """The SPADE VGG loss with the features of a frozen second segmenter (tools/segnet.py
        --train-seed0 …) in place of VGG19's: L1 between fake's and the paired render's
        activations after each encoder block and the bottleneck, weighted 1/32 … 1 like VGG's."""
        with torch.no_grad():
            fr = self.segnet.encoder_features(real)
        ff = self.segnet.encoder_features(fake)
        loss = sum(w * F.l1_loss(a_, b_) for w, a_, b_ in zip((1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0), ff, fr))
        return loss * self.a.lambda_seg

    def recon_loss(self, fake, real):
        if self.a.l1_pool > 1:  # colours / light / layout only: texture is left to the D
            fake = F.avg_pool2d(fake, self.a.l1_pool)
            real = F.avg_pool2d(real, self.a.l1_pool)
        return F.l1_loss(fake, real) * self.a.lambda_l1

    def train_step(self) -> dict:
        a = self.a
        seg, real = self.next_batch()
        logs = {}
        # --- generator (+ encoder) ---
        if self.step < a.d_warmup:  # a fresh D next to a warm-started G: train D alone first
            with torch.no_grad():
                z = self.encode(real)[0] if self.E is not None else None
                fake = self.G(seg, z)
            return self.d_step(seg, fake, real, logs)
        set_requires_grad(self.D, False)
        self.optG.zero_grad(set_to_none=True)
        z, kld = (self.encode(real) if self.E is not None else (None, None))
        fake = self.G(seg, z)
        if self.oasis:
            g_gan = oasis_loss(self.D(fake)[0][-1], seg[:, :self.k], True)
            loss = g_gan
            logs.update(G_gan=g_gan)
        else:
            pf, pr = self.discriminate(seg, fake, real)
            g_gan = hinge_g(pf)
            g_feat = feat_match(pf, pr, a.lambda_feat)
            loss = g_gan + g_feat
            logs.update(G_gan=g_gan, G_feat=g_feat)
        if kld is not None:
            loss = loss + kld
            logs["KLD"] = kld
        if a.lambda_l1 > 0:
            l1 = self.recon_loss(fake, real)
            loss = loss + l1
            logs["L1"] = l1
        if a.lambda_band > 0 or a.lambda_detail > 0:
            band, det = stats_loss(fake, real, seg[:, :self.k], a.lambda_band, a.lambda_detail)
            loss = loss + band + det
            logs.update(band=band, detail=det)
        if self.segnet is not None:
            perc = self.seg_perceptual(fake, real)
            loss = loss + perc
            logs["seg"] = perc
        loss.backward()
        self.optG.step()
        set_requires_grad(self.D, True)
        if a.reuse_fake:
            fake = fake.detach()
        else:
            with torch.no_grad():
                z = self.encode(real)[0] if self.E is not None else None
                fake = self.G(seg, z)
        return self.d_step(seg, fake, real, logs)

    def d_step(self, seg, fake, real, logs) -> dict:
        a = self.a
        self.optD.zero_grad(set_to_none=True)
        if self.oasis:
            seg = seg[:, :self.k]
            n = fake.shape[0]
            imgs = [fake, real]
            mask = None
            if a.lambda_labelmix > 0:
                mask = labelmix_mask(seg)
                imgs.append(mask * real + (1 - mask) * fake)
            out = self.D(torch.cat(imgs, 0))[0][-1]
            of, orr = out[:n], out[n:2 * n]
            d_fake, d_real = oasis_loss(of, seg, False), oasis_loss(orr, seg, True)
            d_loss = d_fake + d_real
            if mask is not None:
                lm = F.mse_loss(out[2 * n:], mask * orr + (1 - mask) * of) * a.lambda_labelmix
                d_loss = d_loss + lm
                logs["D_lm"] = lm
            d_loss.backward()
        else:
            pf, pr = self.discriminate(seg, fake, real)
            d_fake, d_real = hinge_d(pf, False), hinge_d(pr, True)
            (d_fake + d_real).backward()
        self.optD.step()
        logs.update(D_fake=d_fake, D_real=d_real)
        if self.G_ema is not None:
            self.update_ema()
        self.step += 1
        return {k: float(v.detach()) for k, v in logs.items()}

    # ---- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "format": "spadework-landscape-v1",
            "step": self.step,
            "train_seconds": self.train_seconds,
            "arch": dict(self.arch),
            "classes": [[i, n, list(c)] for i, n, c in self.classes],
            "g_options": dataclasses.asdict(self.opt),
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "E": self.E.state_dict() if self.E is not None else None,
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "optG": self.optG.state_dict(),
            "optD": self.optD.state_dict(),
            "data": {"perm": torch.from_numpy(self.perm.astype(np.int64)), "pos": self.pos},
            "rng": {"torch": torch.get_rng_state(), "numpy": self.rng.bit_generator.state,
                    "python": random.getstate()},
            "hparams": {k: getattr(self.a, k) for k in ("batch", "lr_g", "lr_d", "lambda_feat",
                                                        "lambda_kld", "lambda_l1", "reuse_fake",
                                                        "l1_pool", "lambda_labelmix", "ema",
                                                        "init_from", "init_d_from", "d_warmup",
                                                        "lambda_band", "lambda_detail", "noise_init",
                                                        "lambda_seg", "seg_loss")},
        }

    def save(self) -> str:
        path = os.path.join(self.a.work, f"ckpt_{self.step:07d}.pt")
        tmp = path + f".tmp{os.getpid()}"
        torch.save(self.state(), tmp)
        os.replace(tmp, path)
        for old in list_checkpoints(self.a.work)[self.a.keep:]:
            os.remove(old[1])
        return path

    def load(self, ck: dict) -> None:
        self.G.load_state_dict(ck["G"], strict=True)
        self.D.load_state_dict(ck["D"], strict=True)
        if self.E is not None:
            self.E.load_state_dict(ck["E"], strict=True)
        if self.G_ema is not None:
            if ck.get("G_ema") is not None:
                self.G_ema.load_state_dict(ck["G_ema"], strict=True)
            else:  # EMA switched on for an existing run: start it at the current weights
                self.G_ema.load_state_dict(ck["G"], strict=True)
        self.optG.load_state_dict(ck["optG"])
        self.optD.load_state_dict(ck["optD"])
        for optim, lr in ((self.optG, self.a.lr_g), (self.optD, self.a.lr_d)):
            for g in optim.param_groups:
                g["lr"] = lr  # the command line wins for hyper-parameters
        self.step = int(ck["step"])
        self.train_seconds = float(ck.get("train_seconds", 0.0))
        self.perm, self.pos = ck["data"]["perm"].numpy(), int(ck["data"]["pos"])
        torch.set_rng_state(ck["rng"]["torch"])
        self.rng.bit_generator.state = ck["rng"]["numpy"]
        random.setstate(_as_tuple(ck["rng"]["python"]))

    # ---- sample grid -----------------------------------------------------------------------------
    @torch.no_grad()
    def sample_grid(self, path: str, n_train_rows: int = 2) -> None:
        nets = [n for n in (self.G, self.E) if n is not None]
        for n in nets:
            n.eval()  # BN running stats, no SN power iteration: what the export will do
        G = self.G_ema if self.G_ema is not None else self.G  # what the export takes
        try:
            labs = np.concatenate([self.eval_labels, self.labels[:n_train_rows]])
            imgs = np.concatenate([self.eval_images, self.images[:n_train_rows]])
            seg, real = to_tensors(labs, imgs, self.k)
            seg = with_texture_field(seg, range(len(labs)), self.arch.get("noise", 0.0))
            cols = [real]
            if self.E is not None:
                mu, _ = self.E(real)
                cols.append(G(seg, mu))
                gen = torch.Generator().manual_seed(1234)
                cols.append(G(seg, torch.randn(len(labs), Z_DIM, generator=gen)))
            else:
                cols.append(G(seg))
        finally:
            for n in nets:
                n.train()
        palette = np.array([c for _, _, c in self.classes], np.uint8)
        rows = []
        for i in range(len(labs)):
            cells = [palette[labs[i]]] + [sr.tensor2im(c[i]) for c in cols]
            rows.append(np.concatenate(cells, 1))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp.png"
        Image.fromarray(np.concatenate(rows, 0)).save(tmp)
        os.replace(tmp, path)


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def list_checkpoints(work: str) -> list[tuple[int, str]]:
    """(step, path), newest first."""
    out = []
    for p in glob.glob(os.path.join(work, "ckpt_*.pt")):
        m = re.fullmatch(r"ckpt_(\d+)\.pt", os.path.basename(p))
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out, reverse=True)


def load_latest(work: str) -> Optional[dict]:
    for step, p in list_checkpoints(work):
        try:
            return dict(torch.load(p, map_location="cpu", weights_only=True), _path=p)
        except Exception as e:  # noqa: BLE001 — fall back to the previous checkpoint
            print(f"warning: cannot read {p}: {e}", file=sys.stderr)
    return None


# ------------------------------------------------------------------------------------------
# Progress
# ------------------------------------------------------------------------------------------


class Progress:
    def __init__(self, start: int, total: int, budget_s: float):
        self.start, self.total, self.budget_s = start, total, budget_s
        self.t0 = time.time()
        self.last = 0.0
        self.ema: dict[str, float] = {}
        try:
            from tqdm import tqdm  # type: ignore
            self.bar = tqdm(total=total, initial=start, dynamic_ncols=True)
        except ImportError:
            self.bar = None

    def update(self, step: int, logs: dict, force: bool = False) -> None:
        for k, v in logs.items():
            self.ema[k] = v if k not in self.ema else 0.9 * self.ema[k] + 0.1 * v
        txt = " ".join(f"{k} {v:.3f}" for k, v in self.ema.items())
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix_str(txt, refresh=False)
            return
        now = time.time()
        if not force and now - self.last < 20 and step - self.start > 3:
            return
        self.last = now
        el = now - self.t0
        done = step - self.start
        ips = done / el if el > 0 else 0.0
        eta = (self.total - step) / ips if ips > 0 else float("inf")
        eta = min(eta, max(0.0, self.budget_s - el))
        print(f"step {step}/{self.total}  {ips:.3f} it/s  {el / 60:.1f} min  "
              f"ETA {eta / 60:.1f} min  {txt}", flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/work/landscape_run", help="run directory")
    p.add_argument("--world", default="landscape",
                   help="module name or .py path with CLASSES and sample(seed, size)")
    g = p.add_argument_group("architecture (default: the checkpoint's when resuming)")
    g.add_argument("--size", type=int, help=f"crop_size (default {DEFAULTS['size']})")
    g.add_argument("--ngf", type=int, help=f"(default {DEFAULTS['ngf']})")
    g.add_argument("--ndf", type=int, help="D width (default 64 for --d patch, 32 for oasis)")
    g.add_argument("--num-d", type=int, help=f"D scales (default {DEFAULTS['num_d']})")
    g.add_argument("--n-layers-d", type=int, help="(default 4 at size >= 256, else 3)")
    g.add_argument("--use-vae", action=argparse.BooleanOptionalAction, default=None,
                   help="ConvEncoder + KL + Linear fc (default on)")
    g.add_argument("--d", choices=("patch", "oasis"),
                   help="discriminator: NVlabs multiscale PatchGAN (default) or OASIS segmenter")
    g.add_argument("--noise", type=float,
                   help="texture-field density (0 = none, the default): the generator takes NVlabs' "
                        "instance-edge channel, fed the edges of seeded Bernoulli dots (texture_field)")
    g.add_argument("--n-train", type=int, help=f"training seeds [0, N) (default {DEFAULTS['n_train']})")
    p.add_argument("--n-eval", type=int, default=4, help="held-out seeds drawn in the grids")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=3000, help="total steps")
    p.add_argument("--max-minutes", type=float, default=120.0, help="wall-clock budget of this run")
    p.add_argument("--save-every", type=int, default=120, help="steps (~5 min at the defaults)")
    p.add_argument("--sample-every", type=int, default=120, help="steps")
    p.add_argument("--keep", type=int, default=2, help="checkpoints kept")
    p.add_argument("--lr-g", type=float, default=1e-4)
    p.add_argument("--lr-d", type=float, default=4e-4)
    p.add_argument("--lambda-feat", type=float, default=10.0)
    p.add_argument("--lambda-kld", type=float, default=0.05)
    p.add_argument("--lambda-l1", type=float, default=1.0, help="0 = pure SPADE objective")
    p.add_argument("--reuse-fake", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--l1-pool", type=int, default=1,
                   help="L1 on avg_pool(N) of fake and real (1 = per pixel, the original)")
    p.add_argument("--lambda-labelmix", type=float, default=10.0, help="OASIS D only")
    p.add_argument("--lambda-band", type=float, default=0.0,
                   help="penalty on banding above the paired render's (band_stat)")
    p.add_argument("--lambda-detail", type=float, default=0.0,
                   help="pull each region's fine detail to the paired render's (detail_stat)")
    p.add_argument("--lambda-seg", type=float, default=0.0,
                   help="perceptual loss (SPADE's VGG loss) on a second segmenter's features")
    p.add_argument("--seg-loss", metavar="SEGNET_PT",
                   help="that segmenter: tools/segnet.py trained with --train-seed0 (not the one "
                        "that scores)")
    p.add_argument("--noise-init", type=float, default=0.0,
                   help="with --init-from and --noise: initial edge-channel weights, relative std")
    p.add_argument("--d-warmup", type=int, default=0,
                   help="first N steps train D only (G frozen): for a fresh D next to --init-from")
    p.add_argument("--ema", type=float, default=0.0,
                   help="keep an EMA of G with this decay (e.g. 0.999); the export uses it")
    p.add_argument("--init-from", metavar="SAFETENSORS",
                   help="start G and E from a converted model (only when --work has no checkpoint)")
    p.add_argument("--init-d-from", metavar="CKPT",
                   help="start D from another run's checkpoint (only when --work has no checkpoint)")
    p.add_argument("--no-flip", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bench", type=int, default=0, metavar="N",
                   help="time N steps (after 2 warm-up steps) on the data, print it/s, save nothing")
    return p.parse_args(argv)


def resolve_arch(a: argparse.Namespace, ck: Optional[dict]) -> dict:
    given = {k: getattr(a, k) for k in ARCH_KEYS if getattr(a, k) is not None}
    if ck is not None:
        arch = dict(ck["arch"])
        arch.setdefault("d", "patch")  # checkpoints from before --d
        arch.setdefault("noise", 0.0)  # and before --noise
        bad = {k: (v, arch.get(k)) for k, v in given.items() if arch.get(k) != v}
        if bad:
            raise SystemExit(f"{ck['_path']} was trained with a different architecture "
                             f"(flag, checkpoint): {bad}; use another --work or matching flags")
        return arch
    arch = dict(DEFAULTS)
    arch.update(given)
    if arch.get("n_layers_d") is None:
        arch["n_layers_d"] = 4 if arch["size"] >= 256 else 3
    if arch.get("ndf") is None:
        arch["ndf"] = NDF_DEFAULT[arch["d"]]
    if arch["size"] % 32:
        raise SystemExit("--size must be a multiple of 32 (5 upsamplings from sw = size/32)")
    return arch


def main(argv=None) -> None:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    os.makedirs(a.work, exist_ok=True)
    ck = None if a.bench else load_latest(a.work)
    arch = resolve_arch(a, ck)
    world = load_world(a.world)
    classes = world_classes(world)
    if ck is not None:
        ck_classes = [(int(i), str(n), tuple(c)) for i, n, c in ck["classes"]]
        if ck_classes != classes:
            raise SystemExit(f"{ck['_path']}: CLASSES changed since the checkpoint was written")
    data = load_data(a.work, world, classes, arch["size"], arch["n_train"], a.n_eval)
    tr = Trainer(a, arch, classes, data)
    nparams = {n: sum(p.numel() for p in m.parameters())
               for n, m in (("G", tr.G), ("D", tr.D), ("E", tr.E)) if m is not None}
    print(f"arch {arch}  K={tr.k}  params {nparams}  batch {a.batch}  threads {a.threads}", flush=True)

    if a.bench:
        for _ in range(2):
            tr.train_step()
        t0 = time.perf_counter()
        for _ in range(a.bench):
            tr.train_step()
        dt = (time.perf_counter() - t0) / a.bench
        print(json.dumps({"s_per_step": round(dt, 3), "it_per_s": round(1 / dt, 4),
                          "img_per_s": round(a.batch / dt, 4),
                          "steps_in_2h": int(7200 / dt), "batch": a.batch, **arch}))
        return

    if ck is None and a.init_from:
        tr.warm_start(a.init_from)
    if ck is None and a.init_d_from:
        tr.warm_start_d(a.init_d_from)
    if ck is not None:
        tr.load(ck)
        print(f"resumed from {ck['_path']} (step {tr.step}, {tr.train_seconds / 60:.1f} min trained)")
        del ck
    stop = {"flag": False}

    def on_signal(signum, frame):  # finish the step, save, exit
        stop["flag"] = True
        print(f"\nsignal {signum}: stopping after this step", flush=True)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    t_start = time.time()
    budget = a.max_minutes * 60
    prog = Progress(tr.step, a.steps, budget)
    log = open(os.path.join(a.work, "log.jsonl"), "a")
    step_time = 0.0
    saved_at = tr.step
    try:
        while tr.step < a.steps and not stop["flag"]:
            if time.time() - t_start + 1.2 * step_time > budget:
                print("time budget reached")
                break
            t0 = time.time()
            logs = tr.train_step()
            dt = time.time() - t0
            step_time = dt if step_time == 0 else 0.9 * step_time + 0.1 * dt
            tr.train_seconds += dt
            prog.update(tr.step, logs)
            if tr.step % 10 == 0:
                log.write(json.dumps({"step": tr.step, "t": round(tr.train_seconds, 1), **logs}) + "\n")
                log.flush()
            if a.sample_every and tr.step % a.sample_every == 0:
                tr.sample_grid(os.path.join(a.work, "samples", f"step_{tr.step:06d}.png"))
            if a.save_every and tr.step % a.save_every == 0:
                tr.save()
                saved_at = tr.step
    finally:  # an exception propagates without saving a possibly half-updated state
        prog.close()
        log.close()
    if tr.step != saved_at or not list_checkpoints(a.work):
        path = tr.save()
        tr.sample_grid(os.path.join(a.work, "samples", f"step_{tr.step:06d}.png"))
        print(f"saved {path}")
    print(f"done: step {tr.step}/{a.steps}, {tr.train_seconds / 60:.1f} min trained in total; "
          f"export with: python3 {os.path.join(HERE, 'export_landscape.py')} --work {a.work}")


if __name__ == "__main__":
    main()
