import test from 'ava';
import { tf } from '../../src/backend/tf.js';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { registerFastConv2DBackpropInput } from '../../src/backend/wasm/conv-backprop-input.js';
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

async function backpropInput(backend: string, c: ConvCase, w: Float32Array, dyData: Float32Array, dyShape: readonly number[]): Promise<Float32Array> {
  await tf.setBackend(backend);
  const filter = tf.tensor4d(w, [c.k, c.k, c.ci, c.co]);
  const dy = tf.tensor(dyData, [...dyShape]);
  const out = tf.engine().runKernel('Conv2DBackpropInput', { dy, filter }, {
    strides: [c.stride, c.stride],
    pad: c.pad,
    dataFormat: 'NHWC',
    dimRoundingMode: undefined,
    inputShape: [c.n, c.h, c.w, c.ci],
  } as never) as tf.Tensor;
  const data = (await out.data()) as Float32Array;
  tf.dispose([filter, dy, out]);
  return data;
}

test.before(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
  registerFastConv2DBackpropInput();
});

for (const c of cases) {
  const padName = typeof c.pad === 'string' ? c.pad : 'explicit';
  test.serial(`Conv2DBackpropInput wasm (as Conv2D) = cpu: k${c.k} s${c.stride} ${padName} ${c.h}x${c.w}`, async (t) => {
    const rng = new Rng(c.k * 100 + c.stride * 10 + c.h);
    const w = randomArray(rng, c.k * c.k * c.ci * c.co);
    await tf.setBackend('cpu');
    const probe = tf.conv2d(tf.zeros([c.n, c.h, c.w, c.ci]) as tf.Tensor4D, tf.zeros([c.k, c.k, c.ci, c.co]) as tf.Tensor4D, c.stride, c.pad);
    const dyShape = probe.shape;
    probe.dispose();
    const dy = randomArray(rng, dyShape.reduce((a, b) => a * b, 1));
    const ref = await backpropInput('cpu', c, w, dy, dyShape);
    const before = tf.memory().numTensors;
    const got = await backpropInput('wasm', c, w, dy, dyShape);
    t.is(tf.memory().numTensors, before, 'no tensors leaked');
    t.is(got.length, c.n * c.h * c.w * c.ci);
    const err = relativeError(got, ref);
    t.log(`relative error ${err.toExponential(2)} at max |dx| ${maxAbs(ref).toFixed(2)}`);
    // Relative to the largest |dx| (5.7-52 over the grid); one run: at most 5.1e-7.
    t.true(err <= 5e-6, `relative error ${err} at max |dx| ${maxAbs(ref)}`);
  });
}

test.serial('registering the replacement twice is a no-op and leaves the kernel registered', (t) => {
  t.false(registerFastConv2DBackpropInput(), 'second registration is a no-op');
  t.truthy(tf.getKernel('Conv2DBackpropInput', 'wasm'));
});
