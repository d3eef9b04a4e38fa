/**
 * bench:train: one training step (forward, loss, gradients of every weight, SGD update) of sRLH
 * (ResNet-18) and SEMICON (ResNet-50 trunk, refine stages, channel transformers, attention) at
 * 224 px, batch 16, on the TensorFlow.js backend fgh picks, against the same step in PyTorch eager
 * (all cores; SEMICON is test/python/semicon_model.py, a restatement of the authors' model),
 * measured in the same run. Each side runs in a process of its own so that its peak RSS is its
 * own. Prints seconds per step, the speed ratio and both peak RSS figures.
 * Options: --size PX (224), --batch N (16), --steps N (4), --warmup N (3 untimed steps first, on
 * both sides), --only srlh|semicon, --profile (fgh's time per kernel over the timed steps).
 * The warm-up is several steps because fgh's C heap keeps growing for the first few (each fresh
 * page faults on first touch: tens of thousands of faults in each of the first steps, tens to a
 * few thousand a step after that); a training run is thousands of steps.
 */
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tf } from '../../src/backend/tf.js';
import type { Tensor2D } from '../../src/backend/tf.js';
import { describeBackend, selectBackend } from '../../src/backend/select.js';
import { Srlh } from '../../src/models/srlh.js';
import { Semicon } from '../../src/models/semicon.js';
import { Sgd } from '../../src/train/sgd.js';
import { crossEntropy } from '../../src/train/losses.js';
import { projectRoot } from '../../src/util/version.js';
import { Rng } from '../../src/util/rng.js';
import { pythonWith } from '../helpers/python.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : def;
}
const SIZE = Number(arg('size', '224'));
const BATCH = Number(arg('batch', '16'));
const STEPS = Number(arg('steps', '4'));
const WARMUP = Number(arg('warmup', '3'));
const ONLY = arg('only', 'both');
const CHILD = arg('child', '');
const PROFILE = process.argv.includes('--profile');

type Method = 'srlh' | 'semicon';
interface StepResult {
  seconds: number;
  peakRssMiB: number;
  backend?: string;
  /** Kernel name -> [milliseconds per step, calls per step], with --profile. */
  kernels?: Record<string, [number, number]>;
}

/** Wraps every kernel of the active backend with a timer (nested kernels count in their caller too). */
function timeKernels(): Map<string, [number, number]> {
  const times = new Map<string, [number, number]>();
  const backend = tf.getBackend();
  for (const k of tf.getKernelsForBackend(backend)) {
    const inner = k.kernelFunc;
    tf.unregisterKernel(k.kernelName, backend);
    tf.registerKernel({
      ...k,
      kernelFunc: (args) => {
        const t0 = performance.now();
        const out = inner(args);
        const e = times.get(k.kernelName) ?? [0, 0];
        times.set(k.kernelName, [e[0] + performance.now() - t0, e[1] + 1]);
        return out;
      },
    });
  }
  return times;
}

const REFERENCE = String.raw`
import json, os, resource, sys, time, torch, torchvision
torch.set_num_threads(os.cpu_count())
method, size, batch, steps, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
x = torch.randn(batch, 3, size, size)
if method == 'srlh':
    net = torchvision.models.resnet18(); net.fc = torch.nn.Identity()
    cls, hl = torch.nn.Linear(512, 200), torch.nn.Linear(512, 32)
    params = list(net.parameters()) + list(cls.parameters()) + list(hl.parameters())
    y = torch.randint(0, 200, (batch,))
    nesterov = False
    def loss():
        g = torch.nn.functional.dropout(net(x), 0.5, True)
        return torch.nn.functional.cross_entropy(cls(g), y) + (torch.tanh(hl(g)) ** 2).sum()
else:
    from semicon_model import SEMICON
    net = SEMICON(48).train()
    params = list(net.parameters())
    nesterov = True
    def loss():
        return (net(x) ** 2).sum()
opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=1e-4, nesterov=nesterov)
def step():
    opt.zero_grad(); l = loss(); l.backward(); opt.step()
for _ in range(warmup): step()
t = time.perf_counter()
for _ in range(steps): step()
print(json.dumps({"seconds": (time.perf_counter() - t) / steps, "peakRssMiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
`;

