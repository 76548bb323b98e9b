#!/usr/bin/env python3
"""Writes the CLIP tokenizer fixtures of tests/fixtures/clip_tokenizer/ with transformers'
CLIPTokenizer (what diffusers tokenizes prompts with), built from the offline CLIP merges in
assets/clip/bpe_simple_vocab_16e6.txt.gz (vocab derived as OpenAI's SimpleTokenizer does):

    python3 tools/clip_tokenizer_reference.py

- cases.json: prompts (punctuation, numbers, apostrophes, accents, CJK, emoji, extra whitespace,
  an empty one, one over 77 tokens) with their 77 ids padded with `<|endoftext|>` (SD 1.x) and
  with `!` (SD 2.x), and the unpadded, untruncated ids; each checked against open_clip's own
  tokenizer where open_clip is installed.
- tokenizer.json.gz: the tokenizer.json transformers writes for it (a diffusers folder's
  tokenizer/tokenizer.json), gzipped.
Needs transformers (pip).
"""
import gzip
import json
import os
import tempfile

from transformers import CLIPTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "clip_tokenizer")


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


def vocab_and_merges():
    lines = gzip.open(os.path.join(ROOT, "assets", "clip", "bpe_simple_vocab_16e6.txt.gz")).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    units = bytes_to_unicode()
    vocab = units + [u + "</w>" for u in units] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    return {v: i for i, v in enumerate(vocab)}, merges


PROMPTS = [
    "a photo of an astronaut riding a horse on mars",
    "A Photo Of An Astronaut, Riding A HORSE on Mars!!!",
    "",
    "   leading and    inner   whitespace\tand\ttabs\nand newlines   ",
    "it's a dog's life, isn't it? we'll see; they'd've",
    "1234 5.67 8,900 3rd 21st-century 1990s",
    "café naïve résumé Zürich",
    "東京の夜景 and 漢字",
    "a cat 🐱 with a hat 🎩",
    "oil painting::by greg rutkowski, trending on artstation, 8k, (masterpiece)",
    "<|startoftext|>inside text<|endoftext|>",
    "hyper-realistic, ultra-detailed; f/1.8 @ 50mm & iso-100 #photo $5 100%",
    " ".join(["word%d" % i for i in range(60)]),
]


def main():
    vocab, merges = vocab_and_merges()
    with tempfile.TemporaryDirectory() as d:
        json.dump(vocab, open(os.path.join(d, "vocab.json"), "w"))
        with open(os.path.join(d, "merges.txt"), "w") as f:
            f.write("#version: 0.2\n")
            for m in merges:
                f.write(" ".join(m) + "\n")
        sd1 = CLIPTokenizer(os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt"), pad_token="<|endoftext|>")
        sd2 = CLIPTokenizer(os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt"), pad_token="!")
        sd1.save_pretrained(d)
        tj = open(os.path.join(d, "tokenizer.json"), "rb").read()
    try:
        import open_clip
        ref = open_clip.get_tokenizer("ViT-L-14")
    except Exception:  # noqa: BLE001 - the cross-check is optional
        ref = None
    cases = []
    for p in PROMPTS:
        full = sd1(p, add_special_tokens=True).input_ids
        a = sd1(p, padding="max_length", max_length=77, truncation=True).input_ids
        b = sd2(p, padding="max_length", max_length=77, truncation=True).input_ids
        if ref is not None and "<|" not in p:
            oc = [int(x) for x in ref([p])[0].tolist()]
            # open_clip pads with 0 and truncates keeping EOS last, as CLIP was trained.
            want = [i for i in oc if i != 0]
            got = full if len(full) <= 77 else full[:76] + [full[-1]]
            assert got == want, (p, got[:20], want[:20])
        cases.append({"text": p, "ids_untruncated": full, "ids_sd1": a, "ids_sd2": b})
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"pad_sd1": "<|endoftext|>", "pad_sd2": "!", "cases": cases}, f, ensure_ascii=False)
    with gzip.GzipFile(os.path.join(OUT, "tokenizer.json.gz"), "wb", mtime=0) as f:
        f.write(tj)
    print(f"wrote {len(cases)} cases and tokenizer.json.gz to {os.path.relpath(OUT, ROOT)}"
          f" (open_clip cross-check: {'yes' if ref else 'not installed'})")


if __name__ == "__main__":
    main()
