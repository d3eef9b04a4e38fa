import test, { type ExecutionContext } from 'ava';
import { tf } from '../../src/backend/tf.js';
import type { Tensor, Tensor2D } from '../../src/backend/tf.js';
import { selectBackend } from '../../src/backend/select.js';
import { ORT_BACKEND, type OrtBackend } from '../../src/backend/onnxruntime/backend.js';
import { SGD_STEP } from '../../src/backend/fused-kernels.js';
import type { Param } from '../../src/models/module.js';
import { Sgd, type Optimizer, type SgdOptions } from '../../src/train/sgd.js';
import { Adam, type AdamOptions } from '../../src/train/adam.js';
import { Rng } from '../../src/util/rng.js';
import { relativeError } from '../helpers/tensors.js';
import { missingPythonMessage, referencePython, runPython } from '../helpers/python.js';

/** A two-layer MLP, three batches, three steps with a learning-rate change: ours vs torch.optim.SGD. */
const SHAPES: Record<string, number[]> = { 'fc1.weight': [6, 5], 'fc1.bias': [6], 'fc2.weight': [3, 6], 'fc2.bias': [3] };

function problem(seed: number): { init: Record<string, number[]>; batches: Array<{ x: number[]; y: number[] }> } {
  const rng = new Rng(seed);
  const init: Record<string, number[]> = {};
  for (const [k, s] of Object.entries(SHAPES)) init[k] = Array.from({ length: s.reduce((a, b) => a * b, 1) }, () => rng.normal() * 0.5);
  const batches = Array.from({ length: 3 }, () => ({ x: Array.from({ length: 4 * 5 }, () => rng.normal()), y: Array.from({ length: 4 * 3 }, () => rng.normal()) }));
  return { init, batches };
}

function params(init: Record<string, number[]>): Param[] {
  return Object.entries(SHAPES).map(([name, shape]) => {
    const initial = tf.tensor(init[name]!, shape);
    const variable = tf.variable(initial);
    initial.dispose(); // the variable keeps the data
    return { name, torchShape: shape, layout: 'same', trainable: true, torchDtype: 'float32', variable };
  });
}

function loss(p: Param[], b: { x: number[]; y: number[] }): tf.Scalar {
  const [w1, b1, w2, b2] = p.map((q) => q.variable as Tensor);
  const h = tf.tanh(tf.add(tf.matMul(tf.tensor2d(b.x, [4, 5]), w1 as Tensor2D, false, true), b1!));
  const out = tf.add(tf.matMul(h as Tensor2D, w2 as Tensor2D, false, true), b2!);
  return tf.sum(tf.square(tf.sub(out, tf.tensor2d(b.y, [4, 3])))) as tf.Scalar;
}

function runOurs(opts: SgdOptions | (AdamOptions & { adam: true }), prob: ReturnType<typeof problem>, resumeAfter?: number): Record<string, Float32Array> {
  const make = (ps: Param[], lr: number): Optimizer => ('adam' in opts ? new Adam(ps, { ...opts, lr }) : new Sgd(ps, { ...opts, lr }));
  let p = params(prob.init);
  let opt = make(p, opts.lr);
  prob.batches.forEach((b, i) => {
    if (i === 2) opt.setLr(opts.lr * 0.1);
    if (resumeAfter === i) {
      // Save, rebuild from the saved weights and state, continue: must equal the uninterrupted run.
      const state = opt.exportState();
      const weights = Object.fromEntries(p.map((q) => [q.name, Array.from(q.variable.dataSync())]));
      const lr = opt.learningRate;
      opt.dispose();
      p.forEach((q) => q.variable.dispose());
      p = params(weights);
      opt = make(p, lr);
      opt.importState(state);
    }
    const { value, grads } = tf.variableGrads(() => loss(p, b), p.map((q) => q.variable));
    opt.step(grads);
    value.dispose();
    tf.dispose(Object.values(grads));
  });
  const out = Object.fromEntries(p.map((q) => [q.name, Float32Array.from(q.variable.dataSync())]));
  opt.dispose();
  p.forEach((q) => q.variable.dispose());
  return out;
}

const REFERENCE = `
import sys, json, torch
d = json.load(sys.stdin)
o = d['opts']
shapes = d['shapes']
ps = {k: torch.tensor(v, dtype=torch.float32).reshape(shapes[k]).requires_grad_() for k, v in d['init'].items()}
order = ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']
if o.get('adam'):
    opt = torch.optim.Adam([ps[k] for k in order], lr=o['lr'], weight_decay=o['weightDecay'])
else:
    opt = torch.optim.SGD([ps[k] for k in order], lr=o['lr'], momentum=o['momentum'], weight_decay=o['weightDecay'], nesterov=o['nesterov'])
for i, b in enumerate(d['batches']):
    if i == 2:
        opt.param_groups[0]['lr'] = o['lr'] * 0.1
    x = torch.tensor(b['x']).reshape(4, 5); y = torch.tensor(b['y']).reshape(4, 3)
    h = torch.tanh(x @ ps['fc1.weight'].t() + ps['fc1.bias'])
    loss = ((h @ ps['fc2.weight'].t() + ps['fc2.bias'] - y) ** 2).sum()
    opt.zero_grad(); loss.backward(); opt.step()
print(json.dumps({k: ps[k].detach().reshape(-1).tolist() for k in order}))
`;

