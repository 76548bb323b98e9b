#!/usr/bin/env python3
"""Write the tiny PyTorch checkpoint fixtures used by the tests of
src/weights/pth/ into tests/fixtures/pth/.

Usage (needs torch; run from the repository root or anywhere):

    python3 tools/make_pth_fixtures.py [OUTPUT_DIR]

Files written (each well under 20 KB):

  sd_zip.pth          state dict (OrderedDict with _metadata), torch.save default (zip)
  sd_zip_p4.pth       same, zip serialization with pickle protocol 4
                      (exercises FRAME / MEMOIZE / STACK_GLOBAL / SHORT_BINUNICODE)
  sd_legacy.pth       same, _use_new_zipfile_serialization=False (legacy stream)
  nested_zip.pth      {"state_dict": {...}, "epoch": 3, "name": "x", "lr": 0.5, "none": None}
  nested_legacy.pth   same in the legacy format (also contains an nn.Parameter)
  legacy_views.pth    hand-written legacy file whose persistent ids carry the old
                      (torch < 1.0 style) storage view_metadata; verified with torch.load
  malicious.pkl       pickle.dumps(protocol=2) of an object whose __reduce__ is
                      (os.system, ('echo pwned',))  -- never load it with pickle/torch!
  malicious_zip.pth   a zip checkpoint whose archive/data.pkl is that pickle
  expected.json       for every good file: ordered list of {name, dtype, shape, values}

The state dict contains f32/f64/f16/bf16/i64/i32/i16/i8/u8/bool tensors, a 0-dim
int64 num_batches_tracked, an empty tensor, a transposed (non-contiguous) view and
slices sharing one storage with a non-zero storage offset.
"""
import collections
import io
import json
import os
import pickle
import struct
import sys
import zipfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "tests", "fixtures", "pth")

DTYPE_NAMES = {
    torch.float64: "float64",
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.int16: "int16",
    torch.int8: "int8",
    torch.uint8: "uint8",
    torch.bool: "bool",
}


def make_state_dict():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 2), torch.nn.BatchNorm2d(3))
    with torch.no_grad():
        net[1].running_mean.copy_(torch.tensor([0.25, -0.5, 1.0]))
        net[1].num_batches_tracked.fill_(7)
    # A real module state dict: OrderedDict carrying a `_metadata` attribute,
    # with a 0-dim int64 `1.num_batches_tracked`.
    sd = net.state_dict()
    sd["f64"] = torch.tensor([1.0 / 3.0, -2.5, 1e300], dtype=torch.float64)
    # 2**-24 is the smallest f16 subnormal, 65504 the largest finite f16.
    sd["f16"] = torch.tensor([[1.0, -2.5], [65504.0, 2.0 ** -24]], dtype=torch.float16)
    sd["bf16"] = torch.tensor([1.5, -3.0, 1e30], dtype=torch.bfloat16)
    sd["i64"] = torch.arange(-3, 3, dtype=torch.int64).reshape(2, 3)
    sd["i32"] = torch.tensor([-7, 2 ** 31 - 1], dtype=torch.int32)
    sd["i16"] = torch.tensor([-300, 300], dtype=torch.int16)
    sd["i8"] = torch.tensor([-128, 127], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 255], dtype=torch.uint8)
    sd["flags"] = torch.tensor([True, False, True])
    sd["empty"] = torch.zeros(0, 3)
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    sd["base"] = base
    sd["transposed"] = base.t()  # shares base's storage, strides (1, 4)
    sd["slice"] = base.view(-1)[5:9]  # storage offset 5
    sd["column"] = base[:, 1]  # storage offset 1, stride 4
    sd["scalar_f32"] = torch.tensor(2.75)
    assert not sd["transposed"].is_contiguous()
    return sd


def make_nested():
    inner = collections.OrderedDict()
    inner["layer.weight"] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    inner["layer.bias"] = torch.nn.Parameter(torch.tensor([0.5, -0.5]))
    inner["steps"] = torch.tensor(11)
    return {"state_dict": inner, "epoch": 3, "name": "x", "lr": 0.5, "none": None}


def describe(obj, prefix=""):
    """Flatten like the Rust loader: nested dicts joined with '.', non-tensors skipped."""
    out = []
    for k, v in obj.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out += describe(v, name + ".")
        elif isinstance(v, torch.Tensor):
            t = v.detach()
            vals = t.flatten().tolist() if t.dim() > 0 else [t.item()]
            if t.dtype == torch.bool:
                vals = [int(x) for x in vals]
            out.append({
                "name": name,
                "dtype": DTYPE_NAMES[t.dtype],
                "shape": list(t.shape),
                "values": vals,
            })
    return out


def torch_load(path):
    return torch.load(path, weights_only=False)


class _FakeStorage:
    """Stands for a storage view in a hand-written legacy checkpoint."""

    def __init__(self, pid):
        self.pid = pid


