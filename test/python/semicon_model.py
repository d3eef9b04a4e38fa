"""SEMICON restated in plain PyTorch from the semantics of aassxun/SEMICON models/SEMICON.py, with
the same module names (so its state dict is what the authors' code saves). Used by
semicon_reference.py (parity fixtures) and bench:train (the reference training step)."""
import math

import torch
import torch.nn as nn
import torchvision
from torchvision.models.resnet import Bottleneck


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


def mask(f, alpha=0.15):
    # alpha: 0.15 in the authors' code (its comment and the paper: 0.3)
    with torch.no_grad():
        n, _, h, w = f.shape
        a = torch.softmax(f.mean(1).reshape(n, h * w), 1)
        a = ((a - a.mean()) / a.std() ** alpha + 1).clamp(0, 2)
        return 2 - a.view(n, 1, h, w)


class Attention(nn.Module):
    def __init__(self, alpha=0.15):
        super().__init__()
        self.alpha = alpha
        self.layer4 = nn.Sequential(Bottleneck(1024, 256), conv_bn(1024, 256), Bottleneck(256, 64), conv_bn(256, 64),
                                    Bottleneck(64, 16))
        for i in (1, 2, 3):
            setattr(self, f"feature{i}", nn.Sequential(nn.Conv2d(64, 1, 1, bias=False), nn.BatchNorm2d(1), nn.ReLU()))

    def forward(self, x):
        x = self.layer4(x)
        f1 = self.feature1(x)
        x = x * mask(f1, self.alpha)
        f2 = self.feature2(x)
        x = x * mask(f2, self.alpha)
        return torch.cat([f1, f2, self.feature3(x)], 1)


class SEMICON(nn.Module):
    def __init__(self, bits, alpha=0.15):
        super().__init__()
        self.backbone = torchvision.models.resnet50()
        del self.backbone.layer4, self.backbone.fc
        self.refine_global = Refine()
        self.refine_local = Refine()
        self.attention = Attention(alpha)
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
