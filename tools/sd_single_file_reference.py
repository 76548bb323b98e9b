#!/usr/bin/env python3
"""Fixtures for spadework's single-file Stable Diffusion checkpoints (tests/sd_pipeline.rs):
tiny random-weight pipelines written in the original LDM (CompVis / Stability) layout that
A1111 and ComfyUI users download, and diffusers' runs of the same weights.

    python3 tools/sd_single_file_reference.py   # writes tests/fixtures/sd/single_file/

Needs torch, numpy, diffusers (0.42), transformers (5) and safetensors.

What it writes (tests/fixtures/sd/single_file/):

- `sd1.safetensors`: an SD 1.x-style checkpoint (OpenAI CLIP text tower under
  `cond_stage_model.transformer.text_model.*` with its int64 `position_ids`, UNet under
  `model.diffusion_model.*` with conv proj_in/out, VAE under `first_stage_model.*` with 1×1-conv
  attention projections, LDM's schedule buffers `betas`, `alphas_cumprod`, … and a few
  `model_ema.*` tensors), float16.
- `sd2.ckpt`: an SD 2.x-style checkpoint as `torch.save` writes a PyTorch Lightning checkpoint:
  `{"state_dict": …, "global_step", "epoch", "pytorch-lightning_version", "callbacks":
  {ModelCheckpoint object}, "hparams": numpy scalars}`; OpenCLIP text tower under
  `cond_stage_model.model.*` (fused `in_proj_weight`, `text_projection`, one more residual block
  than the text encoder uses: SD 2.x reads the penultimate layer), linear proj_in/out, float16.
- `<name>_latents.npy` and `<name>_image.npy`: diffusers' `StableDiffusionPipeline` on the same
  weights (float32) with those latents, its scheduler the one spadework picks for such a file
  (SD 1.x: PNDM; SD 2.x: DDIM with v-prediction, as diffusers' `from_single_file` defaults), the
  image `vae.decode(latents / scaling_factor)` before clamping; `expected.json` the run's
  settings.
- `shapes.json`: for the real SD 1.5, SD 1.5 inpainting and SD 2.1 architectures (built on
  torch's meta device, no weights), the LDM key → shape table of a single-file checkpoint and
  the diffusers config fields spadework must infer from those shapes alone, and each
  component's diffusers key → shape table the converted names must reproduce.

The LDM names are produced by `to_ldm` below and checked by converting them back with
diffusers' own single-file converters (`diffusers.loaders.single_file_utils`): every tensor must
come back under its diffusers name, bit for bit.

The architecture constants spadework assumes for a single file (not visible in tensor shapes)
are those of every released SD 1.x / 2.x checkpoint: GroupNorm with 32 groups, CLIP text heads of
width 64, SD 1.x UNet attention with 8 heads, SD 2.x UNet attention heads of width 64. The tiny
models here follow them (so their widths are multiples of 32 and 64).
"""
import json
import os
import sys
import types

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.loaders import single_file_utils as sfu
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sd_pipeline_reference as ref  # noqa: E402

OUT = os.path.join(ref.ROOT, "tests", "fixtures", "sd", "single_file")
SCHED = dict(sfu.SCHEDULER_DEFAULT_CONFIG)

TEXT = dict(ref.TEXT, hidden_size=64, intermediate_size=128, num_attention_heads=1)
VAE = dict(
    block_out_channels=(32, 32),
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
    latent_channels=4,
    norm_num_groups=32,
    layers_per_block=1,
    sample_size=32,
)
FIXTURES = {
    "sd1": dict(
        unet=dict(
            sample_size=8,
            block_out_channels=(32, 32),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=64,
            attention_head_dim=8,
            norm_num_groups=32,
        ),
        text=dict(TEXT, hidden_act="quick_gelu", num_hidden_layers=2),
        clip="openai",
        pad="<|endoftext|>",
        scheduler=PNDMScheduler.from_config(SCHED),
        file="sd1.safetensors",
        steps=3,
        size=(32, 24),
    ),
    "sd2": dict(
        unet=dict(
            sample_size=8,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=64,
            attention_head_dim=(1, 1),
            use_linear_projection=True,
            upcast_attention=True,
            norm_num_groups=32,
        ),
        text=dict(TEXT, hidden_act="gelu", num_hidden_layers=2),
        clip="openclip",
        pad="!",
        scheduler=DDIMScheduler.from_config(dict(SCHED, prediction_type="v_prediction", clip_sample=False)),
        file="sd2.ckpt",
        steps=2,
        size=(24, 32),
    ),
}


# ------------------------------------------------------------------------------------------
# diffusers → LDM names
# ------------------------------------------------------------------------------------------

RESNET_UNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
               ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]


