#!/usr/bin/env python3
"""The look prior (unCLIP's prior, small): a diffusion model that maps the MiniLM sentence
embedding to the built-in SPADE model's style z, so "at dusk", "golden hour" or "overcast"
change the rendered light. Also the look classifier the evaluation scores looks with.

    python3 tools/train_prior.py data  --work DIR [--n 4000] [--renders NPZ]
                                             # renders → encoder means, captions
    python3 tools/train_prior.py pool  --work DIR [--pool 1200]    # z ~ N(0, I) → G's image → look
    python3 tools/train_prior.py train --work DIR [--targets pool|mu] [--steps 20000] [--max-minutes 20]
    python3 tools/train_prior.py export --work DIR --out assets/prior.safetensors
    python3 tools/train_prior.py fixtures                       # tests/fixtures/prior/
    python3 tools/train_prior.py ceiling --work DIR [--targets pool] [--figure PNG]
                                                 # what the renderer allows
    python3 tools/train_prior.py encoder --work DIR [--weights FILE | --ckpt CKPT] [--n 256]
                                                 # does z carry the look? (style encoder check)

Targets (`--targets mu`) are the style encoder's mean (netE of assets/landscape.safetensors) on
the procedural world's renders. A model whose encoder has collapsed (posterior N(0, I) whatever
the render, so its means carry no look) uses `--targets pool` instead: z ~ N(0, I) rendered by
the generator itself on training maps, each z labelled with the look the look classifier reads
off its image (a look the generator never produces gets the z's it rates most likely for it); a
caption of look L is paired with a random z of L's pool at every step. The text is the caption,
with its look phrase ("at dusk", "under heavy clouds", …) cut out for 30 % of the samples, so a prompt that names no look draws from all
looks. The denoiser is an MLP on [z_t, pooled text (384), sinusoid(t) (128)] → x̂₀ (unCLIP
predicts the clean embedding), trained on a cosine schedule with 10 % of the texts dropped to the
empty sentence for classifier-free guidance. The look classifier is a logistic regression on
colour statistics of the renders (mean and std of RGB in the top, middle and bottom thirds).
"""
import argparse
import json
import math
import os
import re
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import landscape  # noqa: E402

Z = 256
TEXT = 384
TEMB = 128
WIDTH = 512
T = 1000
LOOKS = ["day", "golden", "overcast", "dusk"]
# Every look phrase landscape._caption writes (its `when` lists).
LOOK_PHRASES = ["under a blue sky with white clouds", "on a bright day with scattered clouds",
                "on a sunny day", "under a blue sky", "in bright daylight", "at golden hour",
                "in warm evening light", "at sunset", "under an overcast sky",
                "on a grey cloudy day", "under heavy clouds", "at dusk", "in the purple twilight",
                "after sunset"]


def strip_look(caption):
    for p in LOOK_PHRASES:  # longest first where one contains another
        if " " + p in caption:
            return caption.replace(" " + p, "", 1)
    return caption


def timestep_embedding(t, dim=TEMB):
    """[B] → [B, dim]: cos then sin of t·exp(−ln(10000)·i/(dim/2)) (as spadework)."""
    half = dim // 2
    f = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
    a = t.double()[:, None] * f[None]
    return torch.cat([a.cos(), a.sin()], 1).float()


class Prior(nn.Module):
    """x̂₀ = MLP([z_t, text, temb(t)]): `layers.0` … `layers.3` linear, SiLU between."""

    def __init__(self, z=Z, text=TEXT, temb=TEMB, width=WIDTH):
        super().__init__()
        self.temb = temb
        self.layers = nn.ModuleList([nn.Linear(z + text + temb, width), nn.Linear(width, width),
                                     nn.Linear(width, width), nn.Linear(width, z)])

    def forward(self, zt, t, text):
        h = torch.cat([zt, text, timestep_embedding(t, self.temb)], 1)
        for i, l in enumerate(self.layers):
            h = l(h)
            if i < len(self.layers) - 1:
                h = F.silu(h)
        return h


def scheduler_config():
    return {"_class_name": "DDIMScheduler", "num_train_timesteps": T,
            "beta_schedule": "squaredcos_cap_v2", "prediction_type": "sample",
            "clip_sample": False, "set_alpha_to_one": True, "steps_offset": 0,
            "timestep_spacing": "leading"}


