#!/usr/bin/env python3
"""Fixtures for spadework's AutoencoderKL (tests/vae.rs): tiny diffusers `AutoencoderKL`s with
seeded random weights, run on the CPU in float32.

    python3 tools/vae_reference.py        # writes tests/fixtures/vae/<name>/

Needs torch, diffusers (0.42) and safetensors. Per fixture directory:

- `config.json`: the model's own config, as `save_config` writes `vae/config.json`;
- `diffusion_pytorch_model.safetensors`: the weights under diffusers' key names;
- `io.safetensors`:
  - `image` [B, 3, H, W] in [-1, 1) and its posterior from `encode`: `mean`, `logvar` (clamped
    to [-30, 20]); `noise` and `sample` = mean + exp(logvar / 2) · noise;
  - `latents` [B, C, h, w] and `decoded` = `decode(latents)` (no tiling);
  - `tiled_latents` (larger than one tile) and `tiled_decoded`, diffusers' `tiled_decode` after
    `enable_tiling()` with `tile_latent_min_size` = `tile_latent` and `tile_sample_min_size` =
    `tile_latent` × the decoder's upscale factor (tile_overlap_factor 0.25), both stored as
    one-element tensors `tile_latent_min_size` and `tile_overlap_factor`.

Every parameter is redrawn from a seeded uniform after construction (diffusers zero-initialises
some layers, and norms start at identity), so a wrong wiring of any tensor changes the output:
weights uniform in ±sqrt(3 / fan_in), norm scales in [0.5, 1.5), biases and norm shifts in
[-0.2, 0.2).
"""
import os

import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "vae")

FIXTURES = {
    # SD's layout at a small width: DownEncoderBlock2D / UpDecoderBlock2D levels, the mid-block
    # attention (one head as wide as the last level), quant_conv and post_quant_conv; an H ≠ W
    # image; a tiled latent whose last row and column of tiles are one latent pixel wide.
    "sd": dict(
        config=dict(
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            block_out_channels=(16, 32),
            layers_per_block=1,
            norm_num_groups=8,
            latent_channels=4,
            sample_size=16,
        ),
        image=(2, 3, 16, 12),
        tiled=(1, 4, 10, 13),
        tile_latent=4,
    ),
    # Three levels (an 4× decoder), two resnets per level (three on the way up), no mid-block
    # attention and no quant convs, odd image size (the asymmetric pad shows), other channel
    # counts in and out.
    "plain": dict(
        config=dict(
            in_channels=3,
            out_channels=2,
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
            block_out_channels=(8, 16, 16),
            layers_per_block=2,
            norm_num_groups=4,
            latent_channels=3,
            sample_size=16,
            mid_block_add_attention=False,
            use_quant_conv=False,
            use_post_quant_conv=False,
            scaling_factor=0.5,
        ),
        image=(1, 3, 13, 18),
        tiled=(1, 3, 7, 9),
        tile_latent=4,
    ),
}


def randomise(model, gen):
    """Redraws every parameter (see the module docstring)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            is_norm = "norm" in name
            if leaf == "weight" and p.ndim >= 2:
                fan_in = p[0].numel()
                a = (3.0 / fan_in) ** 0.5
                p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * a)
            elif leaf == "weight" and is_norm:
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
            else:
                p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * 0.2)


def fixture(name, spec, seed):
    gen = torch.Generator().manual_seed(seed)
    vae = AutoencoderKL(**spec["config"]).eval()
    randomise(vae, gen)
    levels = len(spec["config"]["block_out_channels"])
    factor = 2 ** (levels - 1)
    lc = spec["config"]["latent_channels"]
    io = {"image": torch.rand(spec["image"], generator=gen) * 2 - 1}
    b, _, h, w = spec["image"]
    with torch.no_grad():
        post = vae.encode(io["image"]).latent_dist
        io["mean"], io["logvar"] = post.mean, post.logvar
        io["noise"] = torch.randn(post.mean.shape, generator=gen)
        io["sample"] = post.mean + post.std * io["noise"]
        io["latents"] = torch.randn(post.mean.shape, generator=gen)
        io["decoded"] = vae.decode(io["latents"]).sample
        io["tiled_latents"] = torch.randn(spec["tiled"], generator=gen)
        vae.enable_tiling()
        vae.tile_latent_min_size = spec["tile_latent"]
        vae.tile_sample_min_size = spec["tile_latent"] * factor
        io["tiled_decoded"] = vae.decode(io["tiled_latents"]).sample
        vae.disable_tiling()
        untiled = vae.decode(io["tiled_latents"]).sample
    io["tile_latent_min_size"] = torch.tensor([float(spec["tile_latent"])])
    io["tile_overlap_factor"] = torch.tensor([vae.tile_overlap_factor])
    assert io["mean"].shape[1] == lc
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    vae.save_config(d)
    weights = {k: v.contiguous() for k, v in vae.state_dict().items()}
    save_file(weights, os.path.join(d, "diffusion_pytorch_model.safetensors"))
    save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(d, "io.safetensors"))
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    tiling = (io["tiled_decoded"] - untiled).abs().max()
    print(
        f"{name}: {sum(v.numel() for v in weights.values())} parameters, latent "
        f"{tuple(post.mean.shape)}, decoded {tuple(io['decoded'].shape)}, tiled "
        f"{tuple(io['tiled_decoded'].shape)} (tiled − untiled max {tiling:.3f}), "
        f"{size / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    torch.set_num_threads(1)
    for i, (name, spec) in enumerate(FIXTURES.items()):
        fixture(name, spec, 2000 + i)
