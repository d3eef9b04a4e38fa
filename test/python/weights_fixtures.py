"""Fixtures and checks for the weights tests (test/weights/*.test.ts).

usage:
  weights_fixtures.py resnet ARCH OUT SEED [--old] [--eval SIZE] [--formats legacy,zip] [--no-ref]
      Random torchvision ResNet weights (BN statistics randomised) saved as OUT/legacy.pth and/or
      OUT/zip.pth; the tensors as a bundle OUT/ref with their dtypes in OUT/dtypes.json; with
      --eval, an eval forward of one SIZE-px image in the bundle OUT/eval (input, logits).
      --old imitates files of PyTorch < 0.4 such as torchvision's resnet18-5c106cde.pth: no
      num_batches_tracked, tensors rebuilt by torch._utils._rebuild_tensor, no _metadata.
  weights_fixtures.py small OUT
      Dtypes, views (transpose, permute, expand, slices of one shared storage), a 0-d and an empty
      tensor, saved as OUT/legacy.pth and OUT/zip.pth; OUT/wrapped_{legacy,zip}.pth nest them with a
      DataParallel prefix in a training checkpoint. Reference bundle OUT/ref + OUT/dtypes.json.
  weights_fixtures.py evil OUT MARKER
      Pickles that would run `touch MARKER` if unpickled by Python, and a whole pickled nn.Module.
  weights_fixtures.py write-safetensors OUT
      OUT/st.safetensors written with numpy (F64/F32/F16/BF16/I64/I32/U8/BOOL, unpadded header)
      + bundle OUT/ref + OUT/dtypes.json (dtype and shape per tensor).
  weights_fixtures.py check-safetensors FILE REF [ARCH]
      Reads FILE with a numpy safetensors reader (checking the layout rules of the reference
      library), compares it with torch.load(REF) exactly, optionally loads it strictly into a
      torchvision ARCH; prints a JSON report.
"""
import collections
import json
import os
import pickle
import sys

import numpy as np
import torch

from bundle import perturb_batchnorm, write_bundle


def dtype_name(t):
    return str(t.dtype).replace("torch.", "")


def save_both(obj, out, stem, formats=("legacy", "zip")):
    if "legacy" in formats:
        torch.save(obj, os.path.join(out, f"{stem}legacy.pth"), _use_new_zipfile_serialization=False)
    if "zip" in formats:
        torch.save(obj, os.path.join(out, f"{stem}zip.pth"))


def write_ref(out, sd):
    write_bundle(os.path.join(out, "ref"), {k: v.float() for k, v in sd.items()})
    # The bundle stores 0-d tensors as [1] (numpy), so the real shapes are recorded here.
    with open(os.path.join(out, "dtypes.json"), "w") as f:
        json.dump({k: {"dtype": dtype_name(v), "shape": list(v.shape)} for k, v in sd.items()}, f)


def old_style_reduce(self, proto):
    # What Tensor.__reduce__ was before PyTorch 0.4.
    return (torch._utils._rebuild_tensor, (self.storage(), self.storage_offset(), tuple(self.size()), self.stride()))


