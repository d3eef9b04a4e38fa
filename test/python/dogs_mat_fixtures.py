"""Stanford Dogs list files as MATLAB v5 MAT-files, for test/data/dogs-mat.test.ts.

usage: dogs_mat_fixtures.py < spec.json
spec: a list of {"path", "form": "struct"|"top", "var" (struct name), "compress", "oned_as",
"cells": "char"|"nested", "labels_dtype", "endian": "little"|"big", "entries": [[file, label], ...],
"extra": true (adds a sparse and a large dense matrix)}. An entry's file may be a number (a malformed entry).
Little-endian files are written by scipy.io.savemat. scipy writes only native byte order, so the
big-endian files are written here from the MAT-file format description and then read back with
scipy.io.loadmat, which must return the same lists (that checks the writer, not our reader).
Also writes refused.mat (a sparse array and a MATLAB object) at the path given as argv[1] if any."""
import json
import os
import struct
import sys

import numpy as np
import scipy.io as sio
import scipy.sparse
from scipy.io.matlab import MatlabObject


def cell_of(values, cells, oned_as):
    """file_list as MATLAB stores it: an Nx1 cell of strings, or of 1x1 cells holding a string."""
    n = len(values)
    out = np.empty((n, 1) if oned_as == "column" else (1, n), dtype=object)
    for i, v in enumerate(values):
        s = np.array([v]) if isinstance(v, str) else np.array([[float(v)]])
        if cells == "nested":
            inner = np.empty((1, 1), dtype=object)
            inner[0, 0] = s
            s = inner
        out.flat[i] = s
    return out


def variables(spec):
    files = [e[0] for e in spec["entries"]]
    labels = np.array([e[1] for e in spec["entries"]], dtype=spec.get("labels_dtype", "float64"))
    fields = {
        "file_list": cell_of(files, spec["cells"], spec["oned_as"]),
        # The real annotation_list: the same paths without extension (unused by the loader).
        "annotation_list": cell_of([os.path.splitext(f)[0] if isinstance(f, str) else f for f in files], spec["cells"], spec["oned_as"]),
        "labels": labels,  # 1-D: savemat's oned_as decides 1xN or Nx1
    }
    v = {spec["var"]: fields} if spec["form"] == "struct" else dict(fields)
    if spec.get("extra"):
        # The real train_data.mat also holds a large feature matrix; a sparse one must be skipped.
        v["train_fg_data"] = scipy.sparse.random(40, 30, density=0.1, format="csc", random_state=0)
        # A dense matrix larger than the reader's first look at a variable: (i * 100 + j) / 7.
        v["train_data"] = np.arange(200 * 100, dtype=np.float64).reshape(200, 100) / 7
    return v


# --- a minimal big-endian MAT v5 writer (uncompressed) -----------------------------------
MI_INT8, MI_UINT8, MI_UINT16, MI_INT32, MI_UINT32, MI_DOUBLE, MI_MATRIX = 1, 2, 4, 5, 6, 9, 14
CELL, STRUCT, CHAR, DOUBLE = 1, 2, 4, 6


def element(e, typ, data):
    if len(data) <= 4 and typ != MI_MATRIX:  # small data element format
        return struct.pack(e + "I", (len(data) << 16) | typ) + data.ljust(4, b"\0")
    return struct.pack(e + "II", typ, len(data)) + data + b"\0" * (-len(data) % 8)


def matrix(e, cls, dims, name, body):
    head = element(e, MI_UINT32, struct.pack(e + "II", cls, 0))
    head += element(e, MI_INT32, struct.pack(e + "%di" % len(dims), *dims))
    head += element(e, MI_INT8, name.encode("ascii"))
    return element(e, MI_MATRIX, head + body)


def be_value(e, v, name=""):
    if isinstance(v, str):  # a 1xN char array, as UTF-16 code units
        return matrix(e, CHAR, [1, len(v)], name, element(e, MI_UINT16, struct.pack(e + "%dH" % len(v), *map(ord, v))))
    if isinstance(v, (int, float)):
        v = np.array([[v]], dtype=float)
    if isinstance(v, list):  # a cell, column vector
        return matrix(e, CELL, [len(v), 1], name, b"".join(be_value(e, x) for x in v))
    if isinstance(v, dict):  # a 1x1 struct
        names = list(v)
        width = max(len(n) for n in names) + 1
        body = element(e, MI_INT32, struct.pack(e + "i", width))
        body += element(e, MI_INT8, b"".join(n.encode("ascii").ljust(width, b"\0") for n in names))
        body += b"".join(be_value(e, v[n]) for n in names)
        return matrix(e, STRUCT, [1, 1], name, body)
    a = np.asarray(v)
    # Class double with integral values stored as miUINT8, as MATLAB does when they fit.
    if np.all(a == np.round(a)) and a.min() >= 0 and a.max() < 256:
        data = element(e, MI_UINT8, a.T.astype(np.uint8).tobytes())
    else:
        data = element(e, MI_DOUBLE, a.T.astype(e + "f8").tobytes())
    return matrix(e, DOUBLE, list(a.shape), name, data)


def write_big_endian(path, spec):
    files = [e[0] for e in spec["entries"]]
    nest = (lambda f: [f]) if spec["cells"] == "nested" else (lambda f: f)
    fields = {
        "file_list": [nest(f) for f in files],
        "annotation_list": [nest(os.path.splitext(f)[0] if isinstance(f, str) else f) for f in files],
        "labels": np.array([[e[1]] for e in spec["entries"]], dtype=float),
    }
    text = b"MATLAB 5.0 MAT-file, written by dogs_mat_fixtures.py (big-endian)".ljust(116, b" ")
    out = text + b"\0" * 8 + struct.pack(">H", 0x0100) + b"MI"
    if spec["form"] == "struct":
        out += be_value(">", fields, spec["var"])
    else:
        out += b"".join(be_value(">", v, k) for k, v in fields.items())
    with open(path, "wb") as f:
        f.write(out)
    # The writer is checked by scipy's reader.
    m = sio.loadmat(path)
    info = m[spec["var"]][0, 0] if spec["form"] == "struct" else m
    got_files = info["file_list"]
    got_labels = info["labels"]
    for i, (f, lab) in enumerate(spec["entries"]):
        x = got_files[i, 0]
        if spec["cells"] == "nested":
            x = x[0, 0]
        assert x[0] == f, (x, f)
        assert got_labels[i, 0] == lab


def main():
    specs = json.load(sys.stdin)
    for spec in specs:
        os.makedirs(os.path.dirname(spec["path"]), exist_ok=True)
        if spec.get("endian") == "big":
            write_big_endian(spec["path"], spec)
        else:
            sio.savemat(spec["path"], variables(spec), do_compression=spec["compress"], oned_as=spec["oned_as"])
    if len(sys.argv) > 1:
        fields = np.zeros((1, 1), dtype=[("expr", object)])
        fields[0, 0]["expr"] = np.array(["x+1"])
        obj = MatlabObject(fields, "inline")
        sio.savemat(sys.argv[1], {"sp": scipy.sparse.eye(3, format="csc"), "obj": obj, "ok": np.array([[7.0]])})


main()
