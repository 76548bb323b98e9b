#!/usr/bin/env python3
"""Plain-PyTorch reference of the NVlabs SPADE/GauGAN generator (inference only).

Written from /work/shared/SPADE_SPEC.md (not copied from NVlabs). The module tree is built so
that ``state_dict()`` keys, order, shapes and dtypes equal the NVlabs checkpoints
(spec §3.1 / Appendix A), so official ``latest_net_G.pth`` files load with ``strict=True``.

Contents
--------
* ``Options`` / ``PRESETS``            NVlabs option names and the three published test configs.
* ``SPADE``, ``SPADEResnetBlock``, ``SPADEGenerator``, ``ConvEncoder``.
* ``load_label_map``, ``load_instance_map``, ``get_edges``, ``make_semantics``,
  ``load_style_image``, ``tensor2im``  — the test-time input/output pipeline (spec §4, §5).
* ``init_like_trained``                  — random init imitating a trained checkpoint (spec §9).
* CLI: ``--self-test`` and ``render`` (see ``--help``).

Everything here runs in eval mode: BatchNorm uses running statistics, spectral norm uses the
stored u/v without power iteration (spec §7).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
from collections import OrderedDict
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

NHIDDEN = 128  # SPADE hidden width, hard-coded in NVlabs
BN_EPS = 1e-5

# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Options:
    """Subset of NVlabs options that matter for netG/netE at test time."""

    label_nc: int = 182
    contain_dontcare_label: bool = False
    no_instance: bool = False
    crop_size: int = 256
    aspect_ratio: float = 1.0
    num_upsampling_layers: str = "normal"  # 'normal' | 'more' | 'most'
    use_vae: bool = False
    z_dim: int = 256
    ngf: int = 64
    norm_G: str = "spectralspadesyncbatch3x3"
    norm_E: str = "spectralinstance"

    # ---- derived quantities -------------------------------------------------------------
    @property
    def label_channels(self) -> int:
        """One-hot channel count (labels + optional dontcare)."""
        return self.label_nc + (1 if self.contain_dontcare_label else 0)

    @property
    def semantic_nc(self) -> int:
        return self.label_channels + (0 if self.no_instance else 1)

    @property
    def num_up_layers(self) -> int:
        try:
            return {"normal": 5, "more": 6, "most": 7}[self.num_upsampling_layers]
        except KeyError:
            raise ValueError(f"bad num_upsampling_layers {self.num_upsampling_layers!r}")

    @property
    def sw(self) -> int:
        return self.crop_size // (2 ** self.num_up_layers)

    @property
    def sh(self) -> int:
        return round(self.sw / self.aspect_ratio)  # Python round (banker's), as NVlabs

    @property
    def out_hw(self) -> tuple[int, int]:
        n = 2 ** self.num_up_layers
        return self.sh * n, self.sw * n

    @property
    def load_hw(self) -> tuple[int, int]:
        """(H, W) the label/instance/style PNGs are resized to (PIL), spec §4.1."""
        w = self.crop_size
        return round(w / self.aspect_ratio), w

    def validate(self) -> None:
        if self.sw < 1 or self.sh < 1:
            raise ValueError(
                f"first-layer size sh x sw = {self.sh} x {self.sw} is empty "
                f"(crop_size {self.crop_size}, aspect {self.aspect_ratio}, "
                f"{self.num_upsampling_layers})")
        if self.num_upsampling_layers == "most" and self.ngf < 2:
            raise ValueError("num_upsampling_layers 'most' needs ngf >= 2 (up_4 has ngf//2 outputs)")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


PRESETS: dict[str, dict] = {
    "ade20k": dict(label_nc=150, contain_dontcare_label=True, no_instance=True, crop_size=256,
                   aspect_ratio=1.0, num_upsampling_layers="normal"),
    "coco": dict(label_nc=182, contain_dontcare_label=True, no_instance=False, crop_size=256,
                 aspect_ratio=1.0, num_upsampling_layers="normal"),
    "cityscapes": dict(label_nc=35, contain_dontcare_label=False, no_instance=False, crop_size=512,
                       aspect_ratio=2.0, num_upsampling_layers="more"),
}


def preset_options(name: str, **overrides) -> Options:
    d = dict(PRESETS[name])
    d.update(overrides)
    return Options(**d)


def add_config_args(p: argparse.ArgumentParser) -> None:
    """The Rust CLI's config flags (kebab-case NVlabs names) plus ``--ngf`` (reference only)."""
    p.add_argument("--preset", choices=sorted(PRESETS))
    p.add_argument("--label-nc", type=int)
    p.add_argument("--contain-dontcare-label", action="store_true", default=None)
    p.add_argument("--no-instance", action="store_true", default=None)
    p.add_argument("--crop-size", type=int)
    p.add_argument("--aspect-ratio", type=float)
    p.add_argument("--num-upsampling-layers", choices=["normal", "more", "most"])
    p.add_argument("--use-vae", action="store_true", default=None)
    p.add_argument("--z-dim", type=int)
    p.add_argument("--norm-g")
    p.add_argument("--ngf", type=int, help="default: inferred from the checkpoint (else 64)")


