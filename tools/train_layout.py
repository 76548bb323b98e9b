#!/usr/bin/env python3
"""Trains the built-in text → layout diffusion cascade (Imagen-style) on the procedural world's
(map, caption) pairs, with diffusers on the CPU, and exports it for spadework.

    python3 tools/train_layout.py data  --work DIR [--n 20000]         # layouts, captions, MiniLM
    python3 tools/train_layout.py base  --work DIR --steps 6000 --max-minutes 60
    python3 tools/train_layout.py base  --work DIR --encoder bow ...   # the bag-of-words baseline
    python3 tools/train_layout.py sr    --work DIR --steps 4000 --max-minutes 60
    python3 tools/train_layout.py export --work DIR --out assets/layout  # f16 diffusers folders
    python3 tools/train_layout.py sample --work DIR "a lake at dusk" [...]  # a grid, PyTorch side
    python3 tools/train_layout.py fixtures     # tests/fixtures/layout/: a tiny random cascade

Every command resumes: `data` is cached in DIR, `base`/`sr` keep a checkpoint (model, EMA,
optimiser, step) in DIR every --save-every steps and at --max-minutes; the same command goes on.
Run it niced: `nice -n 19 python3 tools/train_layout.py base ...`.

The stages, each a diffusers `UNet2DConditionModel` that spadework's Stable Diffusion UNet runs:
- text: the frozen all-MiniLM-L6-v2 (transformers, f32): 32 tokens' last hidden states,
  layer-normed without parameters (Imagen's layer norm on the text embeddings), for
  cross-attention; the mean-pooled, normalised sentence embedding through the UNet's
  `class_embed_type: "projection"` (added to the timestep embedding). 10 % of captions are
  dropped to the empty string for classifier-free guidance.
- base: the layout at 32², 14 classes as scaled one-hot (±1), v-prediction on a cosine
  (`squaredcos_cap_v2`) schedule; decoded by argmax.
- sr: 32² → 128² (the SPADE model's size). Input: the noisy 128² one-hot beside the low-res
  one-hot upsampled by nearest, corrupted by noise-conditioning augmentation: q(z_s | x_lr) at
  a random level s ∈ [0, 0.5·T) (none for 10 % of samples), s told to the model through the class
  vector [pooled text (384), sinusoid(s) (64)]. Trained on 64² crops (16² of the low res).
  `--no-aug` trains it without the augmentation (s = 0 always), Imagen's ablation.
"""
import argparse
import copy
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import landscape  # noqa: E402

# The classes of the procedural world in channel order (ADE20K ids), as the SPADE model's.
ADE_IDS = sorted(landscape._NAMES)
K = len(ADE_IDS)
TOKENS = 32
TEXT_DIM = 384
AUG_DIM = 64  # sinusoid width of the SR stage's augmentation level
LOW, HIGH = 32, 128
T = 1000


def aug_embedding(s, dim=AUG_DIM):
    """[B] levels → [B, dim]: cos then sin of s·exp(-ln(10000)·i/(dim/2)), i < dim/2 (the same in
    spadework)."""
    half = dim // 2
    f = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
    a = s.double()[:, None] * f[None]
    return torch.cat([a.cos(), a.sin()], 1).float()


