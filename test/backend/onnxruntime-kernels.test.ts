import test from 'ava';
import { tf } from '../../src/backend/tf.js';
import '@tensorflow/tfjs-backend-cpu';
import { ORT_BACKEND, OrtBackend, ortKernelNames, registerOrtBackend } from '../../src/backend/onnxruntime/backend.js';
import { MIN_DELEGATED_ELEMENTS } from '../../src/backend/onnxruntime/delegate.js';
import { maxPoolGradNhwc, poolInfo, type PoolAttrs } from '../../src/backend/onnxruntime/spatial-kernels.js';
import { Rng } from '../../src/util/rng.js';
import { batchNormReluTrain, batchNormTrain } from '../../src/models/ops.js';
import { BATCH_MOMENTS, BATCH_NORM_RELU, BATCH_NORM_RELU_GRAD, CHANNEL_ATTENTION, CHANNEL_ATTENTION_GRAD, RELU_GRAD } from '../../src/backend/fused-kernels.js';
import { ChannelTransformer } from '../../src/models/channel-transformer.js';
import { maxAbs, maxAbsDiff, relativeError } from '../helpers/tensors.js';
import { convCaseGrid, type ConvCase } from '../helpers/conv-cases.js';
import { nchwcBlock } from '../../src/backend/onnxruntime/conv.js';
import { readFileSync } from 'node:fs';

/**
 * Every kernel the onnxruntime backend delegates, on random inputs, against tfjs's own cpu
 * kernel on the same inputs: max |ours - cpu| / max |cpu| within 1e-5. Each case also checks
 * that onnxruntime really ran it (a fallback to the cpu kernel would pass trivially).
 */
const BOUND = 1e-5;

// Batch 1 and few/many input channels (the filter gradient takes another form below 16). Channel
// counts in whole NCHWc blocks (16 and 32; 3 to 16 as ResNet's stem) take the blocked forms.
const convCases: ConvCase[] = convCaseGrid([
  { n: 2, h: 11, w: 9, ci: 3, co: 5 },
  { n: 1, h: 16, w: 16, ci: 20, co: 6 },
  { n: 2, h: 9, w: 8, ci: 16, co: 32 },
  { n: 1, h: 11, w: 10, ci: 3, co: 16 },
  // Many positions per channel: the filter gradient's shifted form (stride 1), batch 1 included.
  { n: 2, h: 24, w: 20, ci: 16, co: 16 },
  { n: 1, h: 23, w: 25, ci: 16, co: 8 },
]);
// Small maps with more output channels than output positions take the im2col form.
for (const stride of [1, 2]) {
  for (const pad of ['same', 'valid', [[0, 0], [1, 1], [1, 2], [0, 0]]] as ConvCase['pad'][]) {
    convCases.push({ n: 1, h: 3, w: 3, ci: 8, co: 16, k: 3, stride, pad });
    convCases.push({ n: 2, h: 5, w: 4, ci: 6, co: 48, k: 3, stride, pad });
  }
}
convCases.push({ n: 2, h: 5, w: 5, ci: 4, co: 64, k: 3, stride: 1, dilation: 2, pad: 'same' });
// Dilation (forward only: tfjs has no gradient for dilated convolutions).
convCases.push({ n: 2, h: 13, w: 12, ci: 4, co: 6, k: 3, stride: 1, dilation: 2, pad: 'same' });
convCases.push({ n: 1, h: 13, w: 12, ci: 17, co: 3, k: 3, stride: 1, dilation: 2, pad: 'valid' });
convCases.push({ n: 2, h: 13, w: 12, ci: 16, co: 16, k: 3, stride: 1, dilation: 2, pad: 'same' });

const rng = new Rng(11);

function randomArray(n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * scale;
  return a;
}

interface Input {
  values: Float32Array;
  shape: number[];
}
const rand = (shape: number[]): Input => ({ values: randomArray(shape.reduce((a, b) => a * b, 1)), shape });

