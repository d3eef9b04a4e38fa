"""Reference outputs of SEMICON for parity tests, restated in plain PyTorch from the semantics of
aassxun/SEMICON models/SEMICON.py with the same module names, so that its state dict is what the
authors' code saves.

usage: semicon_reference.py OUT_DIR SIZE BATCH SEED BITS TRAIN_SIZE [--float64] [--alpha X]
Writes OUT_DIR/weights, OUT_DIR/state_dict.pt, OUT_DIR/eval (input, features) and, unless
TRAIN_SIZE is 0, OUT_DIR/train (a training-mode forward and the gradients of sum(features * r))
and OUT_DIR/evalgrad (the gradients of sum(features * r) of the eval-mode forward, BN on running
statistics, on the same input). With --float64, also OUT_DIR/train64: the training pass in float64
from the same weights, input and r (how far float32 itself is from exact).
Prints the parameter count."""
import copy
import sys

import torch
import torch.nn as nn

from bundle import add_training_state, perturb_batchnorm, write_bundle
from semicon_model import SEMICON

out, size, batch, seed, bits, train_size = sys.argv[1], *map(int, sys.argv[2:7])
float64 = "--float64" in sys.argv[7:]
alpha = float(sys.argv[sys.argv.index("--alpha") + 1]) if "--alpha" in sys.argv else 0.15
torch.manual_seed(seed)


model = SEMICON(bits, alpha)
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
