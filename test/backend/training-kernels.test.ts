import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import '@tensorflow/tfjs-backend-cpu';
import { selectBackend } from '../../src/backend/select.js';
import { BATCH_MOMENTS, BATCH_NORM_GRAD, BATCH_NORM_RELU, BATCH_NORM_RELU_GRAD, CHANNEL_ATTENTION, CHANNEL_ATTENTION_GRAD, RELU_GRAD, SGD_STEP } from '../../src/backend/fused-kernels.js';
import type { OrtBackend } from '../../src/backend/onnxruntime/backend.js';
import { tf } from '../../src/backend/tf.js';
import { wasmTrainingKernelNames } from '../../src/backend/wasm/kernels.js';
import { writeSynthDataset } from '../../src/data/synth.js';
import { loadDataset, split } from '../../src/data/datasets/index.js';
import { trainSrlh } from '../../src/train/srlh.js';
import { trainSemicon } from '../../src/train/semicon.js';
import { assertReplayMatchesCpu, captureKernels } from '../helpers/kernel-capture.js';

/**
 * Every kernel that real sRLH and SEMICON training runs on the onnxruntime and wasm backends
 * (forward, losses, gradients of every weight, optimiser, evaluation) is replayed on the tfjs cpu
 * backend with the same inputs and attributes: float outputs agree to 1e-5 of the output's largest
 * magnitude (or, for sums and products, of their terms': see test/helpers/kernel-capture.ts),
 * integer and boolean outputs exactly. This covers the kernels fgh delegates
 * or registers and the ones each backend has natively, as training actually calls them.
 */
const BOUND = 1e-5;
/**
 * tfjs cpu's Conv2DBackpropFilter is a plain loop (minutes on early ResNet layers): it is replayed on
 * the deeper layers' shapes here; test/backend/conv2d-backprop-filter.test.ts covers the others.
 */
const CAPTURE = {
  maxElements: 1_000_000,
  maxElementsFor: { Conv2DBackpropFilter: 25_000 },
  // fgh's own kernels have no cpu counterpart: onnxruntime-kernels.test.ts checks the batch-norm
  // statistics and gradient, batch norm with Relu, Relu's gradient and the attention weights against the composites of
  // tfjs kernels they replace, sgd.test.ts the SGD step against torch.optim.SGD.
  skip: [BATCH_MOMENTS, BATCH_NORM_GRAD, BATCH_NORM_RELU, BATCH_NORM_RELU_GRAD, RELU_GRAD, SGD_STEP, CHANNEL_ATTENTION, CHANNEL_ATTENTION_GRAD],
};
let work = '';

test.before(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'fgh-kernels-'));
  await writeSynthDataset(path.join(work, 'synth'), { classes: 3, perClass: 4, size: 112, seed: 3 });
});

test.after.always(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

function data() {
  const root = path.join(work, 'synth');
  const d = loadDataset('cub', { root });
  return { train: split(d, 'train'), test: split(d, 'test'), classes: d.classes.length, info: { name: 'synth', root } };
}

const quiet = { quiet: true, log: () => undefined };

function ranOnOnnxruntime(kernel: string): boolean {
  return (tf.backend() as unknown as OrtBackend).engine.profile().some((p) => p.key.startsWith(`${kernel}:`) && p.calls > 0);
}

/** The kernels fgh adds or replaces on each backend, which training must exercise. */
const OWN_KERNELS: Record<'wasm' | 'onnxruntime', string[]> = {
  wasm: [...wasmTrainingKernelNames(), 'Conv2DBackpropInput'],
  onnxruntime: ['Conv2D', 'Conv2DBackpropInput', 'Conv2DBackpropFilter', 'BatchMatMul', 'MaxPool', 'MaxPoolGrad', 'Multiply', 'Sum'],
};

for (const backend of ['onnxruntime', 'wasm'] as const) {
  test.serial(`sRLH training on ${backend}: every kernel it calls equals the tfjs cpu kernel on the same inputs`, async (t) => {
    await selectBackend({ prefer: backend });
    const capture = captureKernels(backend, CAPTURE);
    const t0 = Date.now();
    try {
      // Epoch 1 is the classification warm-up; epoch 2 adds the hash and triplet losses; then evaluation.
      await trainSrlh({ data: data(), bits: 16, out: path.join(work, `srlh-${backend}`), size: 112, ...quiet }, { epochs: 2, batch: 4, warmup: 1, evalEvery: 2 });
    } finally {
      capture.stop();
    }
    t.log(`sRLH training with capture: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    for (const k of OWN_KERNELS[backend]) t.true(capture.seen.has(k), `fgh's ${k} was exercised`);
    if (backend === 'onnxruntime') for (const k of [BATCH_MOMENTS, BATCH_NORM_GRAD, BATCH_NORM_RELU, BATCH_NORM_RELU_GRAD]) t.true(ranOnOnnxruntime(k), `fgh's ${k} ran`);
    assertReplayMatchesCpu(t, `sRLH on ${backend}`, capture, backend, BOUND);
  });

  test.serial(`SEMICON training on ${backend}: every kernel it calls equals the tfjs cpu kernel on the same inputs`, async (t) => {
    await selectBackend({ prefer: backend });
    const capture = captureKernels(backend, CAPTURE);
    try {
      await trainSemicon({ data: data(), bits: 12, out: path.join(work, `semicon-${backend}`), size: 64, ...quiet }, { maxIter: 1, maxEpoch: 1, numSamples: 4, batch: 2 });
    } finally {
      capture.stop();
    }
    for (const k of OWN_KERNELS[backend]) t.true(capture.seen.has(k), `${k} was exercised`);
    if (backend === 'onnxruntime') for (const k of [BATCH_MOMENTS, BATCH_NORM_GRAD, BATCH_NORM_RELU, BATCH_NORM_RELU_GRAD, RELU_GRAD, CHANNEL_ATTENTION, CHANNEL_ATTENTION_GRAD]) t.true(ranOnOnnxruntime(k), `fgh's ${k} ran`);
    assertReplayMatchesCpu(t, `SEMICON on ${backend}`, capture, backend, BOUND);
  });
}