function runOn(backend: string, kernel: string, inputs: Record<string, Input> | Input[], attrs: object): { data: Float32Array; dtype: string } {
  tf.setBackend(backend);
  const made = Array.isArray(inputs) ? inputs.map((i) => tf.tensor(i.values, i.shape)) : Object.fromEntries(Object.entries(inputs).map(([k, i]) => [k, tf.tensor(i.values, i.shape)]));
  const out = tf.engine().runKernel(kernel, made as never, attrs as never) as tf.Tensor;
  const data = out.dataSync() as Float32Array;
  const dtype = out.dtype;
  tf.dispose([out, ...Object.values(made)]);
  return { data, dtype };
}

function engineCalls(): number {
  tf.setBackend(ORT_BACKEND);
  return (tf.backend() as OrtBackend).engine.stats().calls;
}

/** Runs on both backends; asserts onnxruntime ran it and the error bound. */
function check(t: import('ava').ExecutionContext, label: string, kernel: string, inputs: Record<string, Input> | Input[], attrs: object): number {
  const before = engineCalls();
  const { data: ours, dtype } = runOn(ORT_BACKEND, kernel, inputs, attrs);
  const delegated = engineCalls() > before;
  const { data: want, dtype: wantType } = runOn('cpu', kernel, inputs, attrs);
  t.true(delegated, `${label}: onnxruntime ran it`);
  t.is(dtype, wantType, `${label}: dtype`);
  t.is(ours.length, want.length, `${label}: output size`);
  const e = relativeError(ours, want);
  t.true(e <= BOUND, `${label}: relative error ${e.toExponential(2)} at scale ${maxAbs(want).toExponential(2)}`);
  return e;
}

test.before(async () => {
  registerOrtBackend();
  await tf.setBackend(ORT_BACKEND);
  await tf.ready();
});

test.after.always(async () => {
  await tf.setBackend('cpu');
});

test.serial('Conv2D, FusedConv2D and both gradients: strides 1-2, same/valid/explicit padding, 1x1/3x3/7x7, dilation, odd sizes, batch 1', (t) => {
  let worst = 0;
  for (const c of convCases) {
    const dilation = c.dilation ?? 1;
    const label = `k${c.k} s${c.stride} d${dilation} ${JSON.stringify(c.pad)} ${c.n}x${c.h}x${c.w}x${c.ci}->${c.co}`;
    const x = rand([c.n, c.h, c.w, c.ci]);
    const filter = rand([c.k, c.k, c.ci, c.co]);
    const conv = { strides: [c.stride, c.stride], pad: c.pad, dataFormat: 'NHWC', dilations: [dilation, dilation], dimRoundingMode: undefined };
    const info = tf.backend_util.computeConv2DInfo([c.n, c.h, c.w, c.ci], [c.k, c.k, c.ci, c.co], c.stride, dilation, c.pad);
    worst = Math.max(worst, check(t, `Conv2D ${label}`, 'Conv2D', { x, filter }, conv));
    const bias = rand([c.co]);
    worst = Math.max(worst, check(t, `FusedConv2D+bias+relu ${label}`, 'FusedConv2D', { x, filter, bias }, { ...conv, activation: 'relu' }));
    if (dilation !== 1) continue;
    const dy = rand([c.n, info.outHeight, info.outWidth, c.co]);
    const grad = { strides: [c.stride, c.stride], pad: c.pad, dataFormat: 'NHWC', dimRoundingMode: undefined };
    worst = Math.max(worst, check(t, `Conv2DBackpropInput ${label}`, 'Conv2DBackpropInput', { dy, filter }, { ...grad, inputShape: [c.n, c.h, c.w, c.ci] }));
    worst = Math.max(worst, check(t, `Conv2DBackpropFilter ${label}`, 'Conv2DBackpropFilter', { x, dy }, { ...grad, filterShape: [c.k, c.k, c.ci, c.co] }));
  }
  t.log(`${convCases.length} convolution cases, worst relative error ${worst.toExponential(2)}`);
});

