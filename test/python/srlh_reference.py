"""Reference outputs of sRLH's MainNet for parity tests, restated in plain PyTorch from the
semantics of Yajie-Zhang/sRLH (networks/sRLH.py, networks/resnet.py, utils/sRLM.py): the same
module names, so its state dict is what the authors' code saves; sRLM with per-sample loops, as
the reference computes it, so it checks our batched version independently.

usage: srlh_reference.py OUT_DIR SIZE BATCH SEED BITS CLASSES TRAIN_SIZE
Writes OUT_DIR/weights (state dict), OUT_DIR/state_dict.pt (torch.save of {'model_state_dict': ...}),
OUT_DIR/eval (input, features), OUT_DIR/train (training forward with dropout off: logits, features,
selected locals, and the gradients of a scalar loss of all three)."""
import copy
import sys

import torch
import torch.nn.functional as F
import torchvision

from bundle import add_training_state, perturb_batchnorm, write_bundle

out, size, batch, seed, bits, classes, train_size = sys.argv[1], *map(int, sys.argv[2:8])
torch.manual_seed(seed)


class Backbone(torchvision.models.ResNet):
    """ResNet-18 returning (layer4 map, dropout(pooled)), with the unused fc kept."""

    def __init__(self):
        super().__init__(torchvision.models.resnet.BasicBlock, [2, 2, 2, 2])
        self.dropout = torch.nn.Dropout(0.5)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        fm = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return fm, self.dropout(torch.flatten(self.avgpool(fm), 1))


local_dropout = torch.nn.Dropout(0.5)


def local_features(fm, step=2):
    n, c, h, w = fm.shape
    a = fm.sum(1)
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    coords = torch.stack([rows.flatten(), cols.flatten()], 1).float()
    out = []
    for bi in range(h // step):
        for bj in range(w // step):
            r0, c0 = bi * step, bj * step
            block = a[:, r0:r0 + step, c0:c0 + step].reshape(n, -1)
            idx = block.argmax(1)
            per_sample = []
            for s in range(n):
                r, cc = r0 + int(idx[s]) // step, c0 + int(idx[s]) % step
                cells = fm[s].permute(1, 2, 0).reshape(-1, c)
                sim = F.normalize(cells, dim=1) @ F.normalize(fm[s, :, r, cc], dim=0)
                dist = torch.linalg.norm(coords - torch.tensor([r, cc]).float(), dim=1) + 1
                weight = torch.softmax(sim.clamp(min=0) / dist, 0).detach()
                per_sample.append(local_dropout((cells * weight[:, None]).sum(0)))
            out.append(torch.stack(per_sample))
    return torch.stack(out, 1)


class MainNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.pretrained_model = Backbone()
        self.rawcls_net = torch.nn.Linear(512, classes)
        self.hash_layer = torch.nn.Sequential(torch.nn.Linear(512, bits), torch.nn.Tanh())

    def forward(self, x, parts=3, train=True):
        fm, g = self.pretrained_model(x)
        b = self.hash_layer(g)
        if not train:
            return b
        v = local_features(fm)
        dis = (g[:, None, :] - v).abs().sum(2)
        order = dis.argsort(1)[:, :parts]
        return self.rawcls_net(g), b, torch.stack([v[s, order[s]] for s in range(x.shape[0])])


model = MainNet()
perturb_batchnorm(model)
write_bundle(f"{out}/weights", {k: v.float() for k, v in model.state_dict().items()})
torch.save({"model_state_dict": model.state_dict()}, f"{out}/state_dict.pt")

x = torch.randn(batch, 3, size, size)
model.eval()
with torch.no_grad():
    features = model(x, train=False)
write_bundle(f"{out}/eval", {"input": x, "features": features})

if train_size == 0:
    sys.exit(0)

model.train()
model.pretrained_model.dropout.p = 0.0
local_dropout.p = 0.0


def relu_inputs(m, inp):
    saved = copy.deepcopy(m.state_dict())
    seen = []
    hooks = [mod.register_forward_pre_hook(lambda _m, a: seen.append(a[0].detach().clone()))
             for mod in m.modules() if isinstance(mod, torch.nn.ReLU)]
    with torch.no_grad():
        m.pretrained_model(inp)
    for h in hooks:
        h.remove()
    m.load_state_dict(saved)
    return seen


# Resample the training input until float32 and float64 agree on every ReLU mask (see
# resnet_reference.py): a near-tie would flip single gradient entries between implementations.
model64 = copy.deepcopy(model).double().train()
for attempt in range(20):
    x = torch.randn(batch, 3, train_size, train_size)
    flips = sum(int(((u > 0) != (v > 0)).sum()) for u, v in zip(relu_inputs(model, x), relu_inputs(model64, x.double())))
    if flips == 0:
        break
print(f"training input: attempt {attempt + 1}, ReLU mask flips: {flips}", file=sys.stderr)
logits, b, locals_ = model(x)
r1, r2, r3 = torch.randn_like(logits), torch.randn_like(b), torch.randn_like(locals_)
loss = (logits * r1).sum() + (b * r2).sum() + (locals_ * r3).sum()
loss.backward()
tensors = {"input": x, "r1": r1, "r2": r2, "r3": r3, "logits": logits.detach(), "features": b.detach(),
           "locals": locals_.detach(), "loss": loss.detach().reshape(1)}
add_training_state(model, tensors)
write_bundle(f"{out}/train", tensors)
