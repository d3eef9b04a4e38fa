import test from 'ava';
import { tf } from '../../src/backend/tf.js';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { registerWasmTrainingKernels } from '../../src/backend/wasm/kernels.js';
import { Rng } from '../../src/util/rng.js';
import { maxAbs, relativeError } from '../helpers/tensors.js';
import { convCaseGrid, type ConvCase } from '../helpers/conv-cases.js';

const cases = convCaseGrid([
  { n: 2, h: 11, w: 9, ci: 3, co: 5 },
  { n: 3, h: 16, w: 16, ci: 8, co: 4 },
]);

function randomArray(rng: Rng, n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal();
  return a;
}

async function backpropFilter(backend: string, c: ConvCase, x: Float32Array, dyData: Float32Array, dyShape: readonly number[]): Promise<Float32Array> {
  await tf.setBackend(backend);
  const xt = tf.tensor4d(x, [c.n, c.h, c.w, c.ci]);
  const dy = tf.tensor(dyData, [...dyShape]);
  const out = tf.engine().runKernel('Conv2DBackpropFilter', { x: xt, dy }, {
    strides: [c.stride, c.stride],
    pad: c.pad,
    dataFormat: 'NHWC',
    dimRoundingMode: undefined,
    filterShape: [c.k, c.k, c.ci, c.co],
  } as never) as tf.Tensor;
  const data = (await out.data()) as Float32Array;
  tf.dispose([xt, dy, out]);
  return data;
}

test.before(async () => {
  registerWasmTrainingKernels();
  await tf.setBackend('wasm');
  await tf.ready();
});

for (const c of cases) {
  const padName = typeof c.pad === 'string' ? c.pad : 'explicit';
  test.serial(`Conv2DBackpropFilter wasm = cpu: k${c.k} s${c.stride} ${padName} ${c.h}x${c.w}`, async (t) => {
    const rng = new Rng(c.k * 100 + c.stride * 10 + c.h);
    const x = randomArray(rng, c.n * c.h * c.w * c.ci);
    // The forward output shape tells dy's shape.
    await tf.setBackend('cpu');
    const probe = tf.conv2d(tf.zeros([c.n, c.h, c.w, c.ci]) as tf.Tensor4D, tf.zeros([c.k, c.k, c.ci, c.co]) as tf.Tensor4D, c.stride, c.pad);
    const dyShape = probe.shape;
    probe.dispose();
    const dy = randomArray(rng, dyShape.reduce((a, b) => a * b, 1));
    const ref = await backpropFilter('cpu', c, x, dy, dyShape);
    const before = tf.memory().numTensors;
    const got = await backpropFilter('wasm', c, x, dy, dyShape);
    t.is(tf.memory().numTensors, before, 'no tensors leaked');
    t.is(got.length, c.k * c.k * c.ci * c.co);
    const err = relativeError(got, ref);
    t.log(`relative error ${err.toExponential(2)} at max |dw| ${maxAbs(ref).toFixed(2)}`);
    // Relative to the largest |dw| (10-120 over the grid); one run: at most 1.1e-6.
    t.true(err <= 1e-5, `relative error ${err} at max |dw| ${maxAbs(ref)}`);
  });
}

test.serial('gradient of a conv through tf.grad runs on wasm and matches cpu', async (t) => {
  const rng = new Rng(7);
  const x = randomArray(rng, 2 * 12 * 12 * 4);
  const w = randomArray(rng, 3 * 3 * 4 * 6);
  const grad = async (backend: string): Promise<Float32Array> => {
    await tf.setBackend(backend);
    return tf.tidy(() => {
      const xt = tf.tensor4d(x, [2, 12, 12, 4]);
      const g = tf.grad((wt: tf.Tensor) => tf.sum(tf.square(tf.conv2d(xt, wt as tf.Tensor4D, 2, 'same'))));
      return g(tf.tensor4d(w, [3, 3, 4, 6]));
    }).dataSync() as Float32Array;
  };
  const ref = await grad('cpu');
  const got = await grad('wasm');
  const err = relativeError(got, ref);
  t.log(`relative error ${err.toExponential(2)} at max |dw| ${maxAbs(ref).toFixed(2)}`);
  // Relative to the largest |dw|, 510 here; one run: 2.4e-7 of it.
  t.true(err <= 2e-6, `relative error ${err} at max |dw| ${maxAbs(ref)}`);
});