test.serial('BatchMatMul and _FusedMatMul: transposes, broadcast batch dims, bias and ReLU', (t) => {
  for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]] as const) {
    const a = rand(ta ? [3, 70, 40] : [3, 40, 70]);
    const b = rand(tb ? [1, 90, 70] : [1, 70, 90]);
    check(t, `BatchMatMul ta=${ta} tb=${tb}`, 'BatchMatMul', { a, b }, { transposeA: ta, transposeB: tb });
    const a2 = rand(ta ? [70, 40] : [40, 70]);
    const b2 = rand(tb ? [90, 70] : [70, 90]);
    check(t, `_FusedMatMul ta=${ta} tb=${tb}`, '_FusedMatMul', { a: a2, b: b2, bias: rand([90]) }, { transposeA: ta, transposeB: tb, activation: 'relu' });
  }
});

const BIG = [4, 20, 15, 16]; // above the delegation threshold
test.serial('elementwise, reductions, transposes, AddN and pooling on tensors above the delegation threshold', (t) => {
  t.true(BIG.reduce((a, b) => a * b, 1) >= MIN_DELEGATED_ELEMENTS);
  const x = rand(BIG);
  const positive: Input = { values: x.values.map((v) => Math.abs(v) + 0.1), shape: BIG };
  for (const op of ['Relu', 'Exp', 'Tanh', 'Sigmoid', 'Neg', 'Abs', 'Square', 'Sign']) check(t, op, op, { x }, {});
  // tfjs's sign of 0 and of NaN is 0.
  const special: Input = { values: x.values.map((v, i) => (i % 7 === 0 ? 0 : i % 11 === 0 ? NaN : v)), shape: BIG };
  check(t, 'Sign of 0 and NaN', 'Sign', { x: special }, {});
  for (const op of ['Log', 'Sqrt', 'Rsqrt', 'Reciprocal']) check(t, op, op, { x: positive }, {});
  check(t, 'Step alpha 0', 'Step', { x }, { alpha: 0 });
  check(t, 'Step alpha 0.3', 'Step', { x }, { alpha: 0.3 });
  for (const op of ['Add', 'Sub', 'Multiply', 'RealDiv', 'Maximum', 'Minimum', 'SquaredDifference']) {
    check(t, `${op} same shape`, op, { a: x, b: rand(BIG) }, {});
    const channel = rand([16]);
    if (op === 'RealDiv') channel.values = channel.values.map((v) => Math.abs(v) + 0.5);
    check(t, `${op} channel broadcast`, op, { a: x, b: channel }, {});
    check(t, `${op} scalar`, op, { a: rand([]), b: x }, {});
    check(t, `${op} middle broadcast`, op, { a: x, b: rand([4, 1, 15, 1]) }, {});
  }
  for (const op of ['Greater', 'GreaterEqual', 'Less', 'LessEqual', 'Equal']) {
    // Ties included: a third of the entries equal the other side.
    const b = rand(BIG);
    b.values = b.values.map((v, i) => (i % 3 === 0 ? x.values[i]! : v));
    check(t, `${op} same shape`, op, { a: x, b }, {});
    check(t, `${op} scalar`, op, { a: x, b: { values: new Float32Array([x.values[5]!]), shape: [] } }, {});
  }
  for (const keepDims of [false, true]) {
    for (const axis of [[0, 1, 2], [3], [1], [0, 3]]) {
      check(t, `Sum ${axis} keep=${keepDims}`, 'Sum', { x }, { axis, keepDims });
      check(t, `Mean ${axis} keep=${keepDims}`, 'Mean', { x }, { axis, keepDims });
      check(t, `Max ${axis} keep=${keepDims}`, 'Max', { x }, { reductionIndices: axis, keepDims });
      check(t, `Min ${axis} keep=${keepDims}`, 'Min', { x }, { axis, keepDims });
    }
  }
  for (const perm of [[0, 3, 1, 2], [3, 1, 2, 0], [1, 0, 2, 3]]) check(t, `Transpose ${perm}`, 'Transpose', { x }, { perm });
  check(t, 'AddN of 3', 'AddN', [x, rand(BIG), rand(BIG)], {});
});