def unet_to_ldm(sd, cfg):
    """UNet2DConditionModel state dict → `model.diffusion_model.*`."""
    L = cfg["layers_per_block"]
    out = {}
    fixed = sfu.DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]
    for k, t in sd.items():
        p = k.split(".")
        if k in fixed:
            new = fixed[k]
        elif p[0] == "down_blocks":
            b = int(p[1])
            if p[2] == "downsamplers":
                new = f"input_blocks.{1 + b * (L + 1) + L}.0.op." + ".".join(p[5:])
            else:
                i = 1 + b * (L + 1) + int(p[3])
                new = f"input_blocks.{i}.{0 if p[2] == 'resnets' else 1}." + ".".join(p[4:])
        elif p[0] == "mid_block":
            i = {"resnets": 2 * int(p[2]), "attentions": 1}[p[1]]
            new = f"middle_block.{i}." + ".".join(p[3:])
        elif p[0] == "up_blocks":
            b = int(p[1])
            attn = "CrossAttn" in cfg["up_block_types"][b]
            if p[2] == "upsamplers":
                new = f"output_blocks.{b * (L + 1) + L}.{2 if attn else 1}.conv." + ".".join(p[5:])
            else:
                i = b * (L + 1) + int(p[3])
                new = f"output_blocks.{i}.{0 if p[2] == 'resnets' else 1}." + ".".join(p[4:])
        else:
            raise KeyError(k)
        if "resnets" in p[1:3]:
            for a, b_ in RESNET_UNET:
                new = new.replace(f".{a}.", f".{b_}.")
        out["model.diffusion_model." + new] = t
    return out


def vae_to_ldm(sd, cfg):
    """AutoencoderKL state dict → `first_stage_model.*` (attention projections as 1×1 convs)."""
    n = len(cfg["block_out_channels"])
    fixed = sfu.DIFFUSERS_TO_LDM_MAPPING["vae"]
    out = {}
    for k, t in sd.items():
        p = k.split(".")
        if k in fixed:
            new = fixed[k]
        elif p[1] == "down_blocks":
            if p[3] == "downsamplers":
                new = f"{p[0]}.down.{p[2]}.downsample.conv.{p[-1]}"
            else:
                new = f"{p[0]}.down.{p[2]}.block.{p[4]}." + ".".join(p[5:])
        elif p[1] == "up_blocks":
            i = n - 1 - int(p[2])
            if p[3] == "upsamplers":
                new = f"{p[0]}.up.{i}.upsample.conv.{p[-1]}"
            else:
                new = f"{p[0]}.up.{i}.block.{p[4]}." + ".".join(p[5:])
        elif p[1] == "mid_block" and p[2] == "resnets":
            new = f"{p[0]}.mid.block_{int(p[3]) + 1}." + ".".join(p[4:])
        elif p[1] == "mid_block" and p[2] == "attentions":
            leaf = ".".join(p[4:])
            leaf = {"group_norm.weight": "norm.weight", "group_norm.bias": "norm.bias",
                    "to_out.0.weight": "proj_out.weight", "to_out.0.bias": "proj_out.bias"}.get(leaf, leaf)
            leaf = leaf.replace("to_q.", "q.").replace("to_k.", "k.").replace("to_v.", "v.")
            new = f"{p[0]}.mid.attn_1.{leaf}"
            if t.ndim == 2:
                t = t[:, :, None, None]
        else:
            raise KeyError(k)
        out["first_stage_model." + new.replace("conv_shortcut", "nin_shortcut")] = t
    return out


def openai_clip_to_ldm(sd):
    return {"cond_stage_model.transformer." + (k if k.startswith("text_model.") else "text_model." + k): t
            for k, t in sd.items()}


def rand(shape, gen):
    """N(0, 1) rounded to float16 (shape only, on the meta device, without a generator)."""
    if gen is None:
        return torch.empty(shape, device="meta")
    return torch.randn(shape, generator=gen).half().float()