async function ours(method: Method): Promise<StepResult> {
  const backend = await selectBackend();
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
  const times = PROFILE ? timeKernels() : null;
  for (let i = 0; i < WARMUP; i++) step();
  times?.clear();
  const t = Date.now();
  for (let i = 0; i < STEPS; i++) step();
  const seconds = (Date.now() - t) / 1000 / STEPS;
  const kernels = times ? Object.fromEntries([...times].map(([k, [ms, n]]) => [k, [ms / STEPS, n / STEPS] as [number, number]])) : undefined;
  return { seconds, peakRssMiB: process.resourceUsage().maxRSS / 1024, backend: describeBackend(backend), ...(kernels ? { kernels } : {}) };
}

/** Runs one side in a fresh process; its last stdout line is a StepResult. */
function measure(cmd: string, args: string[], cwd?: string): StepResult | string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd, maxBuffer: 1 << 26 });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(last) as StepResult;
  } catch {
    const why = (r.stderr || r.stdout).trim().split('\n').filter(Boolean).pop() ?? `exit ${r.status ?? r.signal}`;
    return why.slice(0, 300);
  }
}

async function main(): Promise<void> {
  if (CHILD) {
    process.stdout.write(`${JSON.stringify(await ours(CHILD as Method))}\n`);
    return;
  }
  const python = pythonWith('torch', 'torchvision');
  const self = fileURLToPath(import.meta.url);
  console.log(`bench:train: one training step at ${SIZE} px, batch ${BATCH}, ${STEPS} timed steps after ${WARMUP} untimed, ${os.cpus().length} cores; each side in its own process`);
  for (const method of ['srlh', 'semicon'] as const) {
    if (ONLY !== 'both' && ONLY !== method) continue;
    const name = method === 'srlh' ? 'sRLH (ResNet-18)' : 'SEMICON (ResNet-50)';
    const mine = measure(process.execPath, [self, '--child', method, '--size', String(SIZE), '--batch', String(BATCH), '--steps', String(STEPS), '--warmup', String(WARMUP), ...(PROFILE ? ['--profile'] : [])]);
    if (typeof mine === 'string') {
      console.log(`${name}: fgh failed at ${SIZE} px, batch ${BATCH}: ${mine}`);
      continue;
    }
    const line = `${name}: fgh on ${mine.backend} ${mine.seconds.toFixed(2)} s/step, peak RSS ${mine.peakRssMiB.toFixed(0)} MiB`;
    if (mine.kernels) {
      const top = Object.entries(mine.kernels).sort((a, b) => b[1][0] - a[1][0]).slice(0, 15);
      console.log(`${name}: fgh's kernels per step, heaviest first:`);
      for (const [k, [ms, n]] of top) console.log(`  ${k.padEnd(24)} ${ms.toFixed(0).padStart(6)} ms ${n.toFixed(0).padStart(5)} calls`);
    }
    if (!python) {
      console.log(`${line}; PyTorch not available (Debian: python3-torch python3-torchvision)`);
      continue;
    }
    const theirs = measure(python, ['-c', REFERENCE, method, String(SIZE), String(BATCH), String(STEPS), String(WARMUP)], path.join(projectRoot(), 'test', 'python'));
    if (typeof theirs === 'string') {
      console.log(`${line}; PyTorch failed: ${theirs}`);
      continue;
    }
    console.log(`${line} | PyTorch eager ${theirs.seconds.toFixed(2)} s/step, peak RSS ${theirs.peakRssMiB.toFixed(0)} MiB`);
    console.log(`  -> fgh runs at ${(theirs.seconds / mine.seconds).toFixed(2)}x PyTorch's speed, with ${(mine.peakRssMiB / theirs.peakRssMiB).toFixed(2)}x its peak memory`);
  }
}

await main();
