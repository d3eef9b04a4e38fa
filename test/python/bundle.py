"""A tiny tensor bundle for test fixtures: index.json (name -> shape, offset) + data.bin (float32).

Written by the reference scripts, read by test/helpers/bundle.ts. Not a product format."""
import json
import os

import numpy as np


def write_bundle(path, tensors):
    os.makedirs(path, exist_ok=True)
    index = {}
    offset = 0
    with open(os.path.join(path, "data.bin"), "wb") as f:
        for name, t in tensors.items():
            a = np.ascontiguousarray(np.asarray(t.detach() if hasattr(t, "detach") else t, dtype=np.float32))
            f.write(a.tobytes())
            index[name] = {"shape": list(a.shape), "offset": offset}
            offset += a.size
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump(index, f)
