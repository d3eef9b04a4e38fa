import test from 'ava';
import { tf } from '../../src/backend/tf.js';
import '@tensorflow/tfjs-backend-cpu';
import { MAX_POOL_GRAD_WASM, maxPoolGradSimd, maxPoolGradSimdAvailable } from '../../src/backend/simd/max-pool-grad.js';
import { SGD_STEP_WASM, sgdStepSimd } from '../../src/backend/simd/sgd-step.js';
import { validate } from '../../src/util/wasm-api.js';
import { sgdLoop } from '../../src/backend/onnxruntime/sgd-step.js';
import { maxPoolGradNhwc, poolInfo, type PoolAttrs } from '../../src/backend/onnxruntime/spatial-kernels.js';
import { Rng } from '../../src/util/rng.js';
import { relativeError } from '../helpers/tensors.js';

/**
 * fgh's WebAssembly SIMD kernels: MaxPoolGrad against tfjs's cpu kernel and, bit for bit, against
 * the scalar function it stands in for, and the calls it must hand back to that function
 * untouched; the SGD step bit for bit against the scalar loop (which test/train/sgd checks
 * against the onnxruntime kernel, through the in-place step that now runs this one first).
 */

const rng = new Rng(5);
type Pad = PoolAttrs['pad'];
type Shape = [number, number, number, number];

function pool(x: Float32Array, shape: Shape, k: number, s: number, pad: Pad): Float32Array {
  return tf.tidy(() => tf.maxPool(tf.tensor4d(x, shape), k, s, pad as never).dataSync() as Float32Array);
}

function cpuGrad(dy: Float32Array, x: Float32Array, y: Float32Array, shape: Shape, yShape: number[], attrs: PoolAttrs): Float32Array {
  return tf.tidy(() => (tf.engine().runKernel('MaxPoolGrad', { dy: tf.tensor(dy, yShape), input: tf.tensor(x, shape), output: tf.tensor(y, yShape) }, attrs as never) as tf.Tensor).dataSync() as Float32Array);
}

test.before(async () => {
  await tf.setBackend('cpu');
});

test('the hand-assembled modules are valid WebAssembly, and this Node runs them', (t) => {
  t.true(maxPoolGradSimdAvailable(), 'Node 20 has WebAssembly SIMD');
  t.true(validate(MAX_POOL_GRAD_WASM));
  t.true(validate(SGD_STEP_WASM));
});

const cases: Array<{ shape: Shape; k: number; s: number; pad: Pad }> = [
  { shape: [2, 32, 32, 16], k: 3, s: 2, pad: [[0, 0], [1, 1], [1, 1], [0, 0]] }, // ResNet's stem pool
  { shape: [2, 33, 31, 8], k: 3, s: 2, pad: 'valid' },
  { shape: [1, 30, 30, 4], k: 2, s: 2, pad: 'same' },
  { shape: [3, 9, 11, 12], k: 3, s: 1, pad: 'same' },
  { shape: [1, 7, 7, 4], k: 5, s: 3, pad: [[0, 0], [2, 1], [0, 2], [0, 0]] },
];

for (const { shape, k, s, pad } of cases) {
  test(`equals tfjs's cpu kernel and the scalar function: ${shape} k${k} s${s} ${JSON.stringify(pad)}`, (t) => {
    const attrs: PoolAttrs = { filterSize: k, strides: s, pad };
    const c = poolInfo(shape, attrs)!;
    t.truthy(c);
    const size = shape.reduce((a, b) => a * b, 1);
    // Distinct values, and ReLU-like ones (a third zeros: ties in most windows, where the first
    // tap in row-major order must win).
    const distinct = Float32Array.from({ length: size }, () => rng.normal());
    const relu = distinct.map((v, i) => (i % 3 === 0 ? 0 : Math.max(v, 0)));
    for (const [label, x] of [['distinct', distinct], ['ties', relu]] as const) {
      const y = pool(x, shape, k, s, pad);
      const yShape = [c.batchSize, c.outHeight, c.outWidth, c.outChannels];
      const dy = Float32Array.from({ length: y.length }, () => rng.normal());
      const out = new Float32Array(size).fill(NaN); // from the pool: old contents
      t.true(maxPoolGradSimd(dy, x, y, c, out), `${label}: the SIMD kernel ran`);
      t.true(relativeError(out, cpuGrad(dy, x, y, shape, yShape, attrs)) <= 1e-6, `${label}: against tfjs's cpu kernel`);
      t.deepEqual(out, maxPoolGradNhwc(dy, x, y, c), `${label}: bit for bit the scalar function's`);
      // One image per kernel call (the default takes as many as fit in 16 MiB).
      const oneByOne = new Float32Array(size).fill(NaN);
      t.true(maxPoolGradSimd(dy, x, y, c, oneByOne, 1));
      t.deepEqual(oneByOne, out, `${label}: the same image by image`);
    }
  });
}