const python = referencePython('torch');

test.before(async () => {
  await selectBackend();
});

type RunOpts = Parameters<typeof runOurs>[0];

/** Ours against torch's optimiser on the same problem, then the same run interrupted by a save/resume. */
function matchesTorch(t: ExecutionContext, opts: RunOpts, seed: number, tolerance: number): void {
  const prob = problem(seed);
  const before = tf.memory().numTensors;
  const ours = runOurs(opts, prob);
  t.is(tf.memory().numTensors, before, 'no tensors leaked');
  const ref = JSON.parse(runPython(python!, REFERENCE, [], JSON.stringify({ opts, shapes: SHAPES, ...prob }))) as Record<string, number[]>;
  let worst = 0;
  for (const k of Object.keys(SHAPES)) worst = Math.max(worst, relativeError(ours[k]!, ref[k]!));
  t.log(`worst relative error vs torch: ${worst.toExponential(2)}`);
  t.true(worst <= tolerance, `worst relative error vs torch ${worst}, bound ${tolerance}`);
  // Moved: the parameters changed by much more than the tolerance.
  t.true(relativeError(ours['fc1.weight']!, prob.init['fc1.weight']!) > 1e-2);
  const resumed = runOurs(opts, prob, 1);
  for (const k of Object.keys(SHAPES)) t.deepEqual(resumed[k], ours[k], `${k} after save/resume`);
}

for (const nesterov of [true, false]) {
  (python ? test.serial : test.skip)(`SGD (momentum 0.9, weight decay, nesterov ${nesterov}) matches torch.optim.SGD after 3 steps, also across a save/resume`, (t) => {
    if (!python) return t.log(missingPythonMessage('torch'));
    // Relative to each tensor's largest entry (weights ~0.5 N(0, 1)); one run: 1.4e-7 with or without Nesterov.
    matchesTorch(t, { lr: 0.05, momentum: 0.9, weightDecay: 0.01, nesterov }, nesterov ? 1 : 2, 2e-6);
  });
}

test.serial('on onnxruntime, SGD steps after the first update the arrays in place, bit for bit as the fused kernel; shared storage falls back to it', (t) => {
  if (tf.getBackend() !== ORT_BACKEND) return t.pass();
  const backend = tf.backend() as unknown as OrtBackend;
  const rng = new Rng(7);
  const n = 100_003;
  const rand = (scale: number): Float32Array => Float32Array.from({ length: n }, () => rng.normal() * scale);
  for (const nesterov of [true, false]) {
    for (const weightDecay of [0, 1e-4]) {
      const attrs = { lr: 0.0123, momentum: 0.91, weightDecay, nesterov };
      const [p0, g0, b0] = [rand(0.1), rand(0.01), rand(0.01)];
      const initial = Float32Array.from(p0);
      const [param, grad, buf] = [tf.tensor(p0), tf.tensor(g0), tf.tensor(b0)];
      const [kp, kb] = tf.engine().runKernel(SGD_STEP, { param, grad, buf }, attrs as unknown as tf.NamedAttrMap) as Tensor[];
      const [p, b] = [backend.values(param) as Float32Array, backend.values(buf) as Float32Array];
      t.true(backend.sgdStepInPlace(param, grad, buf, attrs), 'applied in place');
      t.is(backend.values(param), p, 'the same array');
      t.deepEqual(p, kp!.dataSync() as Float32Array, `param, nesterov ${nesterov}, weight decay ${weightDecay}`);
      t.deepEqual(b, kb!.dataSync() as Float32Array, `buffer, nesterov ${nesterov}, weight decay ${weightDecay}`);
      t.notDeepEqual(p, initial, 'moved');
      // A reshape shares the parameter's storage: writing over it would change that tensor too.
      const view = tf.reshape(param, [n, 1]);
      const seen = Float32Array.from(view.dataSync());
      t.false(backend.sgdStepInPlace(param, grad, buf, attrs), 'refused while another tensor shares the storage');
      t.deepEqual(view.dataSync() as Float32Array, seen);
      tf.dispose([param, grad, buf, kp!, kb!, view]);
    }
  }
  // Through the optimiser: the parameter's array is updated, not replaced.
  const v = tf.variable(tf.tensor(rand(0.1)));
  const opt = new Sgd([{ name: 'w', torchShape: [n], layout: 'same', trainable: true, torchDtype: 'float32', variable: v }], { lr: 0.1, momentum: 0.9 });
  for (let i = 0; i < 2; i++) {
    const before = backend.values(v);
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(v)) as tf.Scalar, [v]);
    opt.step(grads);
    tf.dispose([value, ...Object.values(grads)]);
    if (i === 1) t.is(backend.values(v), before, 'second step: in place');
  }
  opt.dispose();
  v.dispose();
});

(python ? test.serial : test.skip)('Adam (weight decay) matches torch.optim.Adam after 3 steps, also across a save/resume', (t) => {
  if (!python) return t.log(missingPythonMessage('torch'));
  // Relative to each tensor's largest entry; one run: 5.9e-8.
  matchesTorch(t, { adam: true, lr: 0.05, weightDecay: 0.01 }, 3, 5e-7);
});

test('Nesterov without momentum is refused', (t) => {
  t.throws(() => new Sgd([], { lr: 0.1, nesterov: true }), { message: /Nesterov momentum requires a momentum/ });
});
