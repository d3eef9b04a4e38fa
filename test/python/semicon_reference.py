"""Reference outputs of SEMICON for parity tests, restated in plain PyTorch from the semantics of
aassxun/SEMICON models/SEMICON.py with the same module names, so that its state dict is what the
authors' code saves.

usage: semicon_reference.py OUT_DIR SIZE BATCH SEED BITS TRAIN_SIZE [--float64]
Writes OUT_DIR/weights, OUT_DIR/state_dict.pt, OUT_DIR/eval (input, features) and, unless
TRAIN_SIZE is 0, OUT_DIR/train (a training-mode forward and the gradients of sum(features * r))
and OUT_DIR/evalgrad (the gradients of sum(features * r) of the eval-mode forward, BN on running
statistics, on the same input). With --float64, also OUT_DIR/train64: the training pass in float64
from the same weights, input and r (how far float32 itself is from exact).
Prints the parameter count."""
import copy
import math
import sys

import torch
import torch.nn as nn
import torchvision
from torchvision.models.resnet import Bottleneck

from bundle import add_training_state, perturb_batchnorm, write_bundle

out, size, batch, seed, bits, train_size = sys.argv[1], *map(int, sys.argv[2:7])
float64 = "--float64" in sys.argv[7:]
torch.manual_seed(seed)


def signed_sqrt(a):
    return a.sign() * (a.abs() + 1e-5).sqrt()


class ChannelTransformer(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.hd = heads, dim // heads
        self.norm = nn.BatchNorm2d(dim)
        self.relu = nn.ReLU()
        self.qkv = nn.Conv2d(dim, dim * 3, 1, groups=heads)
        self.qkv2 = nn.Conv2d(dim, dim * 3, 1, groups=self.hd)

    def forward(self, x):
        n, c, h, w = x.shape
        q, k, v = self.qkv(x).view(n, 3, self.heads, self.hd, h * w).unbind(1)
        a = torch.softmax(signed_sqrt(q @ k.transpose(2, 3) / math.sqrt(self.hd)), -1)
        x1 = (a @ v).view(n, c, h, w) + x
        # The authors' ReLU is in place (nn.ReLU(inplace=True) applied to y), so y itself becomes
        # relu(y): the second residual adds relu(norm(x1)), not norm(x1).
        y = self.relu(self.norm(x1.view(n, self.heads, self.hd, h, w).permute(0, 2, 1, 3, 4).reshape(n, c, h, w)))
        q, k, v = self.qkv2(y).view(n, 3, self.hd, self.heads, h * w).unbind(1)
        a = torch.softmax(signed_sqrt(q @ k.transpose(2, 3) / math.sqrt(self.heads)), -1)
        return (a @ v).view(n, self.hd, self.heads, h, w).permute(0, 2, 1, 3, 4).reshape(n, c, h, w) + y


def conv_bn(i, o, stride=1):
    return nn.Sequential(nn.Conv2d(i, o, 1, stride, bias=False), nn.BatchNorm2d(o))


class Refine(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer4 = nn.Sequential(Bottleneck(1024, 512, 2, conv_bn(1024, 2048, 2)), Bottleneck(2048, 512),
                                    ChannelTransformer(2048, 32), Bottleneck(2048, 512), ChannelTransformer(2048, 32))

    def forward(self, x):
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.layer4(x), 1), 1)


def mask(f):
    with torch.no_grad():
        n, _, h, w = f.shape
        a = torch.softmax(f.mean(1).reshape(n, h * w), 1)
        a = ((a - a.mean()) / a.std() ** 0.15 + 1).clamp(0, 2)
        return 2 - a.view(n, 1, h, w)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer4 = nn.Sequential(Bottleneck(1024, 256), conv_bn(1024, 256), Bottleneck(256, 64), conv_bn(256, 64),
                                    Bottleneck(64, 16))
        for i in (1, 2, 3):
            setattr(self, f"feature{i}", nn.Sequential(nn.Conv2d(64, 1, 1, bias=False), nn.BatchNorm2d(1), nn.ReLU()))

    def forward(self, x):
        x = self.layer4(x)
        f1 = self.feature1(x)
        x = x * mask(f1)
        f2 = self.feature2(x)
        x = x * mask(f2)
        return torch.cat([f1, f2, self.feature3(x)], 1)


