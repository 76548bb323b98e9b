#!/usr/bin/env python3
"""Regenerate the class tables in this directory (ade20k.json, cocostuff.json,
cityscapes.json) for official NVlabs SPADE checkpoints.

Usage: python3 make_tables.py            (writes the three JSON files next to it)
       python3 make_tables.py --check    (only verifies the files on disk match)

Every file is a JSON array of {"id", "name", "color"} objects sorted by id, one
object per line. "id" is the value stored in the dataset's label PNG.

Sources of the embedded data:
  * ADE20K names: CSAILVision/sceneparsing objectInfo150.txt (first name of
    each line; Idx 1..150 = value in ADEChallengeData2016 annotation PNGs,
    0 = "other objects"/unlabeled, not listed).
    ADE20K colours: CSAILVision/sceneparsing visualizationCode/color150.mat
    (row k-1 is class k); identical to open-mmlab/mmsegmentation
    mmseg/datasets/ade.py ADE20KDataset palette.
    NVlabs/SPADE data/ade20k_dataset.py: label_nc=150,
    contain_dontcare_label=True; its postprocess() computes label-1 into a
    new tensor and never stores it, so the network is fed the raw PNG value
    (channel == id, 0 = unlabeled).
  * COCO-Stuff names: nightrome/cocostuff labels.txt ("k: name", k = 1..182,
    0 = unlabeled), identical to NVlabs/SPADE util/coco.py. The
    stuffthingmaps PNGs store k-1 (0..181) and 255 = unlabeled; SPADE
    (data/coco_dataset.py: label_nc=182, contain_dontcare_label=True) feeds
    that value directly and maps 255 -> 182 (data/pix2pix_dataset.py).
    Colours: NVlabs/SPADE util/util.py labelcolormap() bit-interleaving of
    i+1; util/visualizer.py calls it with N = label_nc + 2 = 184, so the
    N == 182 "important_colors" override is not used (see IMPORTANT_COLORS).
  * Cityscapes names: mcordts/cityscapesScripts
    cityscapesscripts/helpers/labels.py (ids 0..33 as in *_labelIds.png).
    SPADE data/cityscapes_dataset.py: label_nc=35, no dontcare label; channel
    34 is never fed by labelIds PNGs (license plate has id -1 there and is not
    drawn). Colours: the fixed N == 35 table of NVlabs labelcolormap(), which
    is the labels.py colour column in list order (34 = license plate colour).
"""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------- ADE20K ---
# objectInfo150 index 1..150, first name.
ADE20K_NAMES = [
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed', 'windowpane',
    'grass', 'cabinet', 'sidewalk', 'person', 'earth', 'door', 'table', 'mountain',
    'plant', 'curtain', 'chair', 'car', 'water', 'painting', 'sofa', 'shelf', 'house',
    'sea', 'mirror', 'rug', 'field', 'armchair', 'seat', 'fence', 'desk', 'rock',
    'wardrobe', 'lamp', 'bathtub', 'railing', 'cushion', 'base', 'box', 'column',
    'signboard', 'chest of drawers', 'counter', 'sand', 'sink', 'skyscraper',
    'fireplace', 'refrigerator', 'grandstand', 'path', 'stairs', 'runway', 'case',
    'pool table', 'pillow', 'screen door', 'stairway', 'river', 'bridge', 'bookcase',
    'blind', 'coffee table', 'toilet', 'flower', 'book', 'hill', 'bench', 'countertop',
    'stove', 'palm', 'kitchen island', 'computer', 'swivel chair', 'boat', 'bar',
    'arcade machine', 'hovel', 'bus', 'towel', 'light', 'truck', 'tower', 'chandelier',
    'awning', 'streetlight', 'booth', 'television', 'airplane', 'dirt track', 'apparel',
    'pole', 'land', 'bannister', 'escalator', 'ottoman', 'bottle', 'buffet', 'poster',
    'stage', 'van', 'ship', 'fountain', 'conveyer belt', 'canopy', 'washer',
    'plaything', 'swimming pool', 'stool', 'barrel', 'basket', 'waterfall', 'tent',
    'bag', 'minibike', 'cradle', 'oven', 'ball', 'food', 'step', 'tank', 'trade name',
    'microwave', 'pot', 'animal', 'bicycle', 'lake', 'dishwasher', 'screen', 'blanket',
    'sculpture', 'hood', 'sconce', 'vase', 'traffic light', 'tray', 'ashcan', 'fan',
    'pier', 'crt screen', 'plate', 'monitor', 'bulletin board', 'shower', 'radiator',
    'glass', 'clock', 'flag',
]