def open_clip_to_ldm(sd, extra_layer, gen):
    """CLIPTextModel → OpenCLIP `cond_stage_model.model.*`; `extra_layer` adds the last residual
    block SD 2.x's text encoder skips (random, never read), and a text_projection."""
    pre = "cond_stage_model.model."
    sd = {k.removeprefix("text_model."): t for k, t in sd.items()}
    out = {pre + "token_embedding.weight": sd.pop("embeddings.token_embedding.weight"),
           pre + "positional_embedding": sd.pop("embeddings.position_embedding.weight"),
           pre + "ln_final.weight": sd.pop("final_layer_norm.weight"),
           pre + "ln_final.bias": sd.pop("final_layer_norm.bias")}
    layers = sorted({int(k.split(".")[2]) for k in sd if k.startswith("encoder.layers.")})
    for i in layers:
        a = f"encoder.layers.{i}."
        b = f"{pre}transformer.resblocks.{i}."
        for w in ("weight", "bias"):
            out[b + f"attn.in_proj_{w}"] = torch.cat([sd.pop(a + f"self_attn.{q}_proj.{w}") for q in "qkv"])
            out[b + f"attn.out_proj.{w}"] = sd.pop(a + f"self_attn.out_proj.{w}")
            out[b + f"ln_1.{w}"] = sd.pop(a + f"layer_norm1.{w}")
            out[b + f"ln_2.{w}"] = sd.pop(a + f"layer_norm2.{w}")
            out[b + f"mlp.c_fc.{w}"] = sd.pop(a + f"mlp.fc1.{w}")
            out[b + f"mlp.c_proj.{w}"] = sd.pop(a + f"mlp.fc2.{w}")
    assert not sd, sorted(sd)
    if extra_layer:
        last = f"{pre}transformer.resblocks.{layers[-1]}."
        nxt = f"{pre}transformer.resblocks.{layers[-1] + 1}."
        for k in [k for k in out if k.startswith(last)]:
            out[nxt + k[len(last):]] = rand(out[k].shape, gen)
    width = out[pre + "ln_final.weight"].shape[0]
    out[pre + "text_projection"] = rand((width, width), gen)
    out[pre + "logit_scale"] = torch.full((), 4.6052, device=out[pre + "ln_final.weight"].device)
    return out


def check_round_trip(ldm, unet, vae, text, clip):
    """diffusers' own converters must give back every tensor under its diffusers name."""
    def same(mine, back, what):
        missing = sorted(set(mine) - set(back))
        assert not missing, f"{what}: diffusers does not recover {missing[:5]}"
        for k, t in mine.items():
            assert torch.equal(back[k].reshape(t.shape), t) and back[k].shape == t.shape, f"{what}: {k}"

    same(unet.state_dict(), sfu.convert_ldm_unet_checkpoint(ldm, dict(unet.config)), "unet")
    same(vae.state_dict(), sfu.convert_ldm_vae_checkpoint(ldm, dict(vae.config)), "vae")
    if clip == "openai":
        back = sfu.convert_ldm_clip_checkpoint(ldm)
    else:
        back = sfu.convert_open_clip_checkpoint(text, ldm)
    want = {k if k.startswith("text_model.") else "text_model." + k: t for k, t in text.state_dict().items()}
    same({k: t for k, t in want.items() if "position_ids" not in k}, back, "text encoder")


# ------------------------------------------------------------------------------------------
# A PyTorch Lightning checkpoint's non-tensor objects (pickled under their real module names)
# ------------------------------------------------------------------------------------------

def lightning_callback():
    mod = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")

    class ModelCheckpoint:
        def __init__(self):
            self.monitor = None
            self.best_model_score = None
            self.dirpath = "/fsx/logs/checkpoints"
            self.save_top_k = -1

    ModelCheckpoint.__module__ = mod.__name__
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    mod.ModelCheckpoint = ModelCheckpoint
    for name in ("pytorch_lightning", "pytorch_lightning.callbacks", mod.__name__):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules[mod.__name__] = mod
    return ModelCheckpoint()


