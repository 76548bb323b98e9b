#!/usr/bin/env python3
"""The built-in landscape model's parity fixture: its output in PyTorch on one held-out map.

    python3 tools/make_landscape_fixture.py [--weights assets/landscape.safetensors]
        [--out tests/fixtures/landscape]

Writes ``map.png`` (128² palette PNG of ADE ids, the world's seed 1,000,003, held out from
training), ``z.npy`` (a fixed standard-normal z), ``expected.npy`` (1 x 3 x 128 x 128, the
generator's float output) and ``case.json``. The generator is ``spade_reference.SPADEGenerator``
loaded with the model file's weights as they are (int8 dequantised with their per-channel
scales; spectral norm removed, since the file stores the folded W / sigma); a texture-field model is fed the edges of
``train_landscape.texture_field(FIELD_SEED, …)``, the field ``spadework render --seed
FIELD_SEED`` draws. ``tests/maps.rs`` renders the same input through the engine and compares.
Run it again whenever assets/landscape.safetensors changes.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import landscape  # noqa: E402
import spade_reference as sr  # noqa: E402
import train_landscape as tl  # noqa: E402

MAP_SEED = 1_000_003
FIELD_SEED = 5
Z_SEED = 11


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", default=os.path.join(HERE, "..", "assets", "landscape.safetensors"))
    p.add_argument("--out", default=os.path.join(HERE, "..", "tests", "fixtures", "landscape"))
    a = p.parse_args()
    torch.set_num_threads(1)
    G, opt, cfg, classes = tl.generator_from_file(a.weights)
    size = cfg["crop_size"]
    noise = cfg.get("texture_field") or 0.0

    label, _, caption = landscape.sample(MAP_SEED, size)
    inst = tl.texture_field(FIELD_SEED, size, size, noise) if noise else None
    seg = sr.make_semantics(tl.class_lut(classes)[label].astype(np.int64), opt, inst)
    z = np.random.default_rng(Z_SEED).standard_normal((1, cfg["z_dim"])).astype(np.float32)
    with torch.no_grad():
        y = G(seg, torch.from_numpy(z) if cfg["use_vae"] else None)

    os.makedirs(a.out, exist_ok=True)
    landscape.palette_png(label, os.path.join(a.out, "map.png"))
    np.save(os.path.join(a.out, "z.npy"), z)
    np.save(os.path.join(a.out, "expected.npy"), y.numpy().astype(np.float32))
    with open(os.path.join(a.out, "case.json"), "w") as f:
        json.dump({"map_seed": MAP_SEED, "caption": caption, "field_seed": FIELD_SEED,
                   "z_seed": Z_SEED, "texture_field": noise or None,
                   "weights_bytes": os.path.getsize(a.weights)}, f, indent=1)
    print(f"wrote {a.out}: '{caption}', output std {float(y.std()):.3f}")


if __name__ == "__main__":
    main()