# color150.mat / mmsegmentation ADE20KDataset palette; entry k-1 = class k.
ADE20K_PALETTE = [
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3), (120, 120, 80),
    (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7), (224, 5, 255), (235, 255, 7),
    (150, 5, 61), (120, 120, 70), (8, 255, 51), (255, 6, 82), (143, 255, 140), (204, 255, 4),
    (255, 51, 7), (204, 70, 3), (0, 102, 200), (61, 230, 250), (255, 6, 51), (11, 102, 255),
    (255, 7, 71), (255, 9, 224), (9, 7, 230), (220, 220, 220), (255, 9, 92), (112, 9, 255),
    (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10), (7, 255, 255),
    (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7), (255, 122, 8), (0, 255, 20),
    (255, 8, 41), (255, 5, 153), (6, 51, 255), (235, 12, 255), (160, 150, 20), (0, 163, 255),
    (140, 140, 140), (250, 10, 15), (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0),
    (153, 255, 0), (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255),
    (11, 200, 200), (255, 82, 0), (0, 255, 245), (0, 61, 255), (0, 255, 112), (0, 255, 133),
    (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0), (0, 143, 255), (51, 255, 0),
    (0, 82, 255), (0, 255, 41), (0, 255, 173), (10, 0, 255), (173, 255, 0), (0, 255, 153),
    (255, 92, 0), (255, 0, 255), (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20),
    (255, 184, 184), (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194),
    (0, 255, 82), (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255), (0, 122, 255),
    (0, 255, 163), (255, 153, 0), (0, 255, 10), (255, 112, 0), (143, 255, 0), (82, 0, 255),
    (163, 255, 0), (255, 235, 0), (8, 184, 170), (133, 0, 255), (0, 255, 92), (184, 0, 255),
    (255, 0, 31), (0, 184, 255), (0, 214, 255), (255, 0, 112), (92, 255, 0), (0, 224, 255),
    (112, 224, 255), (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0), (255, 0, 163),
    (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235), (245, 0, 255),
    (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0), (0, 204, 255), (20, 0, 255),
    (255, 255, 0), (0, 153, 255), (0, 41, 255), (0, 255, 204), (41, 0, 255), (41, 255, 0),
    (173, 0, 255), (0, 245, 255), (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255),
    (184, 255, 0), (0, 133, 255), (255, 214, 0), (25, 194, 194), (102, 255, 0), (92, 0, 255),
]

# ------------------------------------------------------------- COCO-Stuff ---
# labels.txt entries 1..182 (stuffthingmaps value = entry - 1).
COCOSTUFF_NAMES = [
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck',
    'boat', 'traffic light', 'fire hydrant', 'street sign', 'stop sign',
    'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow', 'elephant',
    'bear', 'zebra', 'giraffe', 'hat', 'backpack', 'umbrella', 'shoe', 'eye glasses',
    'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
    'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket',
    'bottle', 'plate', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana',
    'apple', 'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut',
    'cake', 'chair', 'couch', 'potted plant', 'bed', 'mirror', 'dining table', 'window',
    'desk', 'toilet', 'door', 'tv', 'laptop', 'mouse', 'remote', 'keyboard',
    'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'blender',
    'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush',
    'hair brush', 'banner', 'blanket', 'branch', 'bridge', 'building-other', 'bush',
    'cabinet', 'cage', 'cardboard', 'carpet', 'ceiling-other', 'ceiling-tile', 'cloth',
    'clothes', 'clouds', 'counter', 'cupboard', 'curtain', 'desk-stuff', 'dirt',
    'door-stuff', 'fence', 'floor-marble', 'floor-other', 'floor-stone', 'floor-tile',
    'floor-wood', 'flower', 'fog', 'food-other', 'fruit', 'furniture-other', 'grass',
    'gravel', 'ground-other', 'hill', 'house', 'leaves', 'light', 'mat', 'metal',
    'mirror-stuff', 'moss', 'mountain', 'mud', 'napkin', 'net', 'paper', 'pavement',
    'pillow', 'plant-other', 'plastic', 'platform', 'playingfield', 'railing',
    'railroad', 'river', 'road', 'rock', 'roof', 'rug', 'salad', 'sand', 'sea', 'shelf',
    'sky-other', 'skyscraper', 'snow', 'solid-other', 'stairs', 'stone', 'straw',
    'structural-other', 'table', 'tent', 'textile-other', 'towel', 'tree', 'vegetable',
    'wall-brick', 'wall-concrete', 'wall-other', 'wall-panel', 'wall-stone',
    'wall-tile', 'wall-wood', 'water-other', 'waterdrops', 'window-blind',
    'window-other', 'wood',
]

# Only applied by NVlabs labelcolormap(N) when N == 182 (not what the
# visualizer passes); kept for reference.
IMPORTANT_COLORS = {
    'sea': (54, 62, 167),
    'sky-other': (95, 219, 255),
    'tree': (140, 104, 47),
    'clouds': (170, 170, 170),
    'grass': (29, 195, 49),
}

