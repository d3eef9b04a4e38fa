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


def perturb_batchnorm(model):
    """Non-trivial batch-norm statistics and affine parameters, so that BN is really tested."""
    import torch
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
                m.num_batches_tracked.fill_(7)


def add_training_state(model, tensors):
    """Adds running statistics (state.NAME) and parameter gradients (grad.NAME) after a backward."""
    for k, v in model.state_dict().items():
        if "running" in k:
            tensors[f"state.{k}"] = v
    for k, p in model.named_parameters():
        if p.grad is not None:
            tensors[f"grad.{k}"] = p.grad
    return tensors