def options_from_args(a: argparse.Namespace) -> Options:
    o = preset_options(a.preset) if a.preset else Options()
    for attr, field in [("label_nc", "label_nc"), ("contain_dontcare_label", "contain_dontcare_label"),
                        ("no_instance", "no_instance"), ("crop_size", "crop_size"),
                        ("aspect_ratio", "aspect_ratio"),
                        ("num_upsampling_layers", "num_upsampling_layers"),
                        ("use_vae", "use_vae"), ("z_dim", "z_dim"), ("norm_g", "norm_G"),
                        ("ngf", "ngf")]:
        v = getattr(a, attr, None)
        if v is not None:
            setattr(o, field, v)
    return o


def options_to_cli(o: Options) -> list[str]:
    """Explicit Rust-CLI flags describing ``o`` (ngf omitted: the converter infers it)."""
    args = ["--label-nc", str(o.label_nc)]
    if o.contain_dontcare_label:
        args.append("--contain-dontcare-label")
    if o.no_instance:
        args.append("--no-instance")
    args += ["--crop-size", str(o.crop_size), "--aspect-ratio", repr(float(o.aspect_ratio)),
             "--num-upsampling-layers", o.num_upsampling_layers]
    if o.use_vae:
        args.append("--use-vae")
    args += ["--z-dim", str(o.z_dim), "--norm-g", o.norm_G]
    return args


def infer_ngf(sd: dict, o: Options) -> int:
    w = sd["fc.weight"]
    if o.use_vae:
        return w.shape[0] // (16 * o.sh * o.sw)
    return w.shape[0] // 16


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------


def parse_spade_config(norm_G: str) -> tuple[str, int]:
    m = re.search(r"spade(\D+)(\d)x\d", norm_G)
    if m is None:
        raise ValueError(f"norm_G {norm_G!r} does not match spade(\\D+)(\\d)x\\d")
    return m.group(1), int(m.group(2))


class SPADE(nn.Module):
    """out = param_free_norm(x) * (1 + gamma(seg)) + beta(seg)."""

    def __init__(self, norm_G: str, norm_nc: int, label_nc: int):
        super().__init__()
        norm_type, ks = parse_spade_config(norm_G)
        if norm_type == "instance":
            self.param_free_norm = nn.InstanceNorm2d(norm_nc, affine=False)
        elif norm_type in ("batch", "syncbatch"):
            # eval-mode SynchronizedBatchNorm2d == F.batch_norm with running stats (spec §2.2)
            self.param_free_norm = nn.BatchNorm2d(norm_nc, affine=False)
        else:
            raise ValueError(f"unsupported param-free norm {norm_type!r}")
        pw = ks // 2
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, NHIDDEN, ks, padding=pw), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(NHIDDEN, norm_nc, ks, padding=pw)
        self.mlp_beta = nn.Conv2d(NHIDDEN, norm_nc, ks, padding=pw)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        n = self.param_free_norm(x)
        if seg.shape[2:] != x.shape[2:]:
            seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")  # top-left rule, §4.3
        a = self.mlp_shared(seg)
        return n * (1 + self.mlp_gamma(a)) + self.mlp_beta(a)


def _maybe_sn(layer: nn.Module, use_sn: bool) -> nn.Module:
    return nn.utils.spectral_norm(layer) if use_sn else layer