test.serial('MaxPool and MaxPoolGrad (ResNet stem, valid and odd sizes)', (t) => {
  for (const [h, w, k, s, pad] of [[32, 32, 3, 2, [[0, 0], [1, 1], [1, 1], [0, 0]]], [33, 31, 3, 2, 'valid'], [30, 30, 2, 2, 'same']] as const) {
    // Distinct values: the gradient goes to each window's maximum, which must be unique to compare.
    const n = 2 * h * w * 16;
    const perm = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [perm[i], perm[j]] = [perm[j]!, perm[i]!];
    }
    const input: Input = { values: Float32Array.from(perm, (v) => v / n - 0.5), shape: [2, h, w, 16] };
    const attrs = { filterSize: [k, k], strides: [s, s], pad, dimRoundingMode: undefined };
    check(t, `MaxPool ${h}x${w} k${k} s${s} ${JSON.stringify(pad)}`, 'MaxPool', { x: input }, attrs);
    tf.setBackend('cpu');
    const out = tf.maxPool(tf.tensor4d(input.values, input.shape as [number, number, number, number]), k, s, pad as never);
    const output: Input = { values: out.dataSync() as Float32Array, shape: out.shape };
    out.dispose();
    // The gradient is computed in JavaScript (no onnxruntime call; the SIMD kernel that runs first
    // where it can is checked against this function in simd-kernels): the function itself against
    // tfjs's cpu kernel, on distinct values and on ReLU-like ones (a third zeros: ties everywhere,
    // where a different choice among them would be an error of order 1).
    const info = poolInfo(input.shape, attrs as unknown as PoolAttrs)!;
    t.truthy(info, 'a pool onnxruntime-backend handles');
    const relu: Input = { values: input.values.map((v, i) => (i % 3 === 0 ? 0 : Math.max(v, 0))), shape: input.shape };
    // NaN and -Infinity are never a maximum; windows of only those pass no gradient.
    const odd: Input = { values: input.values.map((v, i) => (i % 7 === 0 ? NaN : i % 2 === 0 || (i >> 4) % 5 === 0 ? -Infinity : v)), shape: input.shape };
    for (const [label, x] of [['distinct', input], ['ties', relu], ['NaN and -Infinity', odd]] as const) {
      const dy = rand(output.shape);
      tf.setBackend('cpu');
      const [xt, yt, dyt] = [tf.tensor(x.values, x.shape), tf.maxPool(tf.tensor4d(x.values, x.shape as [number, number, number, number]), k, s, pad as never), tf.tensor(dy.values, dy.shape)];
      const want = (tf.engine().runKernel('MaxPoolGrad', { dy: dyt, input: xt, output: yt }, attrs as never) as tf.Tensor).dataSync() as Float32Array;
      const pooled = yt.dataSync() as Float32Array;
      tf.dispose([xt, yt, dyt]);
      // Where one input is the maximum of three or more windows, tfjs sums in float64 and rounds
      // once; we add in float32 in output order, as PyTorch's CPU kernel does.
      // y as tfjs's cpu kernel pools it, and as training pools it (onnxruntime's MaxPool, which
      // may differ where a window holds a NaN).
      const ortPooled = runOn(ORT_BACKEND, 'MaxPool', { x }, attrs).data;
      for (const [source, y] of [['tfjs', pooled], ['onnxruntime', ortPooled]] as const) {
        const mine = maxPoolGradNhwc(dy.values, x.values, y, info);
        t.is(mine.length, want.length);
        const e = relativeError(mine, want);
        t.true(e <= 1e-6, `MaxPoolGrad ${h}x${w} k${k} s${s} ${label}, y from ${source}: relative error ${e.toExponential(2)}`);
      }
      if (label === 'NaN and -Infinity') t.true(ortPooled.some((v) => Number.isNaN(v)) || pooled.some((v) => v === -Infinity), `${label}: the search's fallback is exercised`);
    }
    const before = engineCalls();
    const { data: ours } = runOn(ORT_BACKEND, 'MaxPoolGrad', { dy: rand(output.shape), input, output }, attrs);
    t.is(engineCalls(), before, 'no onnxruntime call');
    t.is(ours.length, input.values.length);
  }
});