def alphas_cumprod():
    from diffusers import DDIMScheduler
    return DDIMScheduler.from_config(scheduler_config()).alphas_cumprod.float()


def color_features(images):
    """[N, H, W, 3] uint8 → [N, 18]: mean and std of RGB in the top, middle, bottom thirds."""
    x = images.astype(np.float32) / 255.0
    h = x.shape[1]
    parts = [x[:, : h // 3], x[:, h // 3: 2 * h // 3], x[:, 2 * h // 3:]]
    return np.concatenate([np.concatenate([p.mean((1, 2)), p.std((1, 2))], 1) for p in parts], 1)


def data(a):
    import train_landscape as tl
    from minilm_reference import model_dir
    from transformers import BertModel, BertTokenizerFast
    path = os.path.join(a.work, "prior_data.npz")
    if os.path.exists(path):
        print(f"{path} exists")
        return
    world = landscape
    classes = tl.world_classes(world)
    if a.renders:  # train_landscape.py's cached renders (data_128_*.npz)
        d = dict(np.load(a.renders))
        seeds = [int(s) for s in d["seeds"]]
    else:
        seeds = list(range(a.seed0, a.seed0 + a.n))
        d = tl.render(world, seeds, 128, tl.class_lut(classes), "prior")
    E = encoder_from_file(os.path.join(HERE, "..", "assets", "landscape.safetensors"),
                          tl.g_options(128, 32, True, len(classes))).eval()
    imgs = torch.from_numpy(d["images"]).permute(0, 3, 1, 2).float() / 127.5 - 1
    mus = []
    with torch.no_grad():
        for i in range(0, len(imgs), 64):
            mu, _ = E(imgs[i:i + 64])
            mus.append(mu)
    mu = torch.cat(mus).numpy()
    caps = [str(c) for c in d["captions"]]
    looks = np.array([LOOKS.index(landscape._look(s).name) for s in seeds])
    tok = BertTokenizerFast.from_pretrained(model_dir())
    bert = BertModel.from_pretrained(model_dir(), add_pooling_layer=False).eval()

    @torch.no_grad()
    def pooled(texts):
        out = []
        for i in range(0, len(texts), 256):
            e = tok(texts[i:i + 256], padding="max_length", truncation=True, max_length=32,
                    return_tensors="pt")
            h = bert(**e).last_hidden_state
            m = e["attention_mask"].unsqueeze(-1).float()
            out.append(F.normalize((h * m).sum(1) / m.sum(1), dim=1))
        return torch.cat(out).numpy()

    np.savez(path, mu=mu, looks=looks, captions=np.array(caps), text=pooled(caps),
             text_nolook=pooled([strip_look(c) for c in caps]), empty=pooled([""])[0],
             color=color_features(d["images"]), seeds=np.array(seeds))
    print(f"wrote {path}: mu std {mu.std():.3f}, {len(caps)} renders")


POOL_SEED0 = 7_500_000
POOL_MIN = 32  # a look gets at least this many z's (the most likely ones when fewer read as it)


def classify_looks(lc, color):
    """Look classifier (look_classifier.pt) on colour features [N, 18] → probabilities [N, 4]."""
    f = (torch.from_numpy(color).float() - lc["mean"]) / lc["std"]
    return torch.softmax(f @ lc["w"].T + lc["b"], 1).numpy()


def pool(a):
    """z ~ N(0, I) → the generator's image on a training map → its look (for `--targets pool`)."""
    import train_landscape as tl
    import spade_reference as sr
    from tqdm import tqdm
    torch.set_num_threads(a.threads)
    path = os.path.join(a.work, "look_pool.npz")
    d = np.load(os.path.join(a.work, "prior_data.npz"))
    lc_path = os.path.join(a.work, "look_classifier.pt")
    if not os.path.exists(lc_path):
        look_classifier(a, d)
    lc = torch.load(lc_path)
    G, opt, cfg, classes = tl.generator_from_file(os.path.join(HERE, "..", "assets", "landscape.safetensors"))
    seeds = list(range(POOL_SEED0, POOL_SEED0 + a.pool))
    r = tl.render(landscape, seeds, cfg["crop_size"], tl.class_lut(classes), "pool maps")
    z = np.random.default_rng(a.seed).standard_normal((a.pool, Z)).astype(np.float32)
    noise = cfg.get("texture_field") or 0.0
    color = np.zeros((a.pool, 18), np.float32)
    for b in tqdm(range(0, a.pool, 16), desc="pool"):
        idx = range(b, min(b + 16, a.pool))
        seg = torch.cat([sr.make_semantics(r["labels"][i].astype(np.int64), opt,
                                           tl.texture_field(seeds[i], *r["labels"][i].shape, noise)
                                           if noise else None) for i in idx])
        with torch.no_grad():
            y = G(seg, torch.from_numpy(z[b:b + 16]))
        img = ((y.clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).numpy().astype(np.uint8)
        color[b:b + len(idx)] = color_features(img)
    prob = classify_looks(lc, color)
    np.savez(path, z=z, prob=prob, look=prob.argmax(1), seeds=np.array(seeds))
    counts = np.bincount(prob.argmax(1), minlength=len(LOOKS))
    print(f"wrote {path}: " + ", ".join(f"{n} {c}" for n, c in zip(LOOKS, counts)))


def pool_members(pool_npz, top=0):
    """→ per look, the indices of the pool's z's that stand for it: those read as it (at least
    POOL_MIN: the most likely ones when fewer are), or with `top` > 0 the `top` most likely."""
    prob, look = pool_npz["prob"], pool_npz["look"]
    out = []
    for k in range(len(LOOKS)):
        idx = np.where(look == k)[0]
        if top > 0 or len(idx) < POOL_MIN:
            idx = np.argsort(-prob[:, k])[:top or POOL_MIN]
        out.append(idx)
    return out


def train(a):
    from tqdm import tqdm
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    d = np.load(os.path.join(a.work, "prior_data.npz"))
    n_val = 200
    mu = torch.from_numpy(d["mu"])[:-n_val]
    looks = torch.from_numpy(d["looks"])[:-n_val]
    if a.targets == "pool":
        pz = np.load(os.path.join(a.work, "look_pool.npz"))
        pool_z = torch.from_numpy(pz["z"])
        members = [torch.from_numpy(m) for m in pool_members(pz, a.pool_top)]
    text, nolook = torch.from_numpy(d["text"])[:-n_val], torch.from_numpy(d["text_nolook"])[:-n_val]
    empty = torch.from_numpy(d["empty"])
    model, ema = Prior(), Prior()
    ema.load_state_dict(model.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    ac = alphas_cumprod()
    ck = os.path.join(a.work, "prior_ckpt.pt")
    step = 0
    if os.path.exists(ck):
        s = torch.load(ck, weights_only=False)
        if (s.get("targets", "mu"), s.get("pool_top", 0)) != (a.targets, a.pool_top):
            sys.exit(f"{ck} was trained with --targets {s.get('targets', 'mu')} --pool-top "
                     f"{s.get('pool_top', 0)}, not {a.targets} {a.pool_top}")
        model.load_state_dict(s["model"]), ema.load_state_dict(s["ema"]), opt.load_state_dict(s["opt"])
        step = s["step"]
    t0 = time.time()
    bar = tqdm(total=a.steps, initial=step, desc="prior")
    while step < a.steps:
        i = torch.randint(0, len(mu), (a.batch,))
        if a.targets == "pool":  # a random z of the caption's look
            x0 = torch.stack([pool_z[m[torch.randint(0, len(m), ())]]
                              for m in (members[int(k)] for k in looks[i])])
        else:
            x0 = mu[i]
        c = torch.where((torch.rand(a.batch) < 0.3)[:, None], nolook[i], text[i])
        c[torch.rand(a.batch) < 0.1] = empty
        t = torch.randint(0, T, (a.batch,))
        at = ac[t][:, None]
        xt = at.sqrt() * x0 + (1 - at).sqrt() * torch.randn_like(x0)
        loss = F.mse_loss(model(xt, t.float(), c), x0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            dec = min(0.999, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(dec).add_(pm, alpha=1 - dec)
        step += 1
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % 2000 == 0 or time.time() - t0 > a.max_minutes * 60:
            torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                        "step": step, "targets": a.targets, "pool_top": a.pool_top}, ck)
            if time.time() - t0 > a.max_minutes * 60:
                break
    torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                "step": step, "targets": a.targets, "pool_top": a.pool_top}, ck)
    bar.close()
    look_classifier(a, d)


def look_classifier(a, d):
    """Logistic regression on colour features → look; saved beside the prior (evaluation only)."""
    x = torch.from_numpy(d["color"]).float()
    y = torch.from_numpy(d["looks"]).long()
    m, s = x.mean(0), x.std(0) + 1e-6
    lin = nn.Linear(x.shape[1], len(LOOKS))
    o = torch.optim.Adam(lin.parameters(), 0.05)
    xn = (x - m) / s
    for _ in range(500):
        o.zero_grad()
        F.cross_entropy(lin(xn[:-200]), y[:-200]).backward()
        o.step()
    acc = (lin(xn[-200:]).argmax(1) == y[-200:]).float().mean().item()
    torch.save({"w": lin.weight.detach(), "b": lin.bias.detach(), "mean": m, "std": s,
                "held_out_acc": acc}, os.path.join(a.work, "look_classifier.pt"))
    print(f"look classifier: held-out accuracy {100 * acc:.1f} % on 200 renders")


@torch.no_grad()
def sample(model, text, empty, steps=20, guidance=2.0, noise=None, generator=None):
    """The PyTorch twin of spadework's prior sampling: DDIM (x̂₀ prediction) with guidance."""
    from diffusers import DDIMScheduler
    b = text.shape[0]
    x = noise.clone() if noise is not None else torch.randn(b, Z, generator=generator)
    sch = DDIMScheduler.from_config(scheduler_config())
    sch.set_timesteps(steps)
    for t in sch.timesteps:
        tt = torch.full((2 * b,), float(t))
        both = model(torch.cat([x, x]), tt, torch.cat([text, empty.expand_as(text)]))
        c, u = both.chunk(2)
        x = sch.step(u + guidance * (c - u), t, x).prev_sample
    return x


def export(a):
    from safetensors.torch import save_file
    s = torch.load(os.path.join(a.work, "prior_ckpt.pt"), weights_only=False)
    cfg = {"z_dim": Z, "text_dim": TEXT, "temb_dim": TEMB, "width": WIDTH, "layers": 4,
           "scheduler": scheduler_config(), "trained_steps": s["step"],
           "targets": s.get("targets", "mu")}
    save_file({k: v.contiguous() for k, v in s["ema"].items()}, a.out,
              metadata={"prior_config": json.dumps(cfg)})
    print(f"wrote {a.out}")


def fixtures(a):
    from safetensors.torch import save_file
    out = os.path.join(HERE, "..", "tests", "fixtures", "prior")
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    z, text, temb, width = 6, 5, 8, 16
    m = Prior(z, text, temb, width).eval()
    cfg = {"z_dim": z, "text_dim": text, "temb_dim": temb, "width": width, "layers": 4,
           "scheduler": scheduler_config()}
    tx, em = torch.randn(1, text), torch.randn(1, text)
    noise = torch.randn(1, z)
    global Z
    Z = z
    x = sample(m, tx, em, steps=5, guidance=2.5, noise=noise)
    t = {k: v.contiguous() for k, v in m.state_dict().items()}
    t.update({"expected.text": tx, "expected.empty": em, "expected.noise": noise,
              "expected.sample": x})
    save_file(t, os.path.join(out, "tiny.safetensors"),
              metadata={"prior_config": json.dumps(cfg), "steps": "5", "guidance": "2.5"})
    print(f"wrote {out}")


def ceiling(a):
    """What the renderer allows: the built-in model renders example maps with a z that stands
    for each look (what a perfect prior would hand it): the style encoder's mean of held-out
    renders of that look (`--targets mu`), or z's of that look's pool (`--targets pool`, read on
    other maps); the look classifier reads the look off the images."""
    import subprocess
    import tempfile
    from PIL import Image
    d = np.load(os.path.join(a.work, "prior_data.npz"))
    lc = torch.load(os.path.join(a.work, "look_classifier.pt"))
    if a.targets == "pool":
        pz = np.load(os.path.join(a.work, "look_pool.npz"))
        zs = [pz["z"][m[:8]] for m in pool_members(pz, a.pool_top)]
    else:
        zs = [d["mu"][-200:][np.where(d["looks"][-200:] == k)[0][:8]] for k in range(len(LOOKS))]
    maps = ["lake", "coast", "mountains", "river_valley"]
    conf = np.zeros((4, 4), int)
    tiles = []
    with tempfile.TemporaryDirectory() as tmp:
        for look in range(4):
            for j, zv in enumerate(zs[look]):
                z, out = os.path.join(tmp, "z.npy"), os.path.join(tmp, "x.png")
                np.save(z, zv.astype(np.float32))
                m = os.path.join(HERE, "..", "maps", maps[j % len(maps)] + ".png")
                subprocess.run([a.spadework, "render", "--map", m, "--z", z, "-o", out, "--backend",
                                "cpu"], check=True, capture_output=True)
                img = np.array(Image.open(out).convert("RGB"))
                tiles.append(img)
                conf[look, int(classify_looks(lc, color_features(img[None])).argmax())] += 1
    what = "pool z's" if a.targets == "pool" else "held-out encoder means"
    print(f"z per look ({what}), classified look (rows: true, cols: {LOOKS}):")
    print(conf)
    print(f"agreement {np.trace(conf)}/{conf.sum()} = {100 * np.trace(conf) / conf.sum():.1f} %")
    if a.figure:  # one row per look, the images in the order rendered
        cols = max(len(z) for z in zs)
        h, w = tiles[0].shape[:2]
        fig = Image.new("RGB", (w * cols, h * len(zs)))
        k = 0
        for look, z in enumerate(zs):
            for j in range(len(z)):
                fig.paste(Image.fromarray(tiles[k]), (w * j, h * look))
                k += 1
        fig.save(a.figure)
        print(f"wrote {a.figure}")


CHECK_SEED0 = 7_100_000  # renders of the encoder check (seen by no training)


def load_g_e(weights=None, ckpt=None):
    """(G, E, opt, noise density, classes) from a model file or a train_landscape.py checkpoint
    (its EMA generator when it has one), in eval mode."""
    import train_landscape as tl
    import spade_reference as sr
    if ckpt:
        ck = torch.load(ckpt, map_location="cpu", weights_only=True)
        G, opt, classes, _ = tl.generator_from_checkpoint(ck)
        noise = ck["arch"].get("noise", 0.0)
        E = sr.ConvEncoder(tl.e_options(opt))
        E.load_state_dict(ck["E"], strict=True)
    else:
        G, opt, cfg, classes = tl.generator_from_file(weights)
        noise = cfg.get("texture_field") or 0.0
        E = encoder_from_file(weights, opt)
    return G, E.eval(), opt, noise, classes


def encoder_from_file(path, opt):
    """The style encoder (netE.*) of a model file, for generator options `opt`."""
    import train_landscape as tl
    import spade_reference as sr
    w, _ = tl.load_safetensors_np(path)
    E = sr.ConvEncoder(tl.e_options(opt))
    miss = tl.load_folded(E, w, "netE.")
    if miss:
        raise SystemExit(f"{path}: encoder keys missing: {miss[:8]}")
    return E


def encoder_check(a):
    """Does z carry the look? On `--n` renders of seeds CHECK_SEED0.. (about half of them day):
    the posterior's std, the spread of its means, the distance between the looks' mean z's;
    reconstruction (render → encoder mean → the generator on the render's own map → the look
    classifier; agreement with the render's look); and what random z ~ N(0, I) give."""
    import train_landscape as tl
    import spade_reference as sr
    torch.set_num_threads(a.threads)
    lc_path = os.path.join(a.work, "look_classifier.pt")
    if not os.path.exists(lc_path):
        look_classifier(a, np.load(os.path.join(a.work, "prior_data.npz")))
    lc = torch.load(lc_path)
    weights = a.weights or os.path.join(HERE, "..", "assets", "landscape.safetensors")
    G, E, opt, noise, classes = load_g_e(None if a.ckpt else weights, a.ckpt)
    n = min(a.n, 512)
    seeds = list(range(CHECK_SEED0, CHECK_SEED0 + n))
    r = tl.render(landscape, seeds, opt.crop_size, tl.class_lut(classes), "check")
    looks = np.array([LOOKS.index(landscape._look(s).name) for s in seeds])
    imgs = torch.from_numpy(r["images"]).permute(0, 3, 1, 2).float() / 127.5 - 1
    zr = torch.from_numpy(np.random.default_rng(a.seed).standard_normal((n, Z)).astype(np.float32))
    mus, stds, col_rec, col_rand = [], [], [], []
    with torch.no_grad():
        for b in range(0, n, 16):
            idx = range(b, min(b + 16, n))
            mu, logvar = E(imgs[b:b + 16])
            mus.append(mu)
            stds.append(torch.exp(0.5 * logvar))
            seg = torch.cat([sr.make_semantics(r["labels"][i].astype(np.int64), opt,
                                               tl.texture_field(seeds[i], *r["labels"][i].shape, noise)
                                               if noise else None) for i in idx])
            for z, out in ((mu, col_rec), (zr[b:b + 16], col_rand)):
                y = G(seg, z)
                img = ((y.clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).numpy().astype(np.uint8)
                out.append(color_features(img))
    mu, std = torch.cat(mus).numpy(), torch.cat(stds).numpy()
    rec = classify_looks(lc, np.concatenate(col_rec)).argmax(1)
    rand = classify_looks(lc, np.concatenate(col_rand)).argmax(1)
    centres = np.stack([mu[looks == k].mean(0) for k in range(len(LOOKS))])
    dist = [np.linalg.norm(centres[i] - centres[j]) for i in range(4) for j in range(i + 1, 4)]
    conf = np.zeros((4, 4), int)
    np.add.at(conf, (looks, rec), 1)
    res = dict(model=a.ckpt or weights, n=n, posterior_std=float(std.mean()),
               mean_spread=float(mu.std(0).mean()), mean_norm=float(np.linalg.norm(mu, axis=1).mean()),
               look_centre_distance=[float(min(dist)), float(max(dist))],
               reconstruction_agreement=float(np.trace(conf) / n),
               reconstruction_balanced=float(np.mean(np.diag(conf) / np.maximum(conf.sum(1), 1))),
               reconstruction_confusion=conf.tolist(),
               random_z_looks=dict(zip(LOOKS, np.bincount(rand, minlength=4).tolist())))
    print(f"{res['model']}: posterior std {res['posterior_std']:.3f}, means spread "
          f"{res['mean_spread']:.3f}/dim (|mu| {res['mean_norm']:.2f}), look centres "
          f"{min(dist):.2f}-{max(dist):.2f} apart")
    print(f"reconstruction look agreement {100 * res['reconstruction_agreement']:.1f} % (mean "
          f"over looks {100 * res['reconstruction_balanced']:.1f} %; rows: render's look, cols: "
          f"read look {LOOKS}):\n{conf}")
    print(f"random z read as: {res['random_z_looks']}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cmd", choices=["data", "pool", "train", "export", "fixtures", "ceiling",
                                      "encoder"])
    p.add_argument("--spadework", default="target/release/spadework")
    p.add_argument("--work")
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--seed0", type=int, default=7_000_000)
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--max-minutes", type=float, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out")
    p.add_argument("--pool", type=int, default=1200, help="z's rendered by `pool`")
    p.add_argument("--pool-top", type=int, default=0,
                   help="--targets pool: each look's K most likely z's (0: all read as it)")
    p.add_argument("--targets", choices=["mu", "pool"], default="mu",
                   help="train on the encoder's means or on look_pool.npz (`pool`)")
    p.add_argument("--figure", help="ceiling: write its renders here, one row per look")
    p.add_argument("--renders", help="reuse rendered (labels, images, captions, seeds) .npz")
    p.add_argument("--weights", help="encoder: a model file (default assets/landscape.safetensors)")
    p.add_argument("--ckpt", help="encoder: a train_landscape.py checkpoint instead")
    a = p.parse_args()
    if a.cmd == "fixtures":
        return fixtures(a)
    os.makedirs(a.work, exist_ok=True)
    {"data": data, "pool": pool, "train": train, "export": export, "ceiling": ceiling,
     "encoder": encoder_check}[a.cmd](a)


if __name__ == "__main__":
    main()