class SPADEResnetBlock(nn.Module):
    def __init__(self, fin: int, fout: int, opt: Options):
        super().__init__()
        self.learned_shortcut = fin != fout
        fmid = min(fin, fout)
        use_sn = "spectral" in opt.norm_G
        # creation order == NVlabs key order: conv_0, conv_1, conv_s, norm_0, norm_1, norm_s
        self.conv_0 = _maybe_sn(nn.Conv2d(fin, fmid, 3, padding=1), use_sn)
        self.conv_1 = _maybe_sn(nn.Conv2d(fmid, fout, 3, padding=1), use_sn)
        if self.learned_shortcut:
            self.conv_s = _maybe_sn(nn.Conv2d(fin, fout, 1, bias=False), use_sn)
        spade_cfg = opt.norm_G.replace("spectral", "")
        self.norm_0 = SPADE(spade_cfg, fin, opt.semantic_nc)
        self.norm_1 = SPADE(spade_cfg, fmid, opt.semantic_nc)
        if self.learned_shortcut:
            self.norm_s = SPADE(spade_cfg, fin, opt.semantic_nc)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        skip = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x  # no activation
        h = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        h = self.conv_1(F.leaky_relu(self.norm_1(h, seg), 0.2))
        return skip + h


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class SPADEGenerator(nn.Module):
    def __init__(self, opt: Options):
        super().__init__()
        opt.validate()
        self.opt = opt
        nf = opt.ngf
        self.sw, self.sh = opt.sw, opt.sh
        if opt.use_vae:
            self.fc = nn.Linear(opt.z_dim, 16 * nf * self.sh * self.sw)
        else:
            self.fc = nn.Conv2d(opt.semantic_nc, 16 * nf, 3, padding=1)
        self.head_0 = SPADEResnetBlock(16 * nf, 16 * nf, opt)
        self.G_middle_0 = SPADEResnetBlock(16 * nf, 16 * nf, opt)
        self.G_middle_1 = SPADEResnetBlock(16 * nf, 16 * nf, opt)
        self.up_0 = SPADEResnetBlock(16 * nf, 8 * nf, opt)
        self.up_1 = SPADEResnetBlock(8 * nf, 4 * nf, opt)
        self.up_2 = SPADEResnetBlock(4 * nf, 2 * nf, opt)
        self.up_3 = SPADEResnetBlock(2 * nf, 1 * nf, opt)
        final_nc = nf
        if opt.num_upsampling_layers == "most":
            self.up_4 = SPADEResnetBlock(nf, nf // 2, opt)
            final_nc = nf // 2
        self.conv_img = nn.Conv2d(final_nc, 3, 3, padding=1)

    def forward(self, seg: torch.Tensor, z: Optional[torch.Tensor] = None,
                return_pre_tanh: bool = False) -> torch.Tensor:
        opt = self.opt
        if opt.use_vae:
            if z is None:
                z = torch.randn(seg.shape[0], opt.z_dim, dtype=torch.float32, device=seg.device)
            x = self.fc(z).view(-1, 16 * opt.ngf, self.sh, self.sw)
        else:
            x = F.interpolate(seg, size=(self.sh, self.sw), mode="nearest")
            x = self.fc(x)
        x = self.head_0(x, seg)
        x = _up(x)
        x = self.G_middle_0(x, seg)
        if opt.num_upsampling_layers in ("more", "most"):
            x = _up(x)
        x = self.G_middle_1(x, seg)
        x = self.up_0(_up(x), seg)
        x = self.up_1(_up(x), seg)
        x = self.up_2(_up(x), seg)
        x = self.up_3(_up(x), seg)
        if opt.num_upsampling_layers == "most":
            x = self.up_4(_up(x), seg)
        x = self.conv_img(F.leaky_relu(x, 0.2))
        return x if return_pre_tanh else torch.tanh(x)


class ConvEncoder(nn.Module):
    """netE (spec §5): 6 stride-2 SN convs (no bias) + InstanceNorm, fc_mu / fc_var."""

    def __init__(self, opt: Options):
        super().__init__()
        self.opt = opt
        if not opt.norm_E.startswith("spectral") or opt.norm_E[len("spectral"):] != "instance":
            raise ValueError(f"only norm_E 'spectralinstance' is supported, got {opt.norm_E!r}")
        ndf = opt.ngf  # NVlabs uses ngf, not nef
        chans = [3, ndf, ndf * 2, ndf * 4, ndf * 8, ndf * 8, ndf * 8]
        nlayers = 6 if opt.crop_size >= 256 else 5
        for k in range(1, nlayers + 1):
            conv = nn.utils.spectral_norm(nn.Conv2d(chans[k - 1], chans[k], 3, stride=2, padding=1,
                                                    bias=False))
            setattr(self, f"layer{k}", nn.Sequential(conv, nn.InstanceNorm2d(chans[k], affine=False)))
        self.nlayers = nlayers
        self.s0 = 4
        self.fc_mu = nn.Linear(ndf * 8 * self.s0 * self.s0, 256)
        self.fc_var = nn.Linear(ndf * 8 * self.s0 * self.s0, 256)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[2] != 256 or x.shape[3] != 256:
            x = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False)
        x = self.layer1(x)
        for k in range(2, self.nlayers + 1):
            x = getattr(self, f"layer{k}")(F.leaky_relu(x, 0.2))
        x = F.leaky_relu(x, 0.2).reshape(x.shape[0], -1)
        return self.fc_mu(x), self.fc_var(x)


# --------------------------------------------------------------------------------------------
# Input / output pipeline (spec §4)
# --------------------------------------------------------------------------------------------

LABEL_MODES = ("L", "P")
INSTANCE_MODES = ("L", "P", "I;16", "I;16B", "I;16L", "I")