def cmd_resnet(args):
    import torchvision

    arch, out, seed = args[0], args[1], int(args[2])
    old = "--old" in args
    formats = args[args.index("--formats") + 1].split(",") if "--formats" in args else ["legacy", "zip"]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(seed)
    model = getattr(torchvision.models, arch)()
    perturb_batchnorm(model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.num_batches_tracked.fill_(seed)
    sd = model.state_dict()
    if old:
        sd = collections.OrderedDict((k, v) for k, v in sd.items() if not k.endswith("num_batches_tracked"))
        saved = torch.Tensor.__reduce_ex__
        torch.Tensor.__reduce_ex__ = old_style_reduce
        try:
            save_both(sd, out, "", formats)
        finally:
            torch.Tensor.__reduce_ex__ = saved
    else:
        save_both(sd, out, "", formats)
    # The files must load in PyTorch itself, with the same values.
    for f in formats:
        back = torch.load(os.path.join(out, f"{f}.pth"))
        assert list(back) == list(sd) and all(torch.equal(back[k], sd[k]) for k in sd), f
    if "--no-ref" not in args:
        write_ref(out, sd)
    if "--eval" in args:
        size = int(args[args.index("--eval") + 1])
        model.eval()
        x = torch.randn(1, 3, size, size)
        with torch.no_grad():
            logits = model(x)
        write_bundle(os.path.join(out, "eval"), {"input": x, "logits": logits})


def small_state_dict():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(20, generator=g)
    base64 = torch.randn(10, generator=g, dtype=torch.float64)
    x = torch.randn(2, 3, 4, 5, generator=g)
    d = collections.OrderedDict()
    d["f32"] = torch.randn(2, 3, generator=g)
    d["f64"] = torch.randn(3, 4, generator=g, dtype=torch.float64) * 1e3
    d["f64_view"] = base64[1::2]
    d["f16"] = torch.tensor([1e-7, 6.0e-5, -0.0, 0.1, -2.5, 65504, float("inf"), -float("inf"), float("nan")], dtype=torch.float16)
    d["bf16"] = torch.randn(2, 3, generator=g).bfloat16()
    d["i64"] = torch.tensor([-3, 0, 5, 2**40], dtype=torch.int64)
    d["i32"] = torch.arange(-2, 4, dtype=torch.int32)
    d["i16"] = torch.tensor([-300, 300], dtype=torch.int16)
    d["i8"] = torch.tensor([-128, 127], dtype=torch.int8)
    d["u8"] = torch.tensor([0, 255], dtype=torch.uint8)
    d["bool"] = torch.tensor([True, False, True])
    d["scalar"] = torch.tensor(3.5)
    d["bn.num_batches_tracked"] = torch.tensor(7)
    d["transposed"] = torch.randn(4, 6, generator=g).t()
    d["permuted"] = x.permute(0, 2, 3, 1)
    d["shared_a"] = base[2:8].view(2, 3)
    d["shared_b"] = base[4:16].view(3, 4)[:, 1:3]
    d["shared_c"] = base[::3]
    d["expanded"] = torch.randn(3, 1, generator=g).expand(3, 4)
    d["empty"] = torch.zeros(0, 3)
    return d


def cmd_small(args):
    out = args[0]
    os.makedirs(out, exist_ok=True)
    d = small_state_dict()
    save_both(d, out, "")
    wrapped = {
        "epoch": 3,
        "model_state_dict": collections.OrderedDict((f"module.{k}", v) for k, v in d.items()),
        "optimizer_state_dict": {"state": {0: {"momentum_buffer": torch.ones(3)}}, "param_groups": [{"lr": 0.1, "params": [0], "nesterov": False}]},
        "note": None,
    }
    save_both(wrapped, out, "wrapped_")
    for f in ["legacy.pth", "zip.pth"]:
        back = torch.load(os.path.join(out, f))
        assert all(torch.equal(back[k], d[k]) or (k == "f16") for k in d), f
    write_ref(out, d)


class Payload:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


def cmd_evil(args):
    out, marker = args[0], args[1]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "system_p2.pkl"), "wb") as f:
        f.write(pickle.dumps(Payload(os.system, f"touch {marker}"), protocol=2))
    with open(os.path.join(out, "eval_p4.pkl"), "wb") as f:
        f.write(pickle.dumps(Payload(eval, f"__import__('os').system('touch {marker}')"), protocol=4))
    sd = {"weight": torch.zeros(2), "payload": Payload(os.system, f"touch {marker}")}
    save_both(sd, out, "system_")
    torch.save(torch.nn.Linear(2, 2), os.path.join(out, "module.pth"))


ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
             "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_, "BF16": np.uint16}


