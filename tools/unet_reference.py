#!/usr/bin/env python3
"""Fixtures for spadework's UNet2DConditionModel (tests/unet.rs): tiny diffusers
`UNet2DConditionModel`s with seeded random weights, run on the CPU in float32.

    python3 tools/unet_reference.py        # writes tests/fixtures/unet/<name>/

Needs torch, diffusers (0.42) and safetensors. Per fixture directory:

- `config.json`: the model's own config, as `save_config` writes `unet/config.json`;
- `diffusion_pytorch_model.safetensors`: the weights under diffusers' key names;
- `io.safetensors`: the inputs (`sample` [B, C, H, W], `timestep` [B] or [1], `encoder_hidden_states`
  [B, L, D], `class_labels` [B, P] for a `class_embed_type: "projection"` model) and the output
  diffusers computes (`expected` [B, out_channels, H, W]).

Every parameter is redrawn from a seeded uniform after construction (diffusers zero-initialises
some layers, and norms start at identity), so a wrong wiring of any tensor changes the output:
weights uniform in ±sqrt(3 / fan_in) (unit variance through a layer), norm scales in [0.5, 1.5),
biases and norm shifts in [-0.2, 0.2).
"""
import json
import os

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "unet")

# Shared by every fixture: two levels of widths 16 and 32, one resnet per level (two on the way
# up), 32-wide text tokens, GroupNorm over 8 groups (each fixture stays under 1.5 MB).
BASE = dict(
    block_out_channels=(16, 32),
    layers_per_block=1,
    cross_attention_dim=32,
    norm_num_groups=8,
    sample_size=16,
)

FIXTURES = {
    # SD 1.x: conv proj_in/proj_out, `attention_head_dim` an int that is really the head count
    # (16 / 4 = head size 4 at level 0, 32 / 4 = 8 at level 1), the last down block without
    # attention.
    "sd1": dict(
        config=dict(
            BASE,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            attention_head_dim=4,
        ),
        sample=(2, 4, 16, 16),
        tokens=7,
        timestep=[999.0, 17.0],
    ),
    # SD 2.x: linear proj_in/proj_out, a head count per level (head sizes 4 and 16), upcast
    # attention (a no-op in float32); attention at
    # both levels, two transformer layers at level 1.
    "sd2": dict(
        config=dict(
            BASE,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            attention_head_dim=(4, 2),
            use_linear_projection=True,
            upcast_attention=True,
            transformer_layers_per_block=(1, 2),
        ),
        sample=(2, 4, 16, 16),
        tokens=5,
        timestep=[500.0, 1.0],
    ),
    # The inpainting UNet: 9 input channels (latents, mask, masked-image latents), 4 out; an
    # H ≠ W sample; the sinusoid in sin-cos order with freq_shift 1.
    "inpaint": dict(
        config=dict(
            BASE,
            in_channels=9,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            attention_head_dim=4,
            flip_sin_to_cos=False,
            freq_shift=1,
        ),
        sample=(2, 9, 16, 8),
        tokens=6,
        timestep=[250.0, 750.0],
    ),
    # A pooled embedding added to the time embedding through a TimestepEmbedding MLP
    # (`class_embed_type: "projection"`); cross-attention only in the level-0 transformers; a
    # sample size that 2 does not divide (the upsampler takes the skip's size); mid resnets
    # scaled by mid_block_scale_factor.
    "class_proj": dict(
        config=dict(
            BASE,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            attention_head_dim=2,
            class_embed_type="projection",
            projection_class_embeddings_input_dim=24,
            only_cross_attention=(True, False),
            mid_block_scale_factor=1.5,
        ),
        sample=(2, 4, 9, 7),
        tokens=4,
        timestep=[42.0, 901.0],
        class_dim=24,
    ),
    # The less common options: centred input, right/bottom-padded downsampling, 1×1 conv_in and
    # 5×5 conv_out, a wider time embedding with SiLU after the MLP and after the sum, no mid
    # block, per-layer transformer depths with their own reversed list, and one timestep for the
    # whole batch.
    "options": dict(
        config=dict(
            BASE,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            attention_head_dim=4,
            center_input_sample=True,
            downsample_padding=0,
            conv_in_kernel=1,
            conv_out_kernel=5,
            time_embedding_dim=40,
            timestep_post_act="silu",
            time_embedding_act_fn="silu",
            mid_block_type=None,
            transformer_layers_per_block=[[1], [2]],
            reverse_transformer_layers_per_block=[[2, 1], [1, 1]],
        ),
        sample=(2, 4, 8, 8),
        tokens=3,
        timestep=[321.0],
    ),
}


def randomise(model, gen):
    """Redraws every parameter (see the module docstring)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            is_norm = any(k in name for k in ("norm", "conv_norm_out"))
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
    model = UNet2DConditionModel(**spec["config"]).eval()
    randomise(model, gen)
    b = spec["sample"][0]
    io = {
        "sample": torch.randn(spec["sample"], generator=gen),
        "timestep": torch.tensor(spec["timestep"], dtype=torch.float32),
        "encoder_hidden_states": torch.randn(
            (b, spec["tokens"], spec["config"]["cross_attention_dim"]), generator=gen
        ),
    }
    kwargs = {}
    if "class_dim" in spec:
        io["class_labels"] = torch.randn((b, spec["class_dim"]), generator=gen)
        kwargs["class_labels"] = io["class_labels"]
    with torch.no_grad():
        out = model(
            io["sample"], io["timestep"], io["encoder_hidden_states"], **kwargs
        ).sample
    io["expected"] = out
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    model.save_config(d)
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(weights, os.path.join(d, "diffusion_pytorch_model.safetensors"))
    save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(d, "io.safetensors"))
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(
        f"{name}: {sum(v.numel() for v in weights.values())} parameters, out {tuple(out.shape)}, "
        f"|out| max {out.abs().max():.3f}, {size / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    torch.set_num_threads(1)
    for i, (name, spec) in enumerate(FIXTURES.items()):
        fixture(name, spec, 1000 + i)
