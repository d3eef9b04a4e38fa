/**
 * bench:train: one training step (forward, loss, gradients of every weight, SGD update) of sRLH
 * (ResNet-18) and SEMICON (ResNet-50) at 224 px, batch 16, on the TensorFlow.js backend fgh picks,
 * against the same step in PyTorch eager on the same machine (all cores), measured in the same
 * run. Prints seconds per step and the ratio (goal: at least half of PyTorch's CPU speed).
 * Options: --size PX (224), --batch N (16), --steps N (3, after one warm-up), --only srlh|semicon.
 */
import os from 'node:os';
import { tf } from '../../src/backend/tf.js';
import type { Tensor2D } from '../../src/backend/tf.js';
import { describeBackend, selectBackend } from '../../src/backend/select.js';
import { Srlh } from '../../src/models/srlh.js';
import { Semicon } from '../../src/models/semicon.js';
import { Sgd } from '../../src/train/sgd.js';
import { crossEntropy } from '../../src/train/losses.js';
import { Rng } from '../../src/util/rng.js';
import { pythonWith, runPython } from '../helpers/python.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : def;
}
const SIZE = Number(arg('size', '224'));
const BATCH = Number(arg('batch', '16'));
const STEPS = Number(arg('steps', '3'));
const ONLY = arg('only', 'both');

const REFERENCE = String.raw`
import os, sys, time, torch, torchvision
torch.set_num_threads(os.cpu_count())
method, size, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
x = torch.randn(batch, 3, size, size)
if method == 'srlh':
    net = torchvision.models.resnet18(); net.fc = torch.nn.Identity()
    cls, hl = torch.nn.Linear(512, 200), torch.nn.Linear(512, 32)
    params = list(net.parameters()) + list(cls.parameters()) + list(hl.parameters())
    y = torch.randint(0, 200, (batch,))
    def loss():
        g = torch.nn.functional.dropout(net(x), 0.5, True)
        return torch.nn.functional.cross_entropy(cls(g), y) + (torch.tanh(hl(g)) ** 2).sum()
else:
    r = torchvision.models.resnet50()
    trunk = torch.nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3)
    # SEMICON's refine stages are ResNet layer4-like; four passes (global + 3 local) approximate its cost.
    heads = torch.nn.ModuleList([torchvision.models.resnet50().layer4 for _ in range(2)])
    params = list(trunk.parameters()) + list(heads.parameters())
    def loss():
        f = trunk(x)
        outs = [heads[0](f)] + [heads[1](f * 0.5) for _ in range(3)]
        return sum((o.mean((2, 3)) ** 2).sum() for o in outs)
opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=1e-4)
def step():
    opt.zero_grad(); l = loss(); l.backward(); opt.step()
step()
t = time.perf_counter()
for _ in range(steps): step()
print((time.perf_counter() - t) / steps)
`;

async function ours(method: 'srlh' | 'semicon'): Promise<number> {
  const rng = new Rng(1);
  const model = method === 'srlh' ? new Srlh(rng, { bits: 32, numClasses: 200 }) : new Semicon(rng, { bits: 48 });
  const opt = new Sgd(model.parameters().filter((p) => p.trainable), { lr: 1e-3, momentum: 0.9, weightDecay: 1e-4, nesterov: method === 'semicon' });
  const x = tf.randomNormal([BATCH, SIZE, SIZE, 3]);
  const y = Array.from({ length: BATCH }, (_, i) => i % 200);
  const step = (): void => {
    const { value, grads } = tf.variableGrads(() => {
      if (model instanceof Srlh) {
        const o = model.forwardTrain(x, { training: true, rng: new Rng(2) });
        return tf.add(crossEntropy(o.logits, y), tf.sum(tf.square(o.features))) as tf.Scalar;
      }
      return tf.sum(tf.square((model as Semicon).forward(x, { training: true }) as Tensor2D)) as tf.Scalar;
    }, model.trainableVariables());
    value.dataSync();
    opt.step(grads);
    tf.dispose([value, ...Object.values(grads)]);
  };
  step();
  const t = Date.now();
  for (let i = 0; i < STEPS; i++) step();
  const s = (Date.now() - t) / 1000 / STEPS;
  x.dispose();
  model.dispose();
  opt.dispose();
  return s;
}

async function main(): Promise<void> {
  const backend = await selectBackend();
  const python = pythonWith('torch', 'torchvision');
  console.log(`bench:train: one training step at ${SIZE} px, batch ${BATCH}, ${STEPS} timed steps after a warm-up; fgh on ${describeBackend(backend)}, ${os.cpus().length} cores`);
  for (const method of ['srlh', 'semicon'] as const) {
    if (ONLY !== 'both' && ONLY !== method) continue;
    const name = method === 'srlh' ? 'sRLH (ResNet-18)' : 'SEMICON (ResNet-50)';
    let mine: number;
    try {
      mine = await ours(method);
    } catch (e) {
      // wasm32 has 4 GiB of memory: SEMICON (ResNet-50) at 224 px, batch 16, needs more.
      console.log(`${name}: fgh failed on ${backend.name} at ${SIZE} px, batch ${BATCH}: ${String(e).split('\n')[0]} (try --batch or --size smaller)`);
      continue;
    }
    const line = `${name}: fgh ${mine.toFixed(2)} s/step`;
    if (!python) {
      console.log(`${line}; PyTorch not available (Debian: python3-torch python3-torchvision)`);
      continue;
    }
    const theirs = Number(runPython(python, REFERENCE, [method, String(SIZE), String(BATCH), String(STEPS)]).trim());
    console.log(`${line}, PyTorch eager ${theirs.toFixed(2)} s/step: fgh runs at ${(theirs / mine).toFixed(2)}x PyTorch's speed (goal 0.5x)`);
  }
  if (ONLY !== 'srlh') console.log('(the PyTorch SEMICON step is a cost proxy: ResNet-50 stages 1-3 and four layer4-sized refine passes)');
}

await main();