class SEMICON(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = torchvision.models.resnet50()
        del self.backbone.layer4, self.backbone.fc
        self.refine_global = Refine()
        self.refine_local = Refine()
        self.attention = Attention()
        g, l = bits // 2 + (1 if bits == 32 else 0), bits // 6
        for name, rows in (("W_G", g), ("W_L1", l), ("W_L2", l), ("W_L3", l)):
            p = nn.Parameter(torch.empty(rows, 2048))
            nn.init.kaiming_uniform_(p, a=math.sqrt(5))
            setattr(self, name, p)

    def forward(self, x):
        b = self.backbone
        out = b.layer3(b.layer2(b.layer1(b.maxpool(b.relu(b.bn1(b.conv1(x)))))))
        att = self.attention(out)
        vecs = [self.refine_global(out)] + [self.refine_local(out * att[:, i:i + 1]) for i in range(3)]
        ws = [self.W_G, self.W_L1, self.W_L2, self.W_L3]
        return torch.tanh(torch.cat([v @ w.t() for v, w in zip(vecs, ws)], 1))


model = SEMICON()
perturb_batchnorm(model)
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            # Moderate weights keep activations of this deep random network in a sane range.
            m.weight.mul_(0.5)


def calibrate_attention_heads(model):
    """Running statistics and bias of the attention heads' BN(1) from a random batch, head after
    head, so that about half of each map is positive in eval mode.

    With arbitrary statistics the heads' ReLU outputs are zero everywhere in eval mode: the local
    branches would then see zeros only, and the masks the degenerate 0/0 of a constant map."""
    model.eval()
    for i in (1, 2, 3):
        bn = getattr(model.attention, f"feature{i}")[1]
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average: after one batch, that batch's statistics
        bn.train()
        seen = []
        hook = bn.register_forward_hook(lambda _m, _i, o: seen.append(o.detach()))
        with torch.no_grad():
            model(torch.randn(2, 3, size, size))
        hook.remove()
        bn.bias.data -= seen[0].median()
        bn.momentum = 0.1
        bn.eval()
        bn.num_batches_tracked.fill_(7)


calibrate_attention_heads(model)
print(sum(p.numel() for p in model.parameters()))
write_bundle(f"{out}/weights", {k: v.float() for k, v in model.state_dict().items()})
torch.save({"model_state_dict": model.state_dict()}, f"{out}/state_dict.pt")

x = torch.randn(batch, 3, size, size)
model.eval()
with torch.no_grad():
    features = model(x)
write_bundle(f"{out}/eval", {"input": x, "features": features})
if train_size == 0:
    sys.exit(0)


def relu_margin(m, inp):
    """The smallest |input| of any ReLU in a float64 eval-mode forward of `inp`."""
    seen = []
    hooks = [mod.register_forward_pre_hook(lambda _m, a: seen.append(a[0].detach().abs().min()))
             for mod in m.modules() if isinstance(mod, nn.ReLU)]
    with torch.no_grad():
        m(inp.double())
    for h in hooks:
        h.remove()
    return float(min(seen))


# A ReLU input within float32 rounding of 0 flips between implementations and changes gradients
# far upstream (one at -7e-8 moved the backbone's gradients by 2e-3): of a few inputs, take the one
# whose ReLU inputs stay farthest from 0 (in eval mode; in training mode flips are unavoidable).
eval64 = copy.deepcopy(model).double().eval()
candidates = [torch.randn(batch, 3, train_size, train_size) for _ in range(4)]
margins = [relu_margin(eval64, c) for c in candidates]
x = candidates[max(range(len(candidates)), key=lambda i: margins[i])]
print(f"gradient input: ReLU margins {', '.join(f'{v:.1e}' for v in margins)}", file=sys.stderr)
del eval64
r = torch.randn(batch, bits)


def gradients(m, dtype, train):
    """Features and parameter gradients of sum(features * r); BN on batch statistics if train."""
    m = copy.deepcopy(m).to(dtype).train(train)
    features = m(x.to(dtype))
    (features * r.to(dtype)).sum().backward()
    return add_training_state(m, {"features": features.detach()})


# Each pass runs on a copy, so all start from the same running statistics.
write_bundle(f"{out}/evalgrad", gradients(model, torch.float32, False))
if float64:
    write_bundle(f"{out}/train64", gradients(model, torch.float64, True))
write_bundle(f"{out}/train", {"input": x, "r": r, **gradients(model, torch.float32, True)})