# ------------------------------------------------------------- Cityscapes ---
# cityscapesScripts labels.py, ids 0..33, then the license plate entry
# (id -1 in Cityscapes) occupying SPADE's otherwise unused channel 34.
CITYSCAPES_NAMES = [
    'unlabeled', 'ego vehicle', 'rectification border', 'out of roi', 'static',
    'dynamic', 'ground', 'road', 'sidewalk', 'parking', 'rail track', 'building',
    'wall', 'fence', 'guard rail', 'bridge', 'tunnel', 'pole', 'polegroup',
    'traffic light', 'traffic sign', 'vegetation', 'terrain', 'sky', 'person',
    'rider', 'car', 'truck', 'bus', 'caravan', 'trailer', 'train', 'motorcycle',
    'bicycle', 'license plate',
]

# NVlabs/SPADE util/util.py labelcolormap(35) fixed table.
CITYSCAPES_CMAP35 = [
    (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (111, 74, 0), (81, 0, 81),
    (128, 64, 128), (244, 35, 232), (250, 170, 160), (230, 150, 140), (70, 70, 70),
    (102, 102, 156), (190, 153, 153), (180, 165, 180), (150, 100, 100), (150, 120, 90),
    (153, 153, 153), (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35),
    (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 0, 90), (0, 0, 110), (0, 80, 100), (0, 0, 230), (119, 11, 32),
    (0, 0, 142),
]


def uint82bin(n, count=8):
    """Same as NVlabs util.uint82bin: binary string of n, MSB first."""
    return ''.join([str((n >> y) & 1) for y in range(count - 1, -1, -1)])


def labelcolormap(n, important_colors=False):
    """NVlabs util.labelcolormap(N) for N != 35 (bit-interleaving of i + 1).

    important_colors=True reproduces the N == 182 COCO override."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r, g, b = 0, 0, 0
        cid = i + 1  # NVlabs: "let's give 0 a color"
        for j in range(7):
            s = uint82bin(cid)
            r = r ^ (np.uint8(s[-1]) << (7 - j))
            g = g ^ (np.uint8(s[-2]) << (7 - j))
            b = b ^ (np.uint8(s[-3]) << (7 - j))
            cid = cid >> 3
        cmap[i] = (r, g, b)
    if important_colors:
        for i in range(min(n, len(COCOSTUFF_NAMES))):
            if COCOSTUFF_NAMES[i] in IMPORTANT_COLORS:
                cmap[i] = IMPORTANT_COLORS[COCOSTUFF_NAMES[i]]
    return cmap


def render(rows):
    # Same layout as maps/classes.json: two-space indent, one object a line.
    lines = ['  ' + json.dumps({'id': int(i), 'name': n, 'color': [int(v) for v in c]})
             for i, n, c in rows]
    return '[\n' + ',\n'.join(lines) + '\n]\n'


def build():
    assert len(ADE20K_NAMES) == 150 and len(ADE20K_PALETTE) == 150
    assert len(COCOSTUFF_NAMES) == 182
    assert len(CITYSCAPES_NAMES) == 35 and len(CITYSCAPES_CMAP35) == 35
    for names in (ADE20K_NAMES, COCOSTUFF_NAMES, CITYSCAPES_NAMES):
        assert len(set(names)) == len(names), 'duplicate class name'

    ade = [(k + 1, ADE20K_NAMES[k], ADE20K_PALETTE[k]) for k in range(150)]
    # NVlabs visualizer: Colorize(label_nc + 2) -> labelcolormap(184)[:184].
    coco_cmap = labelcolormap(182 + 2)
    coco = [(k, COCOSTUFF_NAMES[k], coco_cmap[k]) for k in range(182)]
    city = [(k, CITYSCAPES_NAMES[k], CITYSCAPES_CMAP35[k]) for k in range(35)]
    return {'ade20k.json': render(ade),
            'cocostuff.json': render(coco),
            'cityscapes.json': render(city)}


def check_engine_map(ade_text):
    """The engine's maps/classes.json (ADE ids) must agree with ade20k.json."""
    path = os.path.join(HERE, '..', '..', 'maps', 'classes.json')
    if not os.path.exists(path):
        return
    table = {e['id']: e for e in json.loads(ade_text)}
    with open(path) as f:
        for e in json.load(f):
            t = table[e['id']]
            assert t['name'] == e['name'] and t['color'] == e['color'], (e, t)


def main():
    check_only = '--check' in sys.argv[1:]
    files = build()
    check_engine_map(files['ade20k.json'])
    ok = True
    for name, text in files.items():
        path = os.path.join(HERE, name)
        if check_only:
            with open(path) as f:
                same = f.read() == text
            print('%s: %s' % (name, 'ok' if same else 'DIFFERS'))
            ok = ok and same
        else:
            with open(path, 'w') as f:
                f.write(text)
            print('wrote %s (%d classes)' % (name, text.count('"id"')))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
