/**
 * bench:train: one training step (forward, loss, gradients of every weight, SGD update) of sRLH
 * (ResNet-18) and SEMICON (ResNet-50 trunk, refine stages, channel transformers, attention) at
 * 224 px, batch 16, on the TensorFlow.js backend fgh picks, against the same step in PyTorch eager
 * (all cores; SEMICON is test/python/semicon_model.py, a restatement of the authors' model),
 * measured in the same run. Each side runs in a process of its own so that its peak RSS is its
 * own, and the two take turns (fgh, PyTorch; PyTorch, fgh; ...), each turn one untimed step
 * (the other side has just filled the caches) and two timed: this machine's speed drifts by 20%
 * over a minute (one process's sRLH steps went from 1.5 s to 1.1 s), so timing one side after the
 * other measured the drift as much as the engines. Prints seconds per step, the speed ratio (with
 * the range of the per-round ratios) and both peak RSS figures.
 * Options: --size PX (224), --batch N (16), --steps N (6 timed steps a side), --warmup N (3
 * untimed steps first, on both sides), --only srlh|semicon, --profile (fgh's time per kernel over
 * the timed steps).
 * The warm-up is several steps because fgh's C heap keeps growing for the first few (each fresh
 * page faults on first touch: tens of thousands of faults in each of the first steps, tens to a
 * few thousand a step after that); a training run is thousands of steps.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
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
const STEPS = Number(arg('steps', '6'));
/** Timed steps a side takes in one turn, after one untimed. */
const BLOCK = 2;
const WARMUP = Number(arg('warmup', '3'));
const ONLY = arg('only', 'both');
const CHILD = arg('child', '');
const PROFILE = process.argv.includes('--profile');

type Method = 'srlh' | 'semicon';
/** A side's reply to 'step': that step's seconds. */
interface StepTime {
  seconds: number;
}

