#!/usr/bin/env python3
"""Fixtures for spadework's Stable Diffusion pipeline (tests/sd_pipeline.rs): tiny diffusers
`StableDiffusionPipeline`s with seeded random weights, saved as diffusers folders, and diffusers'
own end-to-end runs of them on the CPU in float32.

    python3 tools/sd_pipeline_reference.py   # writes tests/fixtures/sd/<name>/

Needs torch, diffusers (0.42), transformers (5) and safetensors. Per fixture directory:

- `pipeline/`: the folder `save_pretrained(safe_serialization=True)` writes (model_index.json,
  tokenizer/, text_encoder/, unet/, vae/, scheduler/), weights stored as float16 (fixture `sd1`
  as the plain file names with float16 tensors, fixture `sd2` as the `fp16` variant). The runs
  below use exactly those float16-rounded weights, in float32.
- `latents.npy`: the initial latents [1, 4, h, w] (diffusers' `latents=`, before
  `init_noise_sigma`).
- `prompt_embeds.npy`: the text encoder's last hidden state [2, 77, width] of the negative
  prompt, then the prompt (the batch classifier-free guidance runs).
- `image.npy`: `vae.decode(latents / scaling_factor).sample` of the pipeline's final latents
  (`output_type="latent"`), before clamping; `image_<scheduler>.npy` the same with the scheduler
  replaced by `<Class>.from_config(pipe.scheduler.config)`.
- `img2img_init.npy`, `img2img_noise.npy`, `img2img.npy` (fixture `sd1`):
  `StableDiffusionImg2ImgPipeline` from an init image (see `img2img`).
- `expected.json`: prompt, negative prompt, steps, guidance, width, height, the token ids, the
  scheduler runs.

The tokenizer is a small CLIP BPE: the 512 byte units, the first 500 OpenAI merges (from
assets/clip/bpe_simple_vocab_16e6.txt.gz) and BOS/EOS, 1014 tokens; `sd1` stores it as
vocab.json + merges.txt (pad `<|endoftext|>`), `sd2` as tokenizer.json (pad `!`).

Every parameter is redrawn from a seeded uniform after construction (weights uniform in
±sqrt(3 / fan_in), norm scales in [0.5, 1.5), biases and shifts in [-0.2, 0.2)); embedding
tables are N(0, 1).
"""
import gzip
import json
import os
import shutil
import tempfile

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "sd")
N_MERGES = 500

PROMPT = "a photo of an astronaut riding a horse on mars"
NEGATIVE = "blurry, low quality"

UNET = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    block_out_channels=(16, 32),
    layers_per_block=1,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=32,
    norm_num_groups=8,
)
VAE = dict(
    block_out_channels=(8, 16, 16),
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    latent_channels=4,
    norm_num_groups=4,
    layers_per_block=1,
    sample_size=32,
)
TEXT = dict(
    vocab_size=512 + N_MERGES + 2,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=77,
    bos_token_id=512 + N_MERGES,
    eos_token_id=512 + N_MERGES + 1,
    pad_token_id=1,
)
SCALED_LINEAR = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")

FIXTURES = {
    # SD 1.x: conv proj_in/out, one head count (the misnamed attention_head_dim), epsilon, PNDM
    # (PLMS, skip_prk_steps, steps_offset 1), quick_gelu text tower, pad <|endoftext|>.
    "sd1": dict(
        unet=dict(UNET, attention_head_dim=4),
        text=dict(TEXT, hidden_act="quick_gelu"),
        scheduler=PNDMScheduler(
            **SCALED_LINEAR, skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1
        ),
        pad="<|endoftext|>",
        tokenizer_files="vocab_merges",
        variant=None,
        steps=3,
        guidance=7.5,
        size=(32, 32),
        overrides={"euler": EulerDiscreteScheduler, "dpm++2m": DPMSolverMultistepScheduler},
        img2img=(5, 0.6, 7),
        inpaint=11,
    ),
    # SD 2.x: linear proj_in/out, per-block head counts, upcast attention, v_prediction, DDIM
    # with trailing spacing, gelu text tower, pad `!`; an H ≠ W image.
    "sd2": dict(
        unet=dict(
            UNET,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            upcast_attention=True,
        ),
        text=dict(TEXT, hidden_act="gelu"),
        scheduler=DDIMScheduler(
            **SCALED_LINEAR,
            prediction_type="v_prediction",
            timestep_spacing="trailing",
            set_alpha_to_one=False,
            clip_sample=False,
            steps_offset=1,
        ),
        pad="!",
        tokenizer_files="tokenizer_json",
        variant="fp16",
        steps=2,
        guidance=7.5,
        size=(40, 32),
        overrides={"euler": EulerDiscreteScheduler},
    ),
    # The 9-channel inpainting UNet (latents, mask, masked image latents), SD 1.x otherwise,
    # DDIM; its only run is StableDiffusionInpaintPipeline's.
    "inpaint": dict(
        unet=dict(UNET, in_channels=9, attention_head_dim=4),
        text=dict(TEXT, hidden_act="quick_gelu"),
        scheduler=DDIMScheduler(**SCALED_LINEAR, set_alpha_to_one=False, clip_sample=False, steps_offset=1),
        pad="<|endoftext|>",
        tokenizer_files="vocab_merges",
        variant=None,
        steps=3,
        guidance=7.5,
        size=(32, 32),
        overrides={},
        inpaint=12,
    ),
}


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def small_vocab():
    lines = gzip.open(os.path.join(ROOT, "assets", "clip", "bpe_simple_vocab_16e6.txt.gz")).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 1 + N_MERGES]]
    units = bytes_to_unicode()
    vocab = units + [u + "</w>" for u in units] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    assert len(set(vocab)) == len(vocab) == TEXT["vocab_size"]
    return {v: i for i, v in enumerate(vocab)}, merges