def ldm_extras(gen):
    """What an LDM training checkpoint holds besides the three models."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    ac = torch.cumprod(1 - betas, 0)
    return {"betas": betas.float(), "alphas_cumprod": ac.float(),
            "alphas_cumprod_prev": torch.cat([torch.ones(1), ac[:-1].float()]),
            "model_ema.decay": torch.tensor(0.9999), "model_ema.num_updates": torch.tensor(1000, dtype=torch.int32),
            "model_ema.diffusion_modelinput_blocks00weight": torch.randn((4, 4, 3, 3), generator=gen)}


# ------------------------------------------------------------------------------------------


def shapes_table():
    """Real architectures' LDM key → shape tables and the config fields to infer."""
    cfgs = {
        "sd15": dict(unet={}, text="openai", width=768),
        "sd15_inpainting": dict(unet=dict(in_channels=9), text="openai", width=768),
        "sd21": dict(unet=dict(attention_head_dim=[5, 10, 20, 20], use_linear_projection=True,
                               cross_attention_dim=1024, upcast_attention=True, sample_size=96),
                     text="openclip", width=1024),
    }
    out = {}
    for name, c in cfgs.items():
        with torch.device("meta"):
            unet = UNet2DConditionModel(**dict(dict(cross_attention_dim=768, attention_head_dim=8), **c["unet"]))
            vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                                up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4)
            w = c["width"]
            layers = 12 if c["text"] == "openai" else 23
            text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=w, intermediate_size=4 * w,
                                                num_hidden_layers=layers, num_attention_heads=w // 64,
                                                hidden_act="quick_gelu" if c["text"] == "openai" else "gelu"))
        ldm = unet_to_ldm(unet.state_dict(), dict(unet.config))
        ldm.update(vae_to_ldm(vae.state_dict(), dict(vae.config)))
        if c["text"] == "openai":
            ldm.update(openai_clip_to_ldm(text.state_dict()))
        else:
            with torch.device("meta"):
                ldm.update(open_clip_to_ldm(text.state_dict(), True, None))
        keep = ("block_out_channels", "layers_per_block", "down_block_types", "up_block_types", "in_channels",
                "out_channels", "cross_attention_dim", "attention_head_dim", "use_linear_projection",
                "norm_num_groups", "transformer_layers_per_block")
        ucfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(unet.config).items() if k in keep}
        vcfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(vae.config).items()
                if k in ("block_out_channels", "layers_per_block", "latent_channels", "norm_num_groups",
                         "in_channels", "out_channels")}
        tcfg = {k: getattr(text.config, k) for k in ("vocab_size", "hidden_size", "intermediate_size",
                                                      "num_hidden_layers", "num_attention_heads",
                                                      "max_position_embeddings", "hidden_act")}
        diffusers = {
            "unet": {k: list(t.shape) for k, t in unet.state_dict().items()},
            "vae": {k: list(t.shape) for k, t in vae.state_dict().items()},
            "text": {k if k.startswith("text_model.") else "text_model." + k: list(t.shape)
                     for k, t in text.state_dict().items() if "position_ids" not in k},
        }
        out[name] = dict(shapes={k: list(t.shape) for k, t in sorted(ldm.items())}, unet=ucfg, vae=vcfg, text=tcfg,
                         diffusers=diffusers)
    return out


def fixture(name, spec, seed):
    gen = torch.Generator().manual_seed(seed)
    vocab, merges = ref.small_vocab()
    import tempfile

    with tempfile.TemporaryDirectory() as t:
        ref.write_vocab(t, vocab, merges)
        tok = CLIPTokenizer(os.path.join(t, "vocab.json"), os.path.join(t, "merges.txt"), pad_token=spec["pad"],
                            model_max_length=77)
    text = CLIPTextModel(CLIPTextConfig(**spec["text"])).eval()
    unet = UNet2DConditionModel(**spec["unet"]).eval()
    vae = AutoencoderKL(**VAE).eval()
    for m in (text, unet, vae):
        ref.randomise(m, gen)

    ldm = unet_to_ldm(unet.state_dict(), dict(unet.config))
    ldm.update(vae_to_ldm(vae.state_dict(), dict(vae.config)))
    if spec["clip"] == "openai":
        ldm.update(openai_clip_to_ldm(text.state_dict()))
    else:
        ldm.update(open_clip_to_ldm(text.state_dict(), True, gen))
    check_round_trip(ldm, unet, vae, text, spec["clip"])
    ldm.update(ldm_extras(gen))
    ldm = {k: (t.half() if t.is_floating_point() and k not in ("betas", "alphas_cumprod") else t).contiguous()
           for k, t in ldm.items()}

    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, spec["file"])
    if path.endswith(".safetensors"):
        save_file(ldm, path)
    else:
        torch.save({"epoch": 6, "global_step": 875000, "pytorch-lightning_version": "1.4.2",
                    "state_dict": ldm, "callbacks": {"ModelCheckpoint": lightning_callback()},
                    "hparams": {"lr": np.float64(1e-4), "steps": np.int64(875000)}}, path)

    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=spec["scheduler"],
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    w, h = spec["size"]
    f = pipe.vae_scale_factor
    latents = torch.randn((1, 4, h // f, w // f), generator=gen)
    with torch.no_grad():
        image = ref.run(pipe, dict(spec, guidance=7.5), latents)
    ref.npy(os.path.join(OUT, f"{name}_latents.npy"), latents)
    ref.npy(os.path.join(OUT, f"{name}_image.npy"), image)
    print(f"{name}: {spec['file']} {os.path.getsize(path) / 1024:.0f} KiB, {len(ldm)} tensors")
    return dict(file=spec["file"], prompt=ref.PROMPT, negative_prompt=ref.NEGATIVE, steps=spec["steps"],
                guidance=7.5, width=w, height=h, scheduler=type(spec["scheduler"]).__name__)


def main():
    expected = {name: fixture(name, spec, 4321 + i) for i, (name, spec) in enumerate(FIXTURES.items())}
    with open(os.path.join(OUT, "expected.json"), "w") as fh:
        json.dump(expected, fh, indent=1)
    with open(os.path.join(OUT, "shapes.json"), "w") as fh:
        json.dump(shapes_table(), fh)
    print("shapes.json:", os.path.getsize(os.path.join(OUT, "shapes.json")) // 1024, "KiB")


if __name__ == "__main__":
    main()