test.serial("batch norm's gradient: fgh's fused kernel on onnxruntime equals the composite of tfjs kernels on cpu", (t) => {
  for (const shape of [[4, 9, 7, 24], [6, 40], [2, 30, 30, 16]]) {
    const c = shape[shape.length - 1]!;
    const x = rand(shape);
    // A channel mean far from 0 and spread above 1, as after a convolution.
    x.values = x.values.map((v, i) => v * 3 + (i % c) * 0.5);
    const dy = rand(shape);
    const gamma = rand([c]);
    const beta = rand([c]);
    const grads = (backend: string): Float32Array[] => {
      tf.setBackend(backend);
      const [xt, gt, bt, dyt] = [tf.tensor(x.values, shape), tf.tensor(gamma.values, [c]), tf.tensor(beta.values, [c]), tf.tensor(dy.values, shape)];
      const out = tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(batchNormTrain(a, g, b, 1e-5), dyt)))([xt, gt, bt]);
      const data = out.map((o) => o.dataSync() as Float32Array);
      tf.dispose([xt, gt, bt, dyt, ...out]);
      return data;
    };
    const before = engineCalls();
    const ours = grads(ORT_BACKEND);
    t.true(engineCalls() > before, 'onnxruntime ran it');
    const want = grads('cpu');
    ['dx', 'dgamma', 'dbeta'].forEach((name, i) => {
      const e = relativeError(ours[i]!, want[i]!);
      t.true(e <= BOUND, `${name} [${shape}]: relative error ${e.toExponential(2)}`);
    });
  }
});

test.serial("batch norm's batch statistics and Relu's gradient: fgh's fused kernels on onnxruntime equal tf.moments and tfjs's Relu gradient on cpu", (t) => {
  const ran = (k: string): number => {
    tf.setBackend(ORT_BACKEND);
    return (tf.backend() as OrtBackend).engine.profile().filter((p) => p.key.startsWith(`${k}:`)).reduce((a, p) => a + p.calls, 0);
  };
  for (const shape of [[4, 9, 7, 24], [6, 40], [2, 30, 30, 16]]) {
    const c = shape[shape.length - 1]!;
    const x = rand(shape);
    x.values = x.values.map((v, i) => (i % 7 === 0 ? 0 : v * 3 + (i % c) * 0.5));
    const dy = rand(shape);
    const run = (backend: string): Float32Array[] => {
      tf.setBackend(backend);
      const [xt, dyt] = [tf.tensor(x.values, shape), tf.tensor(dy.values, shape)];
      const gamma = tf.ones([c]);
      const beta = tf.zeros([c]);
      let moments: Float32Array[] = [];
      const y = batchNormTrain(xt, gamma, beta, 1e-5, (m, v) => (moments = [Float32Array.from(m.dataSync()), Float32Array.from(v.dataSync())]));
      const dx = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.relu(a), dyt)))(xt);
      const out = [...moments, y.dataSync() as Float32Array, dx.dataSync() as Float32Array];
      tf.dispose([xt, dyt, gamma, beta, y, dx]);
      return out;
    };
    const before = [ran(BATCH_MOMENTS), ran(RELU_GRAD)];
    const ours = run(ORT_BACKEND);
    t.true(ran(BATCH_MOMENTS) > before[0]! && ran(RELU_GRAD) > before[1]!, `[${shape}]: onnxruntime ran both`);
    const want = run('cpu');
    ['mean', 'variance', 'normalised', 'relu dx'].forEach((name, i) => {
      t.is(ours[i]!.length, want[i]!.length, `${name}: length`);
      const e = relativeError(ours[i]!, want[i]!);
      t.true(e <= BOUND, `${name} [${shape}]: relative error ${e.toExponential(2)}`);
    });
    t.true(x.values.every((v, i) => v > 0 || ours[3]![i] === 0), `[${shape}]: no Relu gradient where x <= 0`);
  }
});