def unet_config(stage):
    common = dict(act_fn="silu", norm_num_groups=16, norm_eps=1e-5, cross_attention_dim=TEXT_DIM,
                  class_embed_type="projection", flip_sin_to_cos=True, freq_shift=0,
                  layers_per_block=1, attention_head_dim=4, center_input_sample=False,
                  downsample_padding=1, mid_block_scale_factor=1.0, use_linear_projection=False)
    if stage == "base":
        return dict(common, sample_size=LOW, in_channels=K, out_channels=K,
                    block_out_channels=[32, 64, 128],
                    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                    projection_class_embeddings_input_dim=TEXT_DIM)
    return dict(common, sample_size=HIGH, in_channels=2 * K, out_channels=K,
                block_out_channels=[32, 64, 128],
                down_block_types=["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"],
                up_block_types=["CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
                projection_class_embeddings_input_dim=TEXT_DIM + AUG_DIM)


def scheduler_config():
    return {"_class_name": "DDIMScheduler", "num_train_timesteps": T,
            "beta_schedule": "squaredcos_cap_v2", "beta_start": 0.0001, "beta_end": 0.02,
            "prediction_type": "v_prediction", "clip_sample": False, "set_alpha_to_one": True,
            "steps_offset": 0, "timestep_spacing": "leading", "thresholding": False,
            "dynamic_thresholding_ratio": 0.995, "sample_max_value": 1.0}


def alphas_cumprod():
    from diffusers import DDIMScheduler
    return DDIMScheduler.from_config(scheduler_config()).alphas_cumprod.float()


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
class TextEncoder:
    """Frozen MiniLM: token states [B, 32, 384] (layer-normed, no parameters) and the pooled,
    normalised sentence embedding [B, 384]."""

    def __init__(self):
        from transformers import BertModel, BertTokenizerFast
        import minilm_reference
        d = minilm_reference.model_dir()
        self.tok = BertTokenizerFast.from_pretrained(d)
        self.model = BertModel.from_pretrained(d, add_pooling_layer=False).eval()

    @torch.no_grad()
    def __call__(self, texts):
        e = self.tok(list(texts), padding="max_length", truncation=True, max_length=TOKENS,
                     return_tensors="pt")
        h = self.model(**e).last_hidden_state
        m = e["attention_mask"].unsqueeze(-1).float()
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1e-9)
        pooled = F.normalize(pooled, p=2, dim=1, eps=1e-12)
        return F.layer_norm(h, (TEXT_DIM,), eps=1e-5), pooled


class BowEncoder(torch.nn.Module):
    """The baseline text encoder Imagen compares a frozen pretrained one against: a bag of words
    of the same width (384) trained from scratch with the base model on the captions alone.
    Words are the lower-case letter runs of the text, looked up in the training captions'
    vocabulary (unknown words share one embedding, padding another); no word order, no
    pretraining. Token states = the layer-normed embeddings of the first 32 words (padded), pooled
    = the normalised mean of the real words' embeddings (zero for an empty text)."""
    PAD, UNK = 0, 1

    def __init__(self, vocab):
        super().__init__()
        self.vocab = list(vocab)
        self.index = {w: i + 2 for i, w in enumerate(self.vocab)}
        self.emb = torch.nn.Embedding(len(self.vocab) + 2, TEXT_DIM)

    @staticmethod
    def words(text):
        import re
        return re.findall(r"[a-z]+", text.lower())

    @classmethod
    def from_captions(cls, captions):
        return cls(sorted({w for c in captions for w in cls.words(c)}))

    def forward(self, texts):
        ids = torch.zeros(len(texts), TOKENS, dtype=torch.long)
        for b, t in enumerate(texts):
            w = [self.index.get(x, self.UNK) for x in self.words(t)][:TOKENS]
            ids[b, :len(w)] = torch.tensor(w, dtype=torch.long)
        h = self.emb(ids)
        m = (ids != self.PAD).unsqueeze(-1).float()
        pooled = F.normalize((h * m).sum(1) / m.sum(1).clamp_min(1.0), p=2, dim=1, eps=1e-12)
        return F.layer_norm(h, (TEXT_DIM,), eps=1e-5), pooled


def class_index(label):
    lut = np.full(256, 255, np.uint8)
    for i, c in enumerate(ADE_IDS):
        lut[c] = i
    out = lut[label]
    assert (out != 255).all(), "a label outside the world's classes"
    return out