def write_vocab(d, vocab, merges):
    with open(os.path.join(d, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(d, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n")
        for m in merges:
            f.write(" ".join(m) + "\n")


def randomise(model, gen):
    """Redraws every parameter (see the module docstring), rounded to float16."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if "embedding" in name and p.ndim == 2 and "linear" not in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            elif leaf == "weight" and p.ndim >= 2:
                a = (3.0 / p[0].numel()) ** 0.5
                p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * a)
            elif leaf == "weight" and "norm" in name:
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
            else:
                p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * 0.2)
            p.copy_(p.half().float())


def npy(path, t):
    np.save(path, t.detach().cpu().numpy().astype(np.float32))


def run(pipe, spec, latents):
    w, h = spec["size"]
    out = pipe(
        PROMPT,
        negative_prompt=NEGATIVE,
        num_inference_steps=spec["steps"],
        guidance_scale=spec["guidance"],
        width=w,
        height=h,
        latents=latents.clone(),
        output_type="latent",
    ).images
    return pipe.vae.decode(out / pipe.vae.config.scaling_factor).sample


def img2img(pipe, spec, d, gen):
    """`StableDiffusionImg2ImgPipeline` on the same components: an init image (values k / 255,
    as from a PNG), `strength`, and a seeded generator whose two draws (the posterior sample's
    noise, then `add_noise`'s) are saved as `img2img_noise.npy` [2, 4, h, w]."""
    from diffusers import StableDiffusionImg2ImgPipeline

    steps, strength, seed = spec["img2img"]
    w, h = spec["size"]
    pipe2 = StableDiffusionImg2ImgPipeline(**pipe.components)
    pipe2.set_progress_bar_config(disable=True)
    img01 = torch.randint(0, 256, (1, 3, h, w), generator=gen).float() / 255
    f = pipe.vae_scale_factor
    g = torch.Generator().manual_seed(seed)
    noise = torch.cat([torch.randn((1, 4, h // f, w // f), generator=g) for _ in range(2)])
    out = pipe2(
        PROMPT,
        negative_prompt=NEGATIVE,
        image=img01,
        strength=strength,
        num_inference_steps=steps,
        guidance_scale=spec["guidance"],
        generator=torch.Generator().manual_seed(seed),
        output_type="latent",
    ).images
    npy(os.path.join(d, "img2img_init.npy"), img01 * 2 - 1)
    npy(os.path.join(d, "img2img_noise.npy"), noise)
    npy(os.path.join(d, "img2img.npy"), pipe.vae.decode(out / pipe.vae.config.scaling_factor).sample)


def inpaint_inputs(pipe, spec, seed):
    """An init image, a binary mask (1 = repaint: a rectangle plus noise-free edges), the two
    posterior noises [2, 4, h, w] (the image's, the masked image's) and the given latents, drawn
    from their own generator."""
    g = torch.Generator().manual_seed(seed)
    w, h = spec["size"]
    f = pipe.vae_scale_factor
    img01 = torch.randint(0, 256, (1, 3, h, w), generator=g).float() / 255
    mask = torch.zeros((1, 1, h, w))
    mask[:, :, h // 4 : 3 * h // 4, w // 3 :] = 1.0
    noise = torch.randn((2, 4, h // f, w // f), generator=g)
    latents = torch.randn((1, 4, h // f, w // f), generator=g)
    return img01, mask, noise, latents


def inpaint(pipe, spec, d, seed, out):
    """`StableDiffusionInpaintPipeline` on the same components (a 4-channel UNet blends the
    noised image latents outside the mask each step; a 9-channel UNet also sees the mask and the
    masked image's latents). The VAE posterior samples take the saved noises in order (the image's
    first, then the masked image's), as a generator would draw them; strength 1 with given
    latents. Writes inpaint_{init,mask,noise,latents}.npy and `out`."""
    from diffusers import StableDiffusionInpaintPipeline
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    img01, mask, noise, latents = inpaint_inputs(pipe, spec, seed)
    w, h = spec["size"]
    queue = list(noise.split(1))
    original = DiagonalGaussianDistribution.sample
    used = []

    def sample(self, generator=None):
        n = queue.pop(0)
        used.append(n)
        return self.mean + self.std * n

    DiagonalGaussianDistribution.sample = sample
    try:
        pipe2 = StableDiffusionInpaintPipeline(**pipe.components)
        pipe2.set_progress_bar_config(disable=True)
        res = pipe2(
            PROMPT,
            negative_prompt=NEGATIVE,
            image=img01,
            mask_image=mask,
            num_inference_steps=spec["steps"],
            guidance_scale=spec["guidance"],
            width=w,
            height=h,
            latents=latents.clone(),
            output_type="latent",
        ).images
    finally:
        DiagonalGaussianDistribution.sample = original
    # A 9-channel UNet encodes only the masked image: its noise is the first one drawn.
    if pipe.unet.config.in_channels == 9:
        assert len(used) == 1
        noise = torch.cat([torch.zeros_like(noise[:1]), noise[:1]])
    else:
        assert len(used) == 2
    npy(os.path.join(d, "inpaint_init.npy"), img01 * 2 - 1)
    npy(os.path.join(d, "inpaint_mask.npy"), mask)
    npy(os.path.join(d, "inpaint_noise.npy"), noise)
    npy(os.path.join(d, "inpaint_latents.npy"), latents)
    npy(os.path.join(d, out), pipe.vae.decode(res / pipe.vae.config.scaling_factor).sample)


def fixture(name, spec, seed):
    gen = torch.Generator().manual_seed(seed)
    vocab, merges = small_vocab()
    with tempfile.TemporaryDirectory() as t:
        write_vocab(t, vocab, merges)
        tok = CLIPTokenizer(os.path.join(t, "vocab.json"), os.path.join(t, "merges.txt"), pad_token=spec["pad"], model_max_length=77)
    text = CLIPTextModel(CLIPTextConfig(**spec["text"])).eval()
    unet = UNet2DConditionModel(**spec["unet"]).eval()
    inpainting_unet = unet.config.in_channels == 9
    vae = AutoencoderKL(**VAE).eval()
    for m in (text, unet, vae):
        randomise(m, gen)
    if inpainting_unet:
        from diffusers import StableDiffusionInpaintPipeline as Pipeline
    else:
        Pipeline = StableDiffusionPipeline
    pipe = Pipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tok,
        unet=unet,
        scheduler=spec["scheduler"],
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    w, h = spec["size"]
    f = pipe.vae_scale_factor
    latents = torch.randn((1, 4, h // f, w // f), generator=gen)

    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    p = os.path.join(d, "pipeline")
    pipe.to(torch.float16)
    pipe.save_pretrained(p, safe_serialization=True, variant=spec["variant"])
    del pipe
    # The runs use the saved folder, as a user of diffusers would load it.
    pipe = Pipeline.from_pretrained(p, torch_dtype=torch.float32, variant=spec["variant"], safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        ids = [tok(q, padding="max_length", max_length=77, truncation=True).input_ids for q in (NEGATIVE, PROMPT)]
        embeds = pipe.text_encoder(torch.tensor(ids))[0]
        npy(os.path.join(d, "prompt_embeds.npy"), embeds)
        npy(os.path.join(d, "latents.npy"), latents)
        if not inpainting_unet:
            npy(os.path.join(d, "image.npy"), run(pipe, spec, latents))
        base = pipe.scheduler
        for sname, cls in spec["overrides"].items():
            pipe.scheduler = cls.from_config(base.config)
            npy(os.path.join(d, f"image_{sname}.npy"), run(pipe, spec, latents))
        pipe.scheduler = base
        if "img2img" in spec:
            img2img(pipe, spec, d, gen)
        if "inpaint" in spec:
            inpaint(pipe, spec, d, spec["inpaint"], "inpaint.npy")

    tdir = os.path.join(p, "tokenizer")
    if spec["tokenizer_files"] == "vocab_merges":
        for fname in os.listdir(tdir):
            if fname not in ("tokenizer_config.json", "special_tokens_map.json"):
                os.remove(os.path.join(tdir, fname))
        write_vocab(tdir, vocab, merges)
    else:
        for fname in ("vocab.json", "merges.txt"):
            if os.path.exists(os.path.join(tdir, fname)):
                os.remove(os.path.join(tdir, fname))
    expected = dict(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        steps=spec["steps"],
        guidance=spec["guidance"],
        width=w,
        height=h,
        variant=spec["variant"],
        ids_negative=ids[0],
        ids_prompt=ids[1],
        scheduler=type(base).__name__,
        overrides=list(spec["overrides"]),
        img2img=dict(zip(("steps", "strength", "seed"), spec["img2img"])) if "img2img" in spec else None,
        inpaint="inpaint" in spec,
    )
    with open(os.path.join(d, "expected.json"), "w") as fh:
        json.dump(expected, fh, indent=1)
    size = sum(os.path.getsize(os.path.join(r, x)) for r, _, fs in os.walk(d) for x in fs)
    print(f"{name}: {size / 1024:.0f} KiB, tokenizer files {sorted(os.listdir(tdir))}")


def main():
    for i, (name, spec) in enumerate(FIXTURES.items()):
        fixture(name, spec, 1234 + i)


if __name__ == "__main__":
    main()