def _open_resized(path: str, opt: Options, allowed: tuple[str, ...], what: str) -> np.ndarray:
    img = Image.open(path)
    img.load()
    if img.mode not in allowed:
        raise ValueError(f"{what} {path}: unsupported PNG mode {img.mode!r} (want {allowed})")
    h, w = opt.load_hw
    img = img.resize((w, h), Image.NEAREST)  # PIL center-aligned nearest (spec §4.1)
    return np.array(img).astype(np.int64)


def load_label_map(path: str, opt: Options) -> np.ndarray:
    """Label ids (H, W) int64 after PIL-nearest resize and 255 -> label_nc; 'P' gives indices."""
    lab = _open_resized(path, opt, LABEL_MODES, "label map")
    lab[lab == 255] = opt.label_nc
    bad = lab >= opt.label_channels
    if bad.any():
        raise ValueError(f"label map {path}: value {int(lab[bad].max())} >= one-hot channel "
                         f"count {opt.label_channels}")
    return lab


def load_instance_map(path: str, opt: Options) -> np.ndarray:
    return _open_resized(path, opt, INSTANCE_MODES, "instance map")


def get_edges(inst: np.ndarray) -> np.ndarray:
    """1 where any in-image 4-neighbour has a different id (spec §4.2); float32."""
    e = np.zeros(inst.shape, dtype=bool)
    dh = inst[:, 1:] != inst[:, :-1]
    e[:, 1:] |= dh
    e[:, :-1] |= dh
    dv = inst[1:, :] != inst[:-1, :]
    e[1:, :] |= dv
    e[:-1, :] |= dv
    return e.astype(np.float32)


def make_semantics(label: np.ndarray, opt: Options, inst: Optional[np.ndarray] = None) -> torch.Tensor:
    """(1, semantic_nc, H, W) float32: one-hot then (if instances) the edge channel last."""
    lab = torch.from_numpy(np.ascontiguousarray(label)).long()
    h, w = lab.shape
    onehot = torch.zeros(1, opt.label_channels, h, w, dtype=torch.float32)
    onehot.scatter_(1, lab[None, None], 1.0)
    if opt.no_instance:
        return onehot
    if inst is None:
        raise ValueError("this config uses instance maps (no_instance is False): pass --instance")
    edge = torch.from_numpy(get_edges(inst))[None, None]
    return torch.cat([onehot, edge], dim=1)


def preprocess(label_path: str, opt: Options, instance_path: Optional[str] = None) -> torch.Tensor:
    lab = load_label_map(label_path, opt)
    inst = load_instance_map(instance_path, opt) if (instance_path and not opt.no_instance) else None
    return make_semantics(lab, opt, inst)


def load_style_image(path: str, opt: Options) -> torch.Tensor:
    """(1, 3, H, W) in [-1, 1]: RGB, BICUBIC resize to the load size (skipped if equal),
    ToTensor (/255) then Normalize(0.5, 0.5) = (x - 0.5) / 0.5, all f32."""
    img = Image.open(path).convert("RGB")
    h, w = opt.load_hw
    if img.size != (w, h):
        img = img.resize((w, h), Image.BICUBIC)
    t = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous().float().div(255)
    return ((t - 0.5) / 0.5)[None]


