#!/usr/bin/env python3
"""Write the curated demo maps of the procedural landscape world to ``maps/``.

For each named scene a deterministic seed search (layouts only, then one full sample) picks the
first seed whose map meets the scene's criteria; together the maps cover every class.  Written:

* ``maps/<name>.png``         256×256 8-bit palette PNG, index = ADE20K id, ADE20K palette
* ``maps/<name>_render.png``  the procedural render of that map (``tools/landscape.py``)
* ``maps/classes.json``       [{"id", "name", "color"}] in channel order (spadework ``--classes``)
* ``maps/maps.json``          name → seed, caption, class pixel shares

Usage: ``python3 tools/make_maps.py [--out maps] [--size 256]``
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from PIL import Image

sys.dont_write_bytecode = True  # no tools/__pycache__ from importing landscape
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import landscape as L  # noqa: E402

C = {name: cid for cid, name, _ in L.CLASSES}


def _share(label):
    cnt = np.bincount(label.ravel(), minlength=256) / label.size
    return {name: float(cnt[cid]) for name, cid in C.items()}


# name -> (wanted scene types or None, wanted looks or None, criteria on class shares)
SPECS = [
    ("lake", ("lake",), ("golden", "day"),
     lambda s, m: s["water"] > 0.12 and s["mountain"] > 0.08 and s["tree"] > 0.01),
    ("coast", ("coast",), ("day",),
     lambda s, m: s["sea"] > 0.12 and s["sand"] > 0.06 and s["rock"] > 0.005 and s["grass"] > 0.03),
    ("mountains", ("mountains",), ("day", "golden"),
     lambda s, m: m["snow"] and s["mountain"] > 0.22 and s["rock"] > 0.005 and s["tree"] > 0.005),
    ("river_valley", ("river_valley",), ("day", "golden"),
     lambda s, m: s["river"] > 0.04 and s["hill"] > 0.05 and s["field"] > 0.04),
    ("forest", ("forest",), ("day", "overcast"),
     lambda s, m: s["tree"] > 0.35 and s["path"] > 0.01 and s["sky"] > 0.08),
    ("fields", ("fields",), ("day", "golden"),
     lambda s, m: s["field"] > 0.25 and s["earth"] > 0.03 and s["tree"] > 0.005),
    ("desert_rocks", ("desert",), ("day", "golden"),
     lambda s, m: s["rock"] > 0.04 and s["sand"] > 0.3 and s["mountain"] > 0.03),
    ("meadow_flowers", ("meadow",), ("day",),
     lambda s, m: s["flower"] > 0.15 and s["hill"] > 0.03 and s["tree"] > 0.01),
    ("rolling_hills", None, ("golden", "day"),
     lambda s, m: s["hill"] > 0.2 and s["grass"] > 0.2 and s["path"] > 0.005 and s["sea"] == 0),
    ("stormy_sea", ("coast",), ("overcast",),
     lambda s, m: s["sea"] > 0.2 and m["cliffs"] and s["rock"] > 0.03),
    ("dusk_lake", ("lake",), ("dusk",),
     lambda s, m: s["water"] > 0.15 and s["hill"] > 0.01 and s["tree"] > 0.01),
    ("pond_and_path", ("mountains", "forest", "meadow"), ("day", "golden"),
     lambda s, m: s["water"] > 0.03 and s["path"] > 0.01 and s["flower"] > 0.01 and s["mountain"] < 0.02),
]


def find(spec, size, start, limit=20000):
    name, scenes, looks, ok = spec
    for seed in range(start, start + limit):
        lk = L._look(seed)
        if looks and lk.name not in looks:
            continue
        lay = L._layout(seed, size, lk)
        if scenes and lay.meta["scene"] not in scenes:
            continue
        if ok(_share(lay.label), lay.meta):
            return seed
    raise SystemExit(f"no seed found for {name} in {start}..{start + limit}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "maps"))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--start", type=int, default=1000, help="first seed of each search")
    a = ap.parse_args(argv)
    out = os.path.normpath(a.out)
    os.makedirs(out, exist_ok=True)

    with open(os.path.join(out, "classes.json"), "w") as f:
        rows = [json.dumps({"id": cid, "name": name, "color": list(rgb)}) for cid, name, rgb in L.CLASSES]
        f.write("[\n  " + ",\n  ".join(rows) + "\n]\n")

    index = {}
    covered = set()
    for spec in SPECS:
        name = spec[0]
        seed = find(spec, a.size, a.start)
        label, image, caption = L.sample(seed, a.size)
        L.palette_png(label, os.path.join(out, f"{name}.png"))
        Image.fromarray(image).save(os.path.join(out, f"{name}_render.png"))
        sh = _share(label)
        present = {k: round(v, 4) for k, v in sorted(sh.items(), key=lambda t: -t[1]) if v > 0}
        covered |= set(present)
        index[name] = {"seed": seed, "caption": caption, "classes": present}
        print(f"{name:16s} seed {seed:6d}  {caption}")
    with open(os.path.join(out, "maps.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    missing = [n for n in C if n not in covered]
    if missing:
        raise SystemExit(f"classes missing from the curated maps: {missing}")
    print(f"wrote {len(SPECS)} maps (+ renders, classes.json, maps.json) to {out}; all {len(C)} classes covered")


if __name__ == "__main__":
    main()
