#!/usr/bin/env python3
"""The README's picture of maps/: for every example map, the map | its procedural render | what
the built-in model makes of it (`spadework render --map maps/<name>.png`, default seed).

    python3 tools/maps_grid.py [--bin target/release/spadework] [--out docs/maps_generated.png]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "spadework"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "maps_generated.png"))
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--cols", type=int, default=2, help="maps per row")
    a = ap.parse_args()
    names = list(json.load(open(os.path.join(ROOT, "maps", "maps.json"))))
    t, gap, head = a.tile, 4, 16
    rows = (len(names) + a.cols - 1) // a.cols
    W = a.cols * (3 * t + 2 * gap) + (a.cols - 1) * 3 * gap
    H = 2 * head + rows * (t + head)
    grid = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(grid)
    with tempfile.TemporaryDirectory() as d:
        for i, name in enumerate(names):
            out = os.path.join(d, name + ".png")
            p = subprocess.run([a.bin, "render", "--map", os.path.join(ROOT, "maps", name + ".png"), "-o", out,
                                "--backend", "cpu"], capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit(f"render of maps/{name}.png failed:\n{p.stderr}")
            tiles = [Image.open(os.path.join(ROOT, "maps", name + ".png")).convert("RGB"),
                     Image.open(os.path.join(ROOT, "maps", name + "_render.png")).convert("RGB"),
                     Image.open(out).convert("RGB")]
            r, c = divmod(i, a.cols)
            x0 = c * (3 * t + 5 * gap)
            y0 = 2 * head + r * (t + head)
            draw.text((x0 + 2, y0 - 13), name.replace("_", " "), fill="black")
            for k, im in enumerate(tiles):
                grid.paste(im.resize((t, t), Image.NEAREST if k == 0 else Image.BICUBIC), (x0 + k * (t + gap), y0))
            print(f"  {name}", file=sys.stderr)
    for c in range(a.cols):
        x0 = c * (3 * t + 5 * gap)
        for k, label in enumerate(["map", "procedural render", "built-in model"]):
            draw.text((x0 + k * (t + gap) + 2, 2), label, fill="black")
    grid.save(a.out)
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