class _FakeTensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride)

    def __reduce__(self):
        storage, offset, size, stride = self.args
        return (torch._utils._rebuild_tensor_v2,
                (storage, offset, size, stride, False, collections.OrderedDict()))


class _LegacyPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _FakeStorage):
            return obj.pid
        return None


def write_legacy_views(path):
    """Legacy stream as written by torch < 1.0, where a tensor's storage could be
    a view of a bigger root storage: ('storage', type, root_key, location, numel,
    (view_key, offset, view_size))."""
    root = list(range(10))  # float32 root storage "r0" with 10 elements
    view_a = _FakeStorage(("storage", torch.FloatStorage, "r0", "cpu", 10, ("v1", 2, 6)))
    whole = _FakeStorage(("storage", torch.FloatStorage, "r0", "cpu", 10, None))
    longs = _FakeStorage(("storage", torch.LongStorage, "r1", "cpu", 3, None))
    sd = collections.OrderedDict()
    sd["view.matrix"] = _FakeTensor(view_a, 1, (2, 2), (2, 1))  # root elements 3,4,5,6
    sd["view.transposed"] = _FakeTensor(view_a, 0, (2, 3), (1, 2))  # non-contiguous in view
    sd["whole"] = _FakeTensor(whole, 0, (10,), (1,))
    sd["longs"] = _FakeTensor(longs, 0, (3,), (1,))
    f = io.BytesIO()
    p = 2
    pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=p)
    pickle.dump(1001, f, protocol=p)
    pickle.dump({"protocol_version": 1001, "little_endian": True,
                 "type_sizes": {"short": 2, "int": 4, "long": 4}}, f, protocol=p)
    _LegacyPickler(f, protocol=p).dump(sd)
    pickle.dump(["r0", "r1"], f, protocol=p)
    f.write(struct.pack("<q", 10) + struct.pack("<10f", *root))
    f.write(struct.pack("<q", 3) + struct.pack("<3q", -1, 0, 1 << 40))
    with open(path, "wb") as out:
        out.write(f.getvalue())


class _Pwn:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def main():
    os.makedirs(OUT, exist_ok=True)
    expected = {}

    sd = make_state_dict()
    assert hasattr(sd, "_metadata")
    torch.save(sd, os.path.join(OUT, "sd_zip.pth"))
    torch.save(sd, os.path.join(OUT, "sd_zip_p4.pth"), pickle_protocol=4)
    torch.save(sd, os.path.join(OUT, "sd_legacy.pth"), _use_new_zipfile_serialization=False)
    for name in ["sd_zip.pth", "sd_zip_p4.pth", "sd_legacy.pth"]:
        loaded = torch_load(os.path.join(OUT, name))
        assert describe(loaded) == describe(sd), name
        expected[name] = describe(loaded)

    nested = make_nested()
    torch.save(nested, os.path.join(OUT, "nested_zip.pth"))
    torch.save(nested, os.path.join(OUT, "nested_legacy.pth"), _use_new_zipfile_serialization=False)
    for name in ["nested_zip.pth", "nested_legacy.pth"]:
        loaded = torch_load(os.path.join(OUT, name))
        assert describe(loaded) == describe(nested), name
        expected[name] = describe(loaded)

    views = os.path.join(OUT, "legacy_views.pth")
    write_legacy_views(views)
    loaded = torch_load(views)
    expected["legacy_views.pth"] = describe(loaded)
    assert expected["legacy_views.pth"][0]["values"] == [3.0, 4.0, 5.0, 6.0]

    evil = pickle.dumps(_Pwn(), protocol=2)
    with open(os.path.join(OUT, "malicious.pkl"), "wb") as f:
        f.write(evil)
    with zipfile.ZipFile(os.path.join(OUT, "malicious_zip.pth"), "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", evil)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")

    # SPADE generator checkpoints whose key tensors have the wrong number of dimensions:
    # `convert` must name them, not index into them.
    torch.save({"head_0.conv_0.weight": torch.tensor(2.0)}, os.path.join(OUT, "bad_head_0dim.pth"))
    torch.save({"head_0.conv_0.weight": torch.zeros(16, 1, 1, 1),
                "head_0.norm_0.mlp_shared.0.weight": torch.zeros(3)},
               os.path.join(OUT, "bad_mlp_1dim.pth"))
    # A training checkpoint wrapping a DataParallel generator ({"state_dict": {"module.…"}}):
    # unwrapped, saying so; its integer tensor is named as not floating point.
    torch.save({"state_dict": {"module.head_0.conv_0.weight": torch.zeros(16, 1, 3, 3),
                               "module.fc.weight": torch.zeros(4, 3, dtype=torch.int64)},
                "epoch": 3}, os.path.join(OUT, "int_module.pth"))

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")

    for name in sorted(os.listdir(OUT)):
        size = os.path.getsize(os.path.join(OUT, name))
        assert size < 20_000, (name, size)
        print(f"{size:7d}  {name}")


if __name__ == "__main__":
    main()