test.serial("batch norm, residual and Relu: fgh's fused kernels on onnxruntime equal relu(batchNormTrain(x) + r) of tfjs kernels on cpu, forward, statistics and every gradient", (t) => {
  const ran = (k: string): number => {
    tf.setBackend(ORT_BACKEND);
    return (tf.backend() as OrtBackend).engine.profile().filter((p) => p.key.startsWith(`${k}:`)).reduce((a, p) => a + p.calls, 0);
  };
  for (const [shape, residual] of [[[4, 9, 7, 24], true], [[4, 9, 7, 24], false], [[6, 40], true], [[2, 30, 30, 16], false], [[1, 5, 3, 8], true]] as Array<[number[], boolean]>) {
    const c = shape[shape.length - 1]!;
    const x = rand(shape);
    // Channel means far from 0, as after a convolution; about half of the outputs are cut by Relu.
    x.values = x.values.map((v, i) => v * 3 + (i % c) * 0.5);
    const [r, dy, gamma, beta] = [rand(shape), rand(shape), rand([c]), rand([c])];
    const run = (backend: string, fused: boolean): Float32Array[] => {
      tf.setBackend(backend);
      const [xt, rt, dyt, gt, bt] = [tf.tensor(x.values, shape), tf.tensor(r.values, shape), tf.tensor(dy.values, shape), tf.tensor(gamma.values, [c]), tf.tensor(beta.values, [c])];
      let moments: Float32Array[] = [];
      const keep = (m: tf.Tensor, v: tf.Tensor): void => void (moments = [Float32Array.from(m.dataSync()), Float32Array.from(v.dataSync())]);
      const f = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor, res?: tf.Tensor): tf.Tensor => {
        if (fused) return batchNormReluTrain(a, g, b, 1e-5, keep, res);
        const z = batchNormTrain(a, g, b, 1e-5, keep);
        return tf.relu(res ? tf.add(z, res) : z);
      };
      const y = f(xt, gt, bt, residual ? rt : undefined);
      const grads = residual
        ? tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(f(a, g, b, q), dyt)))([xt, gt, bt, rt])
        : tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(f(a, g, b), dyt)))([xt, gt, bt]);
      const out = [y.dataSync() as Float32Array, ...moments, ...grads.map((o) => o.dataSync() as Float32Array)];
      tf.dispose([xt, rt, dyt, gt, bt, y, ...grads]);
      return out;
    };
    const before = [ran(BATCH_NORM_RELU), ran(BATCH_NORM_RELU_GRAD)];
    const ours = run(ORT_BACKEND, true);
    t.true(ran(BATCH_NORM_RELU) > before[0]! && ran(BATCH_NORM_RELU_GRAD) > before[1]!, `[${shape}]: onnxruntime ran both`);
    const want = run('cpu', false);
    const names = ['y', 'mean', 'variance', 'dx', 'dgamma', 'dbeta', ...(residual ? ['dresidual'] : [])];
    t.is(ours.length, names.length);
    names.forEach((name, i) => {
      t.is(ours[i]!.length, want[i]!.length, `${name}: length`);
      const e = relativeError(ours[i]!, want[i]!);
      t.true(e <= BOUND, `${name} [${shape}]${residual ? ' with residual' : ''}: relative error ${e.toExponential(2)}`);
    });
    t.true(ours[0]!.some((v) => v === 0) && ours[0]!.some((v) => v > 0), `[${shape}]: Relu cut some outputs and kept others`);
  }
});