def tensor2im(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) or (1, 3, H, W) in [-1, 1] -> HWC uint8 with truncation (spec §4.4)."""
    a = x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float32)
    if a.ndim == 4:
        a = a[0]
    a = (np.transpose(a, (1, 2, 0)) + 1) / 2.0 * 255.0
    return np.clip(a, 0, 255).astype(np.uint8)


def save_png(arr: np.ndarray, path: str) -> None:
    Image.fromarray(arr, "RGB").save(path)


# --------------------------------------------------------------------------------------------
# Checkpoint helpers
# --------------------------------------------------------------------------------------------


def build_generator(opt: Options, device: str | torch.device = "cpu") -> SPADEGenerator:
    with torch.device(device):
        g = SPADEGenerator(opt)
    return g.eval()


def _torch_load(path: str) -> dict:
    with open(path, "rb") as f:
        is_zip = f.read(2) == b"PK"
    # mmap (zip format only) avoids a second in-memory copy of ~400 MB full-size checkpoints
    return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)


def load_generator(path: str, opt: Options) -> SPADEGenerator:
    """Strict load of an NVlabs-layout netG state dict (ngf inferred from ``fc.weight``)."""
    sd = _torch_load(path)
    opt = dataclasses.replace(opt, ngf=infer_ngf(sd, opt))
    g = build_generator(opt, "meta")
    g.load_state_dict(sd, strict=True, assign=True)
    return g.eval()


def load_encoder(path: str, opt: Options) -> ConvEncoder:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    e = ConvEncoder(dataclasses.replace(opt, ngf=sd["layer1.0.weight_orig"].shape[0])).eval()
    e.load_state_dict(sd, strict=True)
    return e


def save_checkpoint(sd: dict, path: str, serialization: str) -> None:
    if serialization not in ("legacy", "zip"):
        raise ValueError(serialization)
    torch.save(sd, path, _use_new_zipfile_serialization=(serialization == "zip"))


# --------------------------------------------------------------------------------------------
# Random init imitating a trained checkpoint (spec §9)
# --------------------------------------------------------------------------------------------


def quantize(t: torch.Tensor, bits: int) -> torch.Tensor:
    """Round to multiples of 2^-bits * s, s = power of two >= max|t| (exact in f32).
    Few significant bits -> the checkpoint compresses well; values stay 'random'."""
    m = float(t.abs().max()) if t.numel() else 0.0
    if m == 0.0 or bits <= 0:
        return t
    step = 2.0 ** (math.ceil(math.log2(m)) - bits)
    return torch.round(t / step) * step


def _sn_weight_name(mod: nn.Module) -> str:
    return "weight_orig" if hasattr(mod, "weight_orig") else "weight"


def _set_power_iteration_uv(mod: nn.Module, gen: torch.Generator) -> None:
    """u, v from 3..7 power iterations of weight_orig, torch's order (v then u); full precision."""
    w = mod.weight_orig.detach()
    wm = w.reshape(w.shape[0], -1)
    u = F.normalize(torch.randn(wm.shape[0], generator=gen), dim=0, eps=1e-12)
    iters = int(torch.randint(3, 8, (1,), generator=gen))
    for _ in range(iters):
        v = F.normalize(wm.t() @ u, dim=0, eps=1e-12)
        u = F.normalize(wm @ v, dim=0, eps=1e-12)
    mod.weight_u.copy_(u)
    mod.weight_v.copy_(v)


@torch.no_grad()
def init_like_trained(netG: SPADEGenerator, gen: torch.Generator, calib_seg: torch.Tensor,
                      calib_z: Optional[torch.Tensor] = None, qbits: int = 9,
                      target_pre_tanh_std: float = 0.55, bn_perturb: float = 0.1) -> dict:
    """Fill netG in place. Returns a few stats. ``calib_seg``: (N, semantic_nc, H, W)."""
    opt = netG.opt
    netG.eval()

    def rnd(shape, std):
        return torch.randn(shape, generator=gen) * std

    for name, mod in netG.named_modules():
        if not isinstance(mod, (nn.Conv2d, nn.Linear)):
            continue
        leaf = name.rsplit(".", 1)[-1]
        wname = _sn_weight_name(mod)
        w = getattr(mod, wname)
        fan_in = w[0].numel()
        if name == "fc":
            std = 1.0 / math.sqrt(opt.z_dim) if opt.use_vae else 0.35  # one-hot: ~9 active taps
            bstd = 0.1
        elif leaf == "0" and ".mlp_shared" in name:
            std, bstd = 0.15, 0.1  # input is one-hot (+ edge)
        elif leaf == "mlp_gamma":
            std, bstd = 0.9 / math.sqrt(fan_in), 0.05
        elif leaf == "mlp_beta":
            std, bstd = 1.4 / math.sqrt(fan_in), 0.1
        elif name == "conv_img":
            std, bstd = 1.0 / math.sqrt(fan_in), 0.02
        else:  # conv_0 / conv_1 / conv_s (spectral-normed or plain)
            std, bstd = 1.0 / math.sqrt(fan_in), 0.05
            if wname == "weight":  # no spectral norm: keep the scale sane
                std *= 1.2
        w.copy_(quantize(rnd(w.shape, std), qbits))
        if mod.bias is not None:
            mod.bias.copy_(quantize(rnd(mod.bias.shape, bstd), qbits))
        if wname == "weight_orig":
            _set_power_iteration_uv(mod, gen)

    # BN running stats: calibrated on calib_seg in one eval pass (each BN's pre-hook writes the
    # statistics of its actual input before it runs), then perturbed.
    bns = [m for m in netG.modules() if isinstance(m, nn.BatchNorm2d)]

    def pre_hook(mod, inp):
        x = inp[0]
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=True) if x[:, 0].numel() > 1 else torch.ones_like(mean)
        var = var.clamp_min(1e-4)
        mean = mean + bn_perturb * var.sqrt() * torch.randn(mean.shape, generator=gen)
        var = var * torch.exp(2 * bn_perturb * torch.randn(var.shape, generator=gen))
        mod.running_mean.copy_(mean)
        mod.running_var.copy_(var)
        mod.num_batches_tracked.fill_(int(torch.randint(10_000, 2_000_000, (1,), generator=gen)))

    feats: list[torch.Tensor] = []
    handles = [m.register_forward_pre_hook(pre_hook) for m in bns]
    handles.append(netG.conv_img.register_forward_pre_hook(lambda m, inp: feats.append(inp[0])))
    z = calib_z
    if opt.use_vae and z is None:
        z = torch.randn(calib_seg.shape[0], opt.z_dim, generator=gen)
    try:
        netG(calib_seg, z)  # one pass: every BN is calibrated just before it runs
    finally:
        for h in handles:
            h.remove()

    # conv_img scale/bias from the captured (calibrated) features: keep tanh out of saturation
    ci = netG.conv_img
    f = feats[0]
    pre = F.conv2d(f, ci.weight, ci.bias, padding=1)
    ci.weight.copy_(quantize(ci.weight * (target_pre_tanh_std / float(pre.std())), qbits))
    mean_c = F.conv2d(f, ci.weight, ci.bias, padding=1).mean(dim=(0, 2, 3))
    ci.bias.copy_(quantize(ci.bias - 0.8 * mean_c, qbits))
    out = torch.tanh(F.conv2d(f, ci.weight, ci.bias, padding=1))
    return {"calib_out_std": float(out.std()), "calib_out_absmax": float(out.abs().max())}