def mode_pool(idx, f):
    """[N, H, W] class indices → [N, H/f, W/f] by the most frequent class of each f×f cell."""
    n, h, w = idx.shape
    cells = idx.reshape(n, h // f, f, w // f, f).transpose(0, 1, 3, 2, 4).reshape(n, h // f, w // f, f * f)
    counts = np.stack([(cells == k).sum(-1) for k in range(K)], -1)
    return counts.argmax(-1).astype(np.uint8)


def data_path(work):
    return os.path.join(work, "layout_data.npz")


def make_data(a):
    path = data_path(a.work)
    if os.path.exists(path):
        print(f"{path} exists")
        return
    from tqdm import tqdm
    labels, caps, looks = [], [], []
    for s in tqdm(range(a.seed0, a.seed0 + a.n), desc="layouts"):
        lk = landscape._look(s)
        L = landscape._layout(s, HIGH, lk)
        labels.append(class_index(L.label))
        caps.append(landscape._caption(L, lk, s))
        looks.append(lk.name)
    labels = np.stack(labels)
    enc = TextEncoder()
    toks = np.zeros((a.n, TOKENS, TEXT_DIM), np.float16)
    pooled = np.zeros((a.n, TEXT_DIM), np.float32)
    for i in tqdm(range(0, a.n, 256), desc="MiniLM"):
        t, p = enc(caps[i:i + 256])
        toks[i:i + 256], pooled[i:i + 256] = t.half().numpy(), p.numpy()
    et, ep = enc([""])
    np.savez(path + ".tmp.npz", hr=labels, lr=mode_pool(labels, HIGH // LOW), captions=np.array(caps),
             looks=np.array(looks), tokens=toks, pooled=pooled, empty_tokens=et[0].numpy(),
             empty_pooled=ep[0].numpy(), seeds=np.arange(a.seed0, a.seed0 + a.n))
    os.replace(path + ".tmp.npz", path)
    print(f"wrote {path}: {a.n} layouts, {len(set(caps))} distinct captions")


def one_hot(idx):
    """[B, H, W] long → [B, K, H, W] scaled one-hot (±1)."""
    return F.one_hot(idx, K).permute(0, 3, 1, 2).float() * 2 - 1


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------
def build(stage):
    from diffusers import UNet2DConditionModel
    return UNet2DConditionModel(**unet_config(stage))


def train(a, stage):
    from tqdm import tqdm
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    d = np.load(data_path(a.work))
    hr, lr = torch.from_numpy(d["hr"]).long(), torch.from_numpy(d["lr"]).long()
    toks, pooled = torch.from_numpy(d["tokens"]), torch.from_numpy(d["pooled"])
    et, ep = torch.from_numpy(d["empty_tokens"]), torch.from_numpy(d["empty_pooled"])
    n_val = 200
    n = len(hr) - n_val  # the last 200 are held out
    bow = stage == "base" and a.encoder == "bow"
    captions = [str(c) for c in d["captions"]] if bow else None
    model = build(stage)
    if bow:  # the UNet and its bag-of-words encoder are one trained model
        model = torch.nn.ModuleDict({"unet": model, "text": BowEncoder.from_captions(captions[:n])})
    ema = copy.deepcopy(model)
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0)
    ac = alphas_cumprod()
    name = "base_bow" if bow else stage
    ck = os.path.join(a.work, f"{name}_ckpt.pt")
    step = 0
    if os.path.exists(ck):
        s = torch.load(ck, map_location="cpu", weights_only=False)
        model.load_state_dict(s["model"]), ema.load_state_dict(s["ema"])
        opt.load_state_dict(s["opt"])
        step = s["step"]
        torch.set_rng_state(s["rng"])
        if s.get("no_aug", False) != a.no_aug:
            sys.exit(f"{ck} was trained with{'out' if s.get('no_aug') else ''} noise-conditioning "
                     f"augmentation: resume it with{'' if s.get('no_aug') else 'out'} --no-aug")
        print(f"resumed {stage} at step {step}")
    params = sum(p.numel() for p in model.parameters())
    print(f"{stage}: {params / 1e6:.2f} M parameters, batch {a.batch}, steps {step}->{a.steps}, "
          f"{a.threads} threads", flush=True)

    def save():
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                    "step": step, "rng": torch.get_rng_state(), "no_aug": a.no_aug,
                    "vocab": model["text"].vocab if bow else None}, ck + ".tmp")
        os.replace(ck + ".tmp", ck)

    log = open(os.path.join(a.work, f"{name}_log.jsonl"), "a")
    t0 = time.time()
    bar = tqdm(total=a.steps, initial=step, desc=name)
    model.train()
    while step < a.steps:
        i = torch.randint(0, n, (a.batch,))
        drop = torch.rand(a.batch) < 0.1
        if bow:
            ctx, vec = model["text"](["" if dr else captions[j] for j, dr in zip(i.tolist(), drop)])
        else:
            ctx, vec = toks[i].float(), pooled[i]
            ctx[drop], vec[drop] = et, ep
        if stage == "base":
            x0 = one_hot(lr[i])
            cond = None
        else:
            c = a.crop
            oy, ox = [torch.randint(0, (HIGH - c) // 4 + 1, (1,)).item() * 4 for _ in range(2)]
            x0 = one_hot(hr[i][:, oy:oy + c, ox:ox + c])
            low = one_hot(lr[i][:, oy // 4:(oy + c) // 4, ox // 4:(ox + c) // 4])
            s = (torch.rand(a.batch) * 0.5 * T).long()
            s[torch.rand(a.batch) < 0.1] = 0
            if a.no_aug:  # Imagen's ablation: the low-res input always clean (the model is told 0)
                s.zero_()
            acs = ac[s].view(-1, 1, 1, 1)
            low = acs.sqrt() * low + (1 - acs).sqrt() * torch.randn_like(low)
            low[s == 0] = one_hot(lr[i][s == 0][:, oy // 4:(oy + c) // 4, ox // 4:(ox + c) // 4])
            cond = F.interpolate(low, scale_factor=4, mode="nearest")
            vec = torch.cat([vec, aug_embedding(s.float())], 1)
        t = torch.randint(0, T, (a.batch,))
        noise = torch.randn_like(x0)
        at = ac[t].view(-1, 1, 1, 1)
        xt = at.sqrt() * x0 + (1 - at).sqrt() * noise
        v = at.sqrt() * noise - (1 - at).sqrt() * x0
        inp = xt if cond is None else torch.cat([xt, cond], 1)
        unet = model["unet"] if bow else model
        pred = unet(inp, t, encoder_hidden_states=ctx, class_labels=vec).sample
        loss = F.mse_loss(pred, v)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for g in opt.param_groups:  # warm-up, then constant
            g["lr"] = a.lr * min(1.0, (step + 1) / 200)
        opt.step()
        with torch.no_grad():
            decay = min(a.ema, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % 20 == 0:
            log.write(json.dumps({"step": step, "loss": loss.item(), "t": time.time() - t0}) + "\n")
            log.flush()
        if step % a.save_every == 0:
            save()
        if time.time() - t0 > a.max_minutes * 60:
            print(f"--max-minutes {a.max_minutes} reached at step {step}", flush=True)
            break
    save()
    bar.close()


# ---------------------------------------------------------------------------------------------
# sampling (the PyTorch twin of spadework's layout pipeline) and export
# ---------------------------------------------------------------------------------------------
def load_ema(work, stage):
    m = build(stage)
    m.load_state_dict(torch.load(os.path.join(work, f"{stage}_ckpt.pt"), map_location="cpu",
                                 weights_only=False)["ema"])
    return m.eval()


def load_bow(work):
    """The bag-of-words baseline's EMA weights → (UNet, BowEncoder)."""
    s = torch.load(os.path.join(work, "base_bow_ckpt.pt"), map_location="cpu", weights_only=False)
    m = torch.nn.ModuleDict({"unet": build("base"), "text": BowEncoder(s["vocab"])})
    m.load_state_dict(s["ema"])
    return m["unet"].eval(), m["text"].eval()


@torch.no_grad()
def sample_layouts(base, sr, text, empty, steps=20, guidance=3.0, dyn=None, clip=False, aug=0.1,
                   sr_guidance=1.0, generator=None, noise=None, k=K, low=LOW, high=HIGH,
                   aug_dim=AUG_DIM):
    """The PyTorch twin of spadework's LayoutCascade::generate. text, empty = (layer-normed
    tokens [B, L, W], pooled [B, W]); noise = (base, sr, aug) tensors, or drawn from `generator`.
    -> (base sample [B, k, low, low], SR sample [B, k, high, high] or None)."""
    from diffusers import DDIMScheduler
    ctx, vec = text
    b = ctx.shape[0]
    et, ep = empty
    et, ep = et.expand_as(ctx), ep.expand_as(vec)
    if noise is None:
        noise = tuple(torch.randn(s, generator=generator)
                      for s in [(b, k, low, low), (b, k, high, high), (b, k, low, low)])
    cfg = scheduler_config()
    if dyn is not None:  # Imagen's dynamic thresholding: s = max(1, percentile), no upper cap
        cfg = dict(cfg, thresholding=True, dynamic_thresholding_ratio=dyn, sample_max_value=float("inf"))
    if clip:  # Imagen's static thresholding
        cfg = dict(cfg, clip_sample=True, clip_sample_range=1.0)

    def run(model, x, cond, vec_c, vec_u, g):
        sch = DDIMScheduler.from_config(cfg)
        sch.set_timesteps(steps)
        for t in sch.timesteps:
            inp = x if cond is None else torch.cat([x, cond], 1)
            if g <= 1.0:
                out = model(inp, t, encoder_hidden_states=ctx, class_labels=vec_c).sample
            else:
                both = model(torch.cat([inp, inp]), t, encoder_hidden_states=torch.cat([ctx, et]),
                             class_labels=torch.cat([vec_c, vec_u])).sample
                c, u = both.chunk(2)
                out = u + g * (c - u)
            x = sch.step(out, t, x).prev_sample
        return x

    low_x = run(base, noise[0].clone(), None, vec, ep, guidance)
    if sr is None:
        return low_x, None
    s = int(aug * T)
    lo = F.one_hot(low_x.argmax(1), k).permute(0, 3, 1, 2).float() * 2 - 1
    if s > 0:
        a_ = alphas_cumprod()[s]
        lo = a_.sqrt() * lo + (1 - a_).sqrt() * noise[2]
    cond = F.interpolate(lo, scale_factor=high // low, mode="nearest")
    ae = aug_embedding(torch.full((b,), float(s)), aug_dim)
    high_x = run(sr, noise[1].clone(), cond, torch.cat([vec, ae], 1), torch.cat([ep, ae], 1),
                 sr_guidance)
    return low_x, high_x


def fixtures(a):
    """tests/fixtures/layout/: a tiny random cascade (5 classes, 8² → 16², 4 tokens of width
    12) in the export layout, and this twin's samples for given text and noise."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "layout")
    k, low, high, tok, w, aug_dim = 5, 8, 16, 4, 12, 8
    torch.manual_seed(0)
    tiny = dict(act_fn="silu", norm_num_groups=4, norm_eps=1e-5, cross_attention_dim=w,
                class_embed_type="projection", flip_sin_to_cos=True, freq_shift=0,
                layers_per_block=1, attention_head_dim=2, block_out_channels=[8, 8],
                down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
                up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"])
    cfgs = {"base": dict(tiny, sample_size=low, in_channels=k, out_channels=k,
                         projection_class_embeddings_input_dim=w),
            "sr": dict(tiny, sample_size=high, in_channels=2 * k, out_channels=k,
                       projection_class_embeddings_input_dim=w + aug_dim)}
    models = {}
    for stage, c in cfgs.items():
        m = UNet2DConditionModel(**c).eval()
        with torch.no_grad():
            for p_ in m.parameters():
                p_.add_(torch.randn_like(p_) * 0.05)
        models[stage] = m
        d = os.path.join(out, stage)
        os.makedirs(d, exist_ok=True)
        save_file({n: v.contiguous() for n, v in m.state_dict().items()},
                  os.path.join(d, "diffusion_pytorch_model.safetensors"))
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(dict(c, _class_name="UNet2DConditionModel"), f, indent=1)
    with open(os.path.join(out, "scheduler_config.json"), "w") as f:
        json.dump(scheduler_config(), f, indent=1)
    with open(os.path.join(out, "layout.json"), "w") as f:
        json.dump({"ade_ids": [3, 5, 10, 22, 69], "tokens": tok, "low": low, "high": high,
                   "aug_dim": aug_dim, "text_layer_norm_eps": 1e-5}, f, indent=1)
    raw = torch.randn(1, tok, w) * 2 + 0.5
    raw_e = torch.randn(1, tok, w)
    pooled, pooled_e = F.normalize(torch.randn(1, w), dim=1), F.normalize(torch.randn(1, w), dim=1)
    ln = lambda x: F.layer_norm(x, (w,), eps=1e-5)
    noise = (torch.randn(1, k, low, low), torch.randn(1, k, high, high), torch.randn(1, k, low, low))
    t = {"text.tokens": raw, "text.pooled": pooled, "empty.tokens": raw_e, "empty.pooled": pooled_e,
         "noise.base": noise[0], "noise.sr": noise[1], "noise.aug": noise[2]}
    runs = {"none": dict(guidance=3.0, dyn=None, clip=False, aug=0.2, sr_guidance=1.0),
            "static": dict(guidance=5.0, dyn=None, clip=True, aug=0.1, sr_guidance=2.0),
            "dynamic": dict(guidance=4.0, dyn=0.9, clip=False, aug=0.0, sr_guidance=2.0)}
    for name, r in runs.items():
        lo, hi = sample_layouts(models["base"], models["sr"], (ln(raw), pooled), (ln(raw_e), pooled_e),
                                steps=6, noise=noise, k=k, low=low, high=high, aug_dim=aug_dim, **r)
        t[f"{name}.low"], t[f"{name}.high"] = lo, hi
    save_file({n: v.contiguous().float() for n, v in t.items()}, os.path.join(out, "expected.safetensors"),
              metadata={"runs": json.dumps(runs), "steps": "6"})
    print(f"wrote {out}")


def palette(idx):
    pal = np.array([landscape.ADE20K_PALETTE[c - 1] for c in ADE_IDS], np.uint8)
    return pal[idx]


def sample_cmd(a):
    from PIL import Image
    torch.set_num_threads(a.threads)
    enc = TextEncoder()
    d = np.load(data_path(a.work))
    empty = (torch.from_numpy(d["empty_tokens"]), torch.from_numpy(d["empty_pooled"]))
    base = load_ema(a.work, "base")
    sr = load_ema(a.work, "sr") if os.path.exists(os.path.join(a.work, "sr_ckpt.pt")) else None
    g = torch.Generator().manual_seed(a.seed)
    rows = []
    for p in a.prompts:
        lo_x, hi_x = sample_layouts(base, sr, enc([p] * a.k), empty, steps=a.steps_sample,
                                    guidance=a.guidance, dyn=a.dyn, generator=g)
        low, high = lo_x.argmax(1), (hi_x.argmax(1) if hi_x is not None else None)
        tiles = []
        for j in range(a.k):
            lo = np.kron(palette(low[j].numpy()), np.ones((4, 4, 1), np.uint8))
            tiles.append(lo)
            if high is not None:
                tiles.append(palette(high[j].numpy()))
        rows.append(np.concatenate(tiles, 1))
        print(p)
    Image.fromarray(np.concatenate(rows, 0)).save(a.out)
    print(f"wrote {a.out}")


def export(a):
    from safetensors.torch import save_file
    for stage in ["base", "sr"]:
        m = load_ema(a.work, stage)
        d = os.path.join(a.out, stage)
        os.makedirs(d, exist_ok=True)
        sd = {k: v.half().contiguous() if v.dim() >= 2 else v.float().contiguous()
              for k, v in m.state_dict().items()}
        save_file(sd, os.path.join(d, "diffusion_pytorch_model.safetensors"))
        cfg = dict(unet_config(stage), _class_name="UNet2DConditionModel")
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        print(f"wrote {d}")
    with open(os.path.join(a.out, "scheduler_config.json"), "w") as f:
        json.dump(scheduler_config(), f, indent=1)
    with open(os.path.join(a.out, "layout.json"), "w") as f:
        json.dump({"ade_ids": ADE_IDS, "tokens": TOKENS, "low": LOW, "high": HIGH,
                   "aug_dim": AUG_DIM, "text_layer_norm_eps": 1e-5}, f, indent=1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cmd", choices=["data", "base", "sr", "export", "sample", "fixtures"])
    p.add_argument("prompts", nargs="*")
    p.add_argument("--work", default=None)
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--seed0", type=int, default=5_000_000)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--max-minutes", type=float, default=60)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--dyn", type=float, default=None)
    p.add_argument("--steps-sample", type=int, default=20)
    p.add_argument("--no-aug", action="store_true",
                   help="sr: train without noise-conditioning augmentation (the ablation; the "
                        "low-res input is always clean and the model is told level 0)")
    p.add_argument("--encoder", choices=["minilm", "bow"], default="minilm",
                   help="base: the frozen MiniLM, or the bag-of-words baseline trained with it "
                        "(checkpoint base_bow_ckpt.pt; scored by eval_text_to_image.py --torch-base)")
    a = p.parse_intermixed_args()
    if a.cmd == "fixtures":
        return fixtures(a)
    if not a.work:
        sys.exit("--work DIR is required")
    os.makedirs(a.work, exist_ok=True)
    if a.cmd == "data":
        make_data(a)
    elif a.cmd in ("base", "sr"):
        train(a, a.cmd)
    elif a.cmd == "export":
        export(a)
    else:
        sample_cmd(a)


if __name__ == "__main__":
    main()
