#!/usr/bin/env python3
"""Our PyTorch reference of the CLIP text encoder (the text tower of OpenAI CLIP / Stable
Diffusion 1.x), written from the CLIP paper and HF `CLIPTextModel`'s checkpoint layout, and the
fixtures `tests/text_encoders.rs` checks spadework against.

    python3 tools/clip_text_reference.py            # writes tests/fixtures/clip_text/*.safetensors

Each fixture is a safetensors file with random weights of a tiny config under the checkpoint's
own key names (`text_model.*`), the expected last hidden state (`expected.last_hidden_state`),
and in the header metadata the config and token ids (JSON). Needs only torch (the safetensors
file is written by hand: an 8-byte header length, the JSON header, the raw little-endian data).
"""
import json
import math
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
# SDPA instead of the written-out attention (set by the benchmark; the fixtures use the latter).
FAST_ATTENTION = False
# OpenAI CLIP ViT-L/14's text tower (Stable Diffusion 1.x), in spadework's ClipTextConfig fields.
VIT_L14 = dict(vocab=49408, width=768, layers=12, heads=12, max_positions=77, mlp_width=3072,
               quick_gelu=True, eps=1e-5)


class Attention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x):
        b, l, w = x.shape
        split = lambda t: t.view(b, l, self.heads, w // self.heads).transpose(1, 2)
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        if FAST_ATTENTION:  # tools/bench_ops_torch.py: PyTorch's fused kernel, as HF runs it
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.out_proj(a.transpose(1, 2).reshape(b, l, w))
        # Causal self-attention, scale 1/sqrt(head size), written out rather than SDPA.
        s = q @ k.transpose(-1, -2) / math.sqrt(w // self.heads)
        causal = torch.ones(l, l, dtype=torch.bool).tril()
        s = s.masked_fill(~causal, float("-inf"))
        a = s.softmax(-1) @ v
        return self.out_proj(a.transpose(1, 2).reshape(b, l, w))


class Mlp(nn.Module):
    def __init__(self, width, hidden, quick_gelu):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.quick_gelu = quick_gelu

    def forward(self, x):
        h = self.fc1(x)
        h = h * torch.sigmoid(1.702 * h) if self.quick_gelu else F.gelu(h)
        return self.fc2(h)


class Layer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(cfg["hidden_size"], eps=cfg["layer_norm_eps"])
        self.self_attn = Attention(cfg["hidden_size"], cfg["num_attention_heads"])
        self.layer_norm2 = nn.LayerNorm(cfg["hidden_size"], eps=cfg["layer_norm_eps"])
        self.mlp = Mlp(cfg["hidden_size"], cfg["intermediate_size"], cfg["hidden_act"] == "quick_gelu")

    def forward(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class Embeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.token_embedding = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.position_embedding = nn.Embedding(cfg["max_position_embeddings"], cfg["hidden_size"])

    def forward(self, ids):
        pos = torch.arange(ids.shape[1])
        return self.token_embedding(ids) + self.position_embedding(pos)[None]


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layers = nn.ModuleList([Layer(cfg) for _ in range(cfg["num_hidden_layers"])])


class TextModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embeddings = Embeddings(cfg)
        self.encoder = Encoder(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg["hidden_size"], eps=cfg["layer_norm_eps"])

    def forward(self, ids):
        x = self.embeddings(ids)
        for layer in self.encoder.layers:
            x = layer(x)
        return self.final_layer_norm(x)


class ClipText(nn.Module):
    """Module names give HF `CLIPTextModel`'s keys: text_model.encoder.layers.0.self_attn.q_proj.weight …"""

    def __init__(self, cfg):
        super().__init__()
        self.text_model = TextModel(cfg)

    def forward(self, ids):
        return self.text_model(ids)


def write_safetensors(path, tensors, metadata):
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        data = t.detach().contiguous().to(torch.float32).numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def fixture(name, cfg, ids, seed):
    torch.manual_seed(seed)
    model = ClipText(cfg).eval()
    with torch.no_grad():
        # Layer norms away from identity, so a swapped gamma/beta shows.
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
        out = model(torch.tensor([ids]))
    tensors = dict(model.state_dict())
    tensors["expected.last_hidden_state"] = out
    path = os.path.join(ROOT, "tests", "fixtures", "clip_text", f"{name}.safetensors")
    write_safetensors(path, tensors, {"config": json.dumps(cfg), "input_ids": json.dumps(ids)})
    print(f"wrote {os.path.relpath(path, ROOT)}: {len(ids)} tokens, out {tuple(out.shape)}, "
          f"|out| max {out.abs().max():.3f}")


if __name__ == "__main__":
    # transformers CLIPTextConfig field names, as config.json holds them.
    base = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=16, intermediate_size=128, layer_norm_eps=1e-5)
    # Fewer tokens than positions; ids spanning the vocabulary (0 and vocab - 1 included).
    fixture("tiny_quick_gelu", dict(base, hidden_act="quick_gelu"), [49, 3, 0, 96, 17, 17, 60, 2, 95, 11, 48], 1)
    fixture("tiny_gelu", dict(base, hidden_act="gelu", num_attention_heads=2, num_hidden_layers=3),
            [5, 96, 0, 1, 33, 70, 70, 70, 12, 9, 8, 7, 6, 5, 4, 3], 2)