@torch.no_grad()
def init_encoder_like_trained(netE: ConvEncoder, gen: torch.Generator, qbits: int = 9) -> None:
    for name, mod in netE.named_modules():
        if not isinstance(mod, (nn.Conv2d, nn.Linear)):
            continue
        wname = _sn_weight_name(mod)
        w = getattr(mod, wname)
        fan_in = w[0].numel()
        std = (1.0 if isinstance(mod, nn.Conv2d) else 1.6) / math.sqrt(fan_in)
        if name == "fc_var":
            std *= 0.3
        w.copy_(quantize(torch.randn(w.shape, generator=gen) * std, qbits))
        if mod.bias is not None:
            mod.bias.copy_(quantize(torch.randn(mod.bias.shape, generator=gen) * 0.05, qbits))
        if wname == "weight_orig":
            _set_power_iteration_uv(mod, gen)


# ---- synthetic label / instance maps ---------------------------------------------------------


def synthetic_regions(h: int, w: int, n_regions: int, rng: np.random.Generator,
                      speckle: float = 0.01) -> np.ndarray:
    """Voronoi-like region ids (0..n_regions-1), int64 (h, w), plus isolated speckles."""
    pts = np.stack([rng.uniform(0, h, n_regions), rng.uniform(0, w, n_regions)], 1)
    yy, xx = np.mgrid[0:h, 0:w]
    # anisotropic, slightly wobbly distance so borders are not straight lines
    d = ((yy[None] - pts[:, 0, None, None]) ** 2 * 1.0 +
         (xx[None] - pts[:, 1, None, None]) ** 2 * 0.8 +
         25.0 * np.sin(0.07 * (xx[None] + yy[None]) + np.arange(n_regions)[:, None, None]))
    reg = np.argmin(d, axis=0).astype(np.int64)
    if speckle > 0:
        m = rng.random((h, w)) < speckle
        reg[m] = rng.integers(0, n_regions, int(m.sum()))
    return reg


def synthetic_label(h: int, w: int, n_values: int, rng: np.random.Generator, n_regions: int = 24,
                    speckle: float = 0.01) -> np.ndarray:
    reg = synthetic_regions(h, w, n_regions, rng, speckle=0)
    lut = rng.integers(0, n_values, n_regions)
    lab = lut[reg]
    if speckle > 0:
        m = rng.random((h, w)) < speckle
        lab[m] = rng.integers(0, n_values, int(m.sum()))
    return lab