test('hands back what the scalar function answers differently or cannot take (one image: nothing written)', (t) => {
  const shape: Shape = [1, 8, 8, 4];
  const attrs: PoolAttrs = { filterSize: 3, strides: 2, pad: [[0, 0], [1, 1], [1, 1], [0, 0]] };
  const c = poolInfo(shape, attrs)!;
  const x = Float32Array.from({ length: 256 }, () => rng.normal());
  const y = pool(x, shape, 3, 2, attrs.pad);
  const dy = Float32Array.from({ length: y.length }, () => rng.normal());
  const untouched = (label: string, xs: Float32Array, ys: Float32Array, info = c): void => {
    const out = new Float32Array(xs.length).fill(7);
    t.false(maxPoolGradSimd(dy.subarray(0, ys.length), xs, ys, info, out), label);
    t.true(out.every((v) => v === 7), `${label}: nothing written`);
  };
  t.true(maxPoolGradSimd(dy, x, y, c, new Float32Array(256)), 'the plain case runs');
  // A NaN before a window's maximum: the scalar search falls back to tfjs's rule there.
  const nan = x.slice();
  nan[0] = NaN;
  untouched('a NaN first in a window', nan, pool(nan, shape, 3, 2, attrs.pad));
  const minusInf = x.slice(0, 64).fill(-Infinity);
  const infShape: Shape = [1, 4, 4, 4];
  const ci = poolInfo(infShape, attrs)!;
  untouched('a window of -Infinity', minusInf, pool(minusInf, infShape, 3, 2, attrs.pad), ci);
  untouched('a y found in no window', x, y.map((v) => v + 1));
  const odd: Shape = [1, 8, 8, 6];
  const x6 = Float32Array.from({ length: 384 }, () => rng.normal());
  untouched('channels not a multiple of 4', x6, pool(x6, odd, 3, 2, attrs.pad), poolInfo(odd, attrs)!);
});

test('the SIMD SGD step and the scalar loop for the tail give the scalar loop\'s bits, in all four cases', (t) => {
  const n = 40_003; // past two chunks, and a tail of 3
  const rand = (scale: number): Float32Array => Float32Array.from({ length: n }, () => rng.normal() * scale);
  const [p0, g, b0] = [rand(0.1), rand(0.01), rand(0.01)];
  for (const nesterov of [false, true]) {
    for (const weightDecay of [0, 1e-4]) {
      const a = { lr: 0.0123, momentum: 0.91, weightDecay, nesterov };
      const [p, b, ps, bs] = [p0.slice(), b0.slice(), p0.slice(), b0.slice()];
      sgdLoop(p, g, b, a);
      const done = sgdStepSimd(ps, g, bs, a);
      t.is(done, n - 3, 'whole groups of four');
      t.true(ps.subarray(done).every((v, i) => v === p0[done + i]), 'the tail left to the scalar loop');
      sgdLoop(ps, g, bs, a, done);
      t.deepEqual(ps, p, `parameters, nesterov ${nesterov}, weight decay ${weightDecay}`);
      t.deepEqual(bs, b, `momentum buffer, nesterov ${nesterov}, weight decay ${weightDecay}`);
    }
  }
});