/** A side's reply to 'done', after its timed steps. */
interface Summary {
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
method, size, batch, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
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
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    if line.strip() != 'step':
        break
    t = time.perf_counter()
    step()
    print(json.dumps({"seconds": time.perf_counter() - t}), flush=True)
print(json.dumps({"peakRssMiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
`;

/** The child side of fgh: warms up, then takes a step per 'step' line on stdin until 'done'. */
async function ours(method: Method): Promise<void> {
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
  const say = (o: object): void => void process.stdout.write(`${JSON.stringify(o)}\n`);
  say({ ready: true });
  let steps = 0;
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() !== 'step') break;
    const t = performance.now();
    step();
    steps++;
    say({ seconds: (performance.now() - t) / 1000 });
  }
  const kernels = times ? Object.fromEntries([...times].map(([k, [ms, n]]) => [k, [ms / steps, n / steps] as [number, number]])) : undefined;
  say({ peakRssMiB: process.resourceUsage().maxRSS / 1024, backend: describeBackend(backend), ...(kernels ? { kernels } : {}) });
}

/**
 * PyTorch's best malloc settings here: large blocks kept for reuse (without them its sRLH step took
 * 1.65 s instead of 0.8 s). fgh's other two settings, no fastbins and no per-thread cache, left it
 * as fast or 1-3% slower, so it does without them.
 */
const PYTORCH_ENV = { ...process.env, GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=68719476736' };

/** One side's process: sends a line, resolves with the next JSON line it prints. */
class Side {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly replies: string[] = [];
  private waiting: ((line: string | null) => void) | null = null;
  private stderr = '';
  private ended = false;

  constructor(cmd: string, args: string[], cwd?: string, env?: NodeJS.ProcessEnv) {
    this.child = spawn(cmd, args, { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    // A side that died (out of memory, say) closes its stdin before 'close' is seen: a write then
    // fails with EPIPE, which must not take the bench down with it; next() reports the death.
    this.child.stdin.on('error', () => undefined);
    this.child.stderr.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      if (!line.startsWith('{')) return;
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = null;
        w(line);
      } else this.replies.push(line);
    });
    this.child.on('close', () => {
      this.ended = true;
      this.waiting?.(null);
      this.waiting = null;
    });
  }

  /** The next reply, or the reason the process gave none (its error from stderr, or its exit). */
  async next<T>(send?: string): Promise<T | string> {
    if (send !== undefined && !this.ended) this.child.stdin.write(`${send}\n`);
    const line = this.replies.shift() ?? (this.ended ? null : await new Promise<string | null>((resolve) => (this.waiting = resolve)));
    if (line !== null) return JSON.parse(line) as T;
    const lines = this.stderr.trim().split('\n').filter(Boolean);
    // Node ends an uncaught error's report with its version line: the error's own line says more.
    const why = [...lines].reverse().find((l) => /\b\w*Error\b/.test(l)) ?? lines.pop() ?? `exit ${this.child.exitCode ?? this.child.signalCode}`;
    return why.slice(0, 300);
  }

  kill(): void {
    if (!this.ended) this.child.kill();
  }
}

async function main(): Promise<void> {
  if (CHILD) {
    await ours(CHILD as Method);
    return;
  }
  const python = pythonWith('torch', 'torchvision');
  const self = fileURLToPath(import.meta.url);
  console.log(`bench:train: one training step at ${SIZE} px, batch ${BATCH}, ${STEPS} timed steps a side after ${WARMUP} untimed, ${os.cpus().length} cores; each side in its own process, the two taking turns of ${BLOCK + 1} steps (the first untimed)`);
  for (const method of ['srlh', 'semicon'] as const) {
    if (ONLY !== 'both' && ONLY !== method) continue;
    const name = method === 'srlh' ? 'sRLH (ResNet-18)' : 'SEMICON (ResNet-50)';
    const mine = new Side(process.execPath, [self, '--child', method, '--size', String(SIZE), '--batch', String(BATCH), '--warmup', String(WARMUP), ...(PROFILE ? ['--profile'] : [])]);
    const ready = await mine.next<object>();
    if (typeof ready === 'string') {
      console.log(`${name}: fgh failed at ${SIZE} px, batch ${BATCH}: ${ready}`);
      continue;
    }
    // PyTorch warms up after fgh has, so that neither warm-up competes with the other for the cores.
    const theirs = python ? new Side(python, ['-c', REFERENCE, method, String(SIZE), String(BATCH), String(WARMUP)], path.join(projectRoot(), 'test', 'python'), PYTORCH_ENV) : null;
    // null: no PyTorch here; a string: why it failed.
    const theirReady = theirs ? await theirs.next<object>() : null;
    const theyRun = theirReady !== null && typeof theirReady !== 'string';
    const mineSteps: number[] = [];
    const theirSteps: number[] = [];
    let failed = '';
    for (let block = 0; mineSteps.length < STEPS && !failed; block++) {
      // Alternate who goes first in each round, so neither always runs just after the other.
      const order = !theyRun ? ['mine'] : block % 2 === 0 ? ['mine', 'theirs'] : ['theirs', 'mine'];
      for (const who of order) {
        const into = who === 'mine' ? mineSteps : theirSteps;
        const timed = Math.min(BLOCK, STEPS - into.length);
        // The first step of a turn runs after the other side has filled the caches: untimed.
        for (let i = 0; i <= timed && !failed; i++) {
          const r = await (who === 'mine' ? mine : theirs!).next<StepTime>('step');
          if (typeof r === 'string') failed = `${who === 'mine' ? 'fgh' : 'PyTorch'} failed at ${SIZE} px, batch ${BATCH}: ${r}`;
          else if (i > 0) into.push(r.seconds);
        }
      }
    }
    const mineSummary = await mine.next<Summary>('done');
    const theirSummary = theyRun ? await theirs!.next<Summary>('done') : theirReady;
    mine.kill();
    theirs?.kill();
    if (failed || typeof mineSummary === 'string') {
      console.log(`${name}: ${failed || `fgh failed: ${mineSummary as string}`}`);
      continue;
    }
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    const line = `${name}: fgh on ${mineSummary.backend} ${mean(mineSteps).toFixed(2)} s/step, peak RSS ${mineSummary.peakRssMiB.toFixed(0)} MiB`;
    if (mineSummary.kernels) {
      const top = Object.entries(mineSummary.kernels).sort((a, b) => b[1][0] - a[1][0]).slice(0, 15);
      console.log(`${name}: fgh's kernels per step, heaviest first:`);
      for (const [k, [ms, n]] of top) console.log(`  ${k.padEnd(24)} ${ms.toFixed(0).padStart(6)} ms ${n.toFixed(0).padStart(5)} calls`);
    }
    if (theirSummary === null || typeof theirSummary === 'string') {
      console.log(`${line}; ${theirSummary === null ? 'PyTorch not available (Debian: python3-torch python3-torchvision)' : `PyTorch failed: ${theirSummary}`}`);
      continue;
    }
    // Per round: the two sides' turns that ran next to each other.
    const pairs = Array.from({ length: Math.ceil(STEPS / BLOCK) }, (_, b) => mean(theirSteps.slice(b * BLOCK, (b + 1) * BLOCK)) / mean(mineSteps.slice(b * BLOCK, (b + 1) * BLOCK)));
    console.log(`${line} | PyTorch eager ${mean(theirSteps).toFixed(2)} s/step, peak RSS ${theirSummary.peakRssMiB.toFixed(0)} MiB`);
    console.log(
      `  -> fgh runs at ${(mean(theirSteps) / mean(mineSteps)).toFixed(2)}x PyTorch's speed (${STEPS} timed steps each, in ${pairs.length} rounds of turns; per round ${Math.min(...pairs).toFixed(2)}-${Math.max(...pairs).toFixed(2)}x), with ${(mineSummary.peakRssMiB / theirSummary.peakRssMiB).toFixed(2)}x its peak memory`,
    );
  }
}

await main();