def calibration_semantics(opt: Options, n: int, rng: np.random.Generator) -> torch.Tensor:
    h, w = opt.load_hw
    segs = [torch.zeros(0, opt.semantic_nc, h, w)]
    for _ in range(n):
        lab = synthetic_label(h, w, opt.label_channels, rng, n_regions=max(8, h * w // 400))
        inst = None if opt.no_instance else synthetic_regions(h, w, max(8, h * w // 300), rng, 0.0)
        segs.append(make_semantics(lab, opt, inst))
    return torch.cat(segs, 0)


def random_generator(opt: Options, seed: int, calib_batch: int = 2,
                     calib_extra: Optional[torch.Tensor] = None, **kw) -> tuple[SPADEGenerator, dict]:
    """Random netG imitating a trained one. BN statistics are calibrated on ``calib_batch``
    synthetic maps plus ``calib_extra`` (e.g. the test map itself, like real training data)."""
    gen = torch.Generator().manual_seed(seed)
    netG = build_generator(opt)
    calib = calibration_semantics(opt, calib_batch, np.random.default_rng(seed + 1))
    if calib_extra is not None:
        calib = torch.cat([calib_extra.to(calib.dtype), calib], 0)
    stats = init_like_trained(netG, gen, calib, **kw)
    return netG, stats


# --------------------------------------------------------------------------------------------
# Self-test
# --------------------------------------------------------------------------------------------


def expected_keys(opt: Options) -> list[str]:
    """NVlabs netG key order, generated independently of the module tree (spec §3.1)."""
    sn = "spectral" in opt.norm_G
    bn = parse_spade_config(opt.norm_G.replace("spectral", ""))[0] != "instance"
    keys = ["fc.weight", "fc.bias"]
    nf = opt.ngf
    blocks = [("head_0", 16, 16), ("G_middle_0", 16, 16), ("G_middle_1", 16, 16),
              ("up_0", 16, 8), ("up_1", 8, 4), ("up_2", 4, 2), ("up_3", 2, 1)]
    if opt.num_upsampling_layers == "most":
        blocks.append(("up_4", 1, 0.5))

    def conv(p, bias=True):
        if sn:  # spectral_norm re-registers the weight as weight_orig after the bias
            return ([f"{p}.bias"] if bias else []) + [f"{p}.weight_orig", f"{p}.weight_u",
                                                      f"{p}.weight_v"]
        return [f"{p}.weight"] + ([f"{p}.bias"] if bias else [])

    def spade(p):
        out = [f"{p}.param_free_norm.{k}" for k in ("running_mean", "running_var",
                                                     "num_batches_tracked")] if bn else []
        return out + [f"{p}.{m}.{k}" for m in ("mlp_shared.0", "mlp_gamma", "mlp_beta")
                      for k in ("weight", "bias")]

    for b, fi, fo in blocks:
        learned = fi != fo
        keys += conv(f"{b}.conv_0") + conv(f"{b}.conv_1")
        if learned:
            keys += conv(f"{b}.conv_s", bias=False)
        keys += spade(f"{b}.norm_0") + spade(f"{b}.norm_1")
        if learned:
            keys += spade(f"{b}.norm_s")
    return keys + ["conv_img.weight", "conv_img.bias"]


def _appendix_a(spec_path: str) -> Optional[list[tuple[str, list[int], str]]]:
    if not os.path.exists(spec_path):
        return None
    rows = []
    txt = open(spec_path, encoding="utf-8").read()
    txt = txt[txt.find("## Appendix A"):]
    for m in re.finditer(r"^\| (\d+) \| `([^`]+)` \| \[([\d, ]*)\] \| (\w+) \|", txt, re.M):
        shape = [int(s) for s in m.group(3).split(",") if s.strip()]
        rows.append((m.group(2), shape, m.group(4)))
    return rows


def self_test(spec_path: str = "/work/shared/SPADE_SPEC.md") -> None:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    ok = lambda msg: print(f"  ok  {msg}")  # noqa: E731

    # 1. full-size key layout on the meta device (no memory)
    param_counts = {"ade20k": 96_492_483, "coco": 97_480_899, "cityscapes": 93_048_003}
    for name, count in param_counts.items():
        opt = preset_options(name)
        g = build_generator(opt, "meta")
        sd = g.state_dict()
        keys = list(sd)
        assert len(keys) == 234, (name, len(keys))
        assert keys == expected_keys(opt), name
        n = sum(p.numel() for p in g.parameters())
        assert n == count, (name, n, count)
        nbuf = sum(b.numel() for b in g.buffers())
        ok(f"{name}: 234 keys in NVlabs order, {n:,} parameters, {nbuf:,} buffer scalars")
        if name == "ade20k":
            rows = _appendix_a(spec_path)
            if rows is None:
                print(f"  --  {spec_path} not found; Appendix A comparison skipped")
            else:
                assert len(rows) == 234, len(rows)
                for (k, shape, dt), (k2, t) in zip(rows, sd.items()):
                    assert k == k2, (k, k2)
                    assert list(t.shape) == shape, (k, list(t.shape), shape)
                    assert str(t.dtype) == "torch." + dt, (k, t.dtype, dt)
                ok("ade20k: keys, shapes and dtypes equal spec Appendix A")
    gv = build_generator(preset_options("ade20k", use_vae=True), "meta")
    nv = sum(p.numel() for p in gv.parameters())
    assert nv == 111_942_595, nv
    ne = sum(p.numel() for p in ConvEncoder(preset_options("ade20k")).to("meta").parameters())
    assert ne == 10_463_424, ne
    ek = list(ConvEncoder(preset_options("ade20k")).state_dict())
    assert ek == [f"layer{k}.0.weight_{s}" for k in range(1, 7) for s in ("orig", "u", "v")] + \
        ["fc_mu.weight", "fc_mu.bias", "fc_var.weight", "fc_var.bias"], ek
    ok(f"VAE netG {nv:,} params; netE {ne:,} params, keys {len(ek)}")

    # 2. key order for the other variants
    for kw in [dict(num_upsampling_layers="most"), dict(norm_G="spadebatch3x3"),
               dict(norm_G="spectralspadeinstance3x3"), dict(norm_G="spadesyncbatch5x5")]:
        opt = preset_options("cityscapes", ngf=4, **kw)
        assert list(build_generator(opt, "meta").state_dict()) == expected_keys(opt), kw
    ok("key order for most / spadebatch / spadeinstance / 5x5 variants")

    # 3. small numeric checks: eval semantics
    opt = Options(label_nc=6, contain_dontcare_label=True, no_instance=False, crop_size=128,
                  aspect_ratio=2.0, num_upsampling_layers="more", ngf=4)
    g, st = random_generator(opt, seed=3)
    seg = calibration_semantics(opt, 1, np.random.default_rng(9))
    before = {k: v.clone() for k, v in g.state_dict().items()}
    with torch.no_grad():
        y1 = g(seg)
        y2 = g(seg)
    assert torch.equal(y1, y2)
    for k, v in g.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed during eval forward"
    assert y1.shape == (1, 3) + opt.out_hw, y1.shape
    ok(f"eval forward deterministic, u/v/BN untouched, out {tuple(y1.shape)} std {float(y1.std()):.3f}")

    # folded plain-conv model reproduces the SN model (stored u, v; no power iteration)
    folded = OrderedDict()
    for k, v in g.state_dict().items():
        if k.endswith("num_batches_tracked") or k.endswith("weight_u") or k.endswith("weight_v"):
            continue
        if k.endswith("weight_orig"):
            p = k[: -len("weight_orig")]
            wm = v.reshape(v.shape[0], -1)
            sigma = torch.dot(before[p + "weight_u"], wm @ before[p + "weight_v"])
            folded[p + "weight"] = v / sigma
        else:
            folded[k] = v
    plain = build_generator(dataclasses.replace(opt, norm_G="spadesyncbatch3x3"))
    sd_plain = plain.state_dict()
    for k in sd_plain:
        if k.endswith("num_batches_tracked"):
            folded[k] = sd_plain[k]
    plain.load_state_dict(folded, strict=True)
    with torch.no_grad():
        d = float((plain(seg) - y1).abs().max())
    assert d < 1e-5, d
    ok(f"folded-SN model matches (max |d| {d:.2e}); {len(folded) - sum(k.endswith('num_batches_tracked') for k in folded)} folded tensors")

    # 4. pipeline pieces
    inst = np.array([[1, 1, 2], [1, 1, 2], [3, 3, 3]])
    assert get_edges(inst).tolist() == [[0, 1, 1], [1, 1, 1], [1, 1, 1]], get_edges(inst)
    assert tensor2im(torch.tensor([[[[-1.0, 0.0, 0.999, 1.0]]] * 3]))[0, :, 0].tolist() == [0, 127, 254, 255]
    ok("get_edges / tensor2im truncation")
    print("self-test passed")


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _cmd_render(a: argparse.Namespace) -> None:
    torch.set_num_threads(a.threads)
    opt = options_from_args(a)
    netG = load_generator(a.weights, opt)
    opt = netG.opt
    seg = preprocess(a.map, opt, a.instance)
    z = None
    if opt.use_vae:
        if a.z:
            z = torch.from_numpy(np.load(a.z).astype(np.float32)).reshape(1, -1)
        elif a.style:
            if not a.netE:
                raise SystemExit("--style needs --netE")
            netE = load_encoder(a.netE, opt)
            with torch.no_grad():
                z, _ = netE(load_style_image(a.style, opt))
        else:
            z = torch.randn(1, opt.z_dim, generator=torch.Generator().manual_seed(a.seed))
    with torch.no_grad():
        y = netG(seg, z)
    if a.raw:
        np.save(a.raw, y.numpy().astype(np.float32))
    if a.output:
        save_png(tensor2im(y), a.output)
    print(json.dumps({"shape": list(y.shape), "std": float(y.std()), "ngf": opt.ngf}))


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--self-test", action="store_true", help="check key layout / eval semantics")
    sub = p.add_subparsers(dest="cmd")
    r = sub.add_parser("render", help="run the reference on a NVlabs checkpoint")
    add_config_args(r)
    r.add_argument("--weights", required=True, help="latest_net_G.pth (NVlabs layout)")
    r.add_argument("--netE", help="latest_net_E.pth (for --style)")
    r.add_argument("--map", required=True)
    r.add_argument("--instance")
    r.add_argument("--style")
    r.add_argument("--z")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("-o", "--output")
    r.add_argument("--raw")
    r.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if a.self_test:
        self_test()
    elif a.cmd == "render":
        _cmd_render(a)
    else:
        p.print_help()
        sys.exit(2)


if __name__ == "__main__":
    main()