test.serial("SEMICON's channel transformer: fgh's fused attention kernels on onnxruntime equal the composite of tfjs kernels on cpu, forward and every gradient", (t) => {
  // dim 24 with 4 heads of 6 (step 1: 4 groups of 6; step 2: 6 groups of 4, the swapped layout), and SEMICON's own.
  for (const [shape, heads] of [[[2, 3, 5, 24], 4], [[1, 4, 4, 48], 6], [[2, 7, 7, 2048], 32]] as Array<[number[], number]>) {
    const x = rand(shape);
    const dy = rand(shape);
    const run = (backend: string): Array<[string, Float32Array]> => {
      tf.setBackend(backend);
      const ct = new ChannelTransformer(new Rng(5), shape[3]!, heads);
      ct.assignNames('ct');
      const [xt, dyt] = [tf.tensor(x.values, shape), tf.tensor(dy.values, shape)];
      const loss = (): tf.Scalar => tf.sum(tf.mul(ct.forward(xt, { training: true }), dyt));
      const out = tf.tidy(() => ct.forward(xt, { training: true }));
      const dx = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(ct.forward(v, { training: true }), dyt)))(xt);
      const { grads } = tf.variableGrads(loss);
      const names = new Map(ct.parameters().map((p) => [p.variable.name, p.name]));
      const res: Array<[string, Float32Array]> = [['out', out.dataSync() as Float32Array], ['dx', dx.dataSync() as Float32Array]];
      const named = Object.entries(grads).map(([id, g]): [string, Float32Array] => [`d ${names.get(id) ?? id}`, g.dataSync() as Float32Array]);
      res.push(...named.sort((p, q) => p[0].localeCompare(q[0])));
      tf.dispose([xt, dyt, out, dx, ...Object.values(grads)]);
      ct.dispose();
      return res;
    };
    tf.setBackend(ORT_BACKEND);
    const calls = (k: string): number => (tf.backend() as OrtBackend).engine.profile().filter((p) => p.key.startsWith(`${k}:`)).reduce((a, p) => a + p.calls, 0);
    const before = [calls(CHANNEL_ATTENTION), calls(CHANNEL_ATTENTION_GRAD)];
    const ours = run(ORT_BACKEND);
    tf.setBackend(ORT_BACKEND);
    t.true(calls(CHANNEL_ATTENTION) >= before[0]! + 2 && calls(CHANNEL_ATTENTION_GRAD) >= before[1]! + 2, `[${shape}]: onnxruntime ran both fused kernels, for both steps`);
    const want = run('cpu');
    t.deepEqual(ours.map(([n]) => n), want.map(([n]) => n));
    t.true(want.some(([n]) => n === 'd ct.qkv2.weight') && want.some(([n]) => n === 'd ct.qkv.bias'), 'the projections have gradients');
    ours.forEach(([name, got], i) => {
      const ref = want[i]![1];
      t.is(got.length, ref.length, name);
      if (!/\.qkv2?\.(weight|bias)$/.test(name)) {
        const e = relativeError(got, ref);
        // dx and the gradients of the norm (between the two attention steps) pass back through
        // the second step's amplified q and k terms described below, and carry some of their
        // summation-order error: up to 1.35e-5 of the largest
        // entry over 13 draws of the small shapes (8.5e-6 for dx), so 1e-4 for them; the output and
        // everything downstream of the logits stay at 1e-5.
        const bound = name === 'dx' || /\.norm\.(weight|bias)$/.test(name) ? 10 * BOUND : BOUND;
        t.true(e <= bound, `${name} [${shape}]: relative error ${e.toExponential(2)} at scale ${maxAbs(ref).toExponential(2)}`);
        return;
      }
      // A projection's gradients sum over every position. For q and k (the first two thirds of its
      // output channels) those terms pass through the signed square root's slope,
      // 1 / (2 sqrt(|a| + 1e-5)), up to 158 at logits near 0, and cancel: float32's own summation
      // order then moves the sums by up to 5e-4 of the largest (measured at SEMICON's size; 1e-6
      // on the small shapes). v's third is not amplified.
      // (Both against the largest entry of the whole gradient: v's part alone can be 0, as for the
      // first projection at batch 1, whose constant shifts the batch norm after it removes.)
      const c = ref.length / 3; // output channels lead both the weight [3C, C/G, 1, 1] and the bias
      const scale = maxAbs(ref);
      const qk = maxAbsDiff(got.subarray(0, 2 * c), ref.subarray(0, 2 * c)) / scale;
      const v = maxAbsDiff(got.subarray(2 * c), ref.subarray(2 * c)) / scale;
      t.log(`${name} [${shape}]: q and k ${qk.toExponential(1)}, v ${v.toExponential(1)} of the largest`);
      t.true(v <= BOUND, `${name} [${shape}], v: relative error ${v.toExponential(2)}`);
      t.true(qk <= 100 * BOUND, `${name} [${shape}], q and k: relative error ${qk.toExponential(2)}`);
    });
  }
});