def cmd_write_safetensors(args):
    out = args[0]
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(1)
    d = collections.OrderedDict()
    d["w64"] = torch.randn(2, 3, generator=g, dtype=torch.float64)
    d["w32"] = torch.randn(3, 2, 2, generator=g)
    d["w16"] = torch.randn(5, generator=g).half()
    d["wbf16"] = torch.randn(4, generator=g).bfloat16()
    d["count"] = torch.tensor(12, dtype=torch.int64)
    d["i32"] = torch.tensor([-7, 9], dtype=torch.int32)
    d["u8"] = torch.tensor([3, 250], dtype=torch.uint8)
    d["mask"] = torch.tensor([False, True])
    codes = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}
    header, chunks, offset = {"__metadata__": {"format": "pt", "note": "numpy writer"}}, [], 0
    for k, v in d.items():
        raw = (v.view(torch.int16) if v.dtype == torch.bfloat16 else v).contiguous().numpy().tobytes()
        header[k] = {"dtype": codes[v.dtype], "shape": list(v.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        chunks.append(raw)
    h = json.dumps(header).encode()
    if len(h) % 8 == 0:
        h += b" "  # an unaligned data section, which readers must cope with
    with open(os.path.join(out, "st.safetensors"), "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(chunks))
    write_ref(out, d)


def read_safetensors(path):
    """A numpy reader that enforces the reference library's rules: 8-byte header length, JSON,
    data offsets contiguous from 0 and covering the data exactly."""
    with open(path, "rb") as f:
        b = f.read()
    n = int.from_bytes(b[:8], "little")
    header = json.loads(b[8:8 + n])
    data = b[8 + n:]
    entries = sorted(((k, e) for k, e in header.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][0])
    pos = 0
    out = {}
    for k, e in entries:
        s, t = e["data_offsets"]
        assert s == pos, f"{k}: hole or overlap at {s} (expected {pos})"
        pos = t
        dt = ST_DTYPES[e["dtype"]]
        a = np.frombuffer(data[s:t], dtype=dt).reshape(e["shape"])
        assert a.nbytes == t - s, k
        out[k] = (e["dtype"], a)
    assert pos == len(data), f"data section has {len(data)} bytes, tensors cover {pos}"
    return {"header_len": n, "metadata": header.get("__metadata__"), "tensors": out}


def cmd_check_safetensors(args):
    path, ref = args[0], args[1]
    st = read_safetensors(path)
    sd = torch.load(ref, map_location="cpu")
    report = {"header_aligned": st["header_len"] % 8 == 0, "metadata": st["metadata"],
              "names_in_order": [k for k in st["tensors"] if k in sd] == list(sd),
              "extra": [k for k in st["tensors"] if k not in sd], "mismatches": [], "dtypes": {}}
    loaded = {}
    for k, v in sd.items():
        if k not in st["tensors"]:
            report["mismatches"].append(f"{k}: missing")
            continue
        code, a = st["tensors"][k]
        report["dtypes"][k] = code
        t = torch.from_numpy(a.copy())
        loaded[k] = t
        if list(a.shape) != list(v.shape):
            report["mismatches"].append(f"{k}: shape {list(a.shape)} vs {list(v.shape)}")
        elif v.dtype == torch.int64:
            if code != "I64" or not torch.equal(t, v):
                report["mismatches"].append(f"{k}: int64 {code}")
        elif not torch.allclose(t, v.float(), rtol=0, atol=0, equal_nan=True):
            report["mismatches"].append(f"{k}: max abs diff {(t - v.float()).abs().max().item()}")
    if len(args) > 2:
        import torchvision

        model = getattr(torchvision.models, args[2])()
        model.load_state_dict(loaded, strict=True)
        report["strict_load"] = True
    print(json.dumps(report))


COMMANDS = {"resnet": cmd_resnet, "small": cmd_small, "evil": cmd_evil,
            "write-safetensors": cmd_write_safetensors, "check-safetensors": cmd_check_safetensors}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](sys.argv[2:])
