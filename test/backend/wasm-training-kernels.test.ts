import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import '@tensorflow/tfjs-backend-cpu';
import { selectBackend } from '../../src/backend/select.js';
import { wasmTrainingKernelNames } from '../../src/backend/wasm-kernels.js';
import { writeSynthDataset } from '../../src/data/synth.js';
import { loadDataset, split } from '../../src/data/datasets/index.js';
import { trainSrlh } from '../../src/train/srlh.js';
import { trainSemicon } from '../../src/train/semicon.js';
import { captureKernels, replay, type Capture } from '../helpers/kernel-capture.js';

/**
 * Every kernel that real sRLH and SEMICON training runs on wasm (forward, losses, gradients of
 * every weight, optimiser, evaluation) is replayed on the tfjs cpu backend with the same inputs
 * and attributes: float outputs agree to 1e-4 of max(1, the output's largest magnitude), integer
 * and boolean outputs exactly. This covers the kernels fgh registers for wasm and the ones wasm
 * has natively, as training actually calls them.
 */
const BOUND = 1e-4;
/**
 * tfjs cpu's Conv2DBackpropFilter is a plain loop (minutes on early ResNet layers): it is replayed on
 * the deeper layers' shapes here; test/backend/conv2d-backprop-filter.test.ts covers the others.
 */
const CAPTURE = { maxElements: 1_000_000, maxElementsFor: { Conv2DBackpropFilter: 25_000 } };
let work = '';

test.before(async () => {
  const b = await selectBackend();
  if (b.name !== 'wasm') throw new Error(`this test is about the wasm backend; ${b.name} was chosen`);
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

function checkOnCpu(t: import('ava').ExecutionContext, label: string, capture: Capture): void {
  {
    const t0 = Date.now();
    const results = replay(capture.calls, 'wasm', 'cpu');
    t.log(`${label}: replay ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const worst = new Map<string, { error: number; detail: string }>();
    for (const r of results) if (!worst.has(r.kernel) || r.error > worst.get(r.kernel)!.error) worst.set(r.kernel, r);
    const names = [...capture.seen.keys()].sort();
    t.log(`${label}: ${names.length} kernels, ${results.length} signatures replayed on cpu, ${capture.skippedForSize} skipped for size: ${names.join(' ')}`);
    const ranked = [...worst].sort((a, b) => b[1].error - a[1].error);
    const slow = new Map<string, number>();
    for (const r of results) slow.set(r.kernel, (slow.get(r.kernel) ?? 0) + r.ms);
    t.log(`${label} cpu replay ms: ${[...slow].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([k, v]) => `${k} ${Math.round(v)}`).join(', ')}`);
    t.log(`${label} worst relative errors: ${ranked.slice(0, 6).map(([k, v]) => `${k} ${v.error.toExponential(1)}`).join(', ')}`);
    for (const [k, v] of ranked) t.true(v.error <= BOUND, `${label} ${k}: ${v.detail}`);
    t.deepEqual(capture.unreadable, [], 'every recorded input could be read back');
    for (const k of [...capture.seen.keys()]) t.true(worst.has(k), `${label}: ${k} ran but was never recorded (all calls too large?)`);
  }
}

test.serial('sRLH training on wasm: every kernel it calls equals the tfjs cpu kernel on the same inputs', async (t) => {
  const capture = captureKernels('wasm', CAPTURE);
  const t0 = Date.now();
  try {
    // Epoch 1 is the classification warm-up; epoch 2 adds the hash and triplet losses; then evaluation.
    await trainSrlh({ data: data(), bits: 16, out: path.join(work, 'srlh'), size: 112, ...quiet }, { epochs: 2, batch: 4, warmup: 1, evalEvery: 2 });
  } finally {
    capture.stop();
  }
  t.log(`sRLH training with capture: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  for (const k of wasmTrainingKernelNames()) t.true(capture.seen.has(k), `fgh's ${k} was exercised`);
  t.true(capture.seen.has('Conv2DBackpropInput'), 'the replaced Conv2DBackpropInput was exercised');
  checkOnCpu(t, 'sRLH', capture);
});

test.serial('SEMICON training on wasm: every kernel it calls equals the tfjs cpu kernel on the same inputs', async (t) => {
  const capture = captureKernels('wasm', CAPTURE);
  try {
    await trainSemicon({ data: data(), bits: 12, out: path.join(work, 'semicon'), size: 64, ...quiet }, { maxIter: 1, maxEpoch: 1, numSamples: 4, batch: 2 });
  } finally {
    capture.stop();
  }
  for (const k of [...wasmTrainingKernelNames(), 'Conv2DBackpropInput']) t.true(capture.seen.has(k), `${k} was exercised`);
  checkOnCpu(t, 'SEMICON', capture);
});