test.serial('small tensors and other dtypes stay on the cpu kernels', (t) => {
  const before = engineCalls();
  tf.setBackend(ORT_BACKEND);
  const a = tf.tensor([1, 2, 3]);
  const r = tf.add(a, a);
  t.deepEqual(Array.from(r.dataSync()), [2, 4, 6]);
  const ints = tf.add(tf.ones([200, 200], 'int32'), tf.ones([200, 200], 'int32'));
  t.is(ints.dtype, 'int32');
  t.is(ints.dataSync()[0], 2);
  tf.dispose([a, r, ints]);
  t.is(engineCalls(), before, 'no onnxruntime call for a 3-element add or an int32 add');
  t.true(ortKernelNames().includes('Conv2DBackpropFilter'));
});

test.serial('NCHWc: the blocked convolutions are found where the CPU has them, and the convolution and pooling cases above ran blocked', (t) => {
  tf.setBackend(ORT_BACKEND);
  const engine = (tf.backend() as OrtBackend).engine;
  const flags = process.arch === 'x64' ? (readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)?.[1] ?? '').split(/\s+/) : [];
  // MLAS blocks by the vector width: 16 floats with AVX-512, 8 with AVX2.
  const expected = process.env.FGH_NCHWC === '0' ? 0 : flags.includes('avx512f') ? 16 : flags.includes('avx2') ? 8 : null;
  const block = nchwcBlock(engine);
  if (expected === null) t.log(`no AVX2 here: NCHWc block ${block}`);
  else t.is(block, expected, 'MLAS\'s block for this CPU');
  if (block === 0) return;
  const blocked = engine.profile().filter((p) => p.key.endsWith(`:b${block}`) && p.calls > 0).map((p) => p.key.split(':')[0]);
  for (const kernel of ['Conv2D', 'FusedConv2D', 'Conv2DBackpropInput', 'MaxPool']) t.true(blocked.includes(kernel), `${kernel} ran with block ${block}`);
  // Strided input gradients with even sizes take the per-phase form (blocked too).
  const phased = engine.profile().filter((p) => p.calls > 0 && p.key.startsWith('Conv2DBackpropInput:') && p.key.includes(':s2,2:') && p.key.endsWith(`:b${block}`));
  t.true(phased.length >= 3, `strided input gradients ran blocked: ${phased.map((p) => p.key).join(', ')}`);
});

test.serial('FusedBatchNorm: scale and offset, channel means far from 0 (as after a convolution)', (t) => {
  for (const shape of [[4, 20, 15, 16], [2, 30, 30, 24]]) {
    const c = shape[shape.length - 1]!;
    const x = rand(shape);
    x.values = x.values.map((v, i) => v * 0.7 + ((i % c) - c / 2) * 1.5);
    const mean = { values: Float32Array.from({ length: c }, (_, k) => (k - c / 2) * 1.5 + 0.01 * k), shape: [c] };
    const variance = { values: Float32Array.from({ length: c }, (_, k) => 0.4 + 0.05 * k), shape: [c] };
    const scale = rand([c]);
    const offset = rand([c]);
    check(t, `FusedBatchNorm [${shape}]`, 'FusedBatchNorm', { x, mean, variance, offset, scale }, { varianceEpsilon: 1e-5 });
    check(t, `FusedBatchNorm without scale and offset [${shape}]`, 'FusedBatchNorm', { x, mean, variance }, { varianceEpsilon: 1e-5 });
  }
});
