import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tf } from '../../src/backend/tf.js';
import { selectBackend } from '../../src/backend/select.js';
import { Semicon, semiconSplit } from '../../src/models/semicon.js';
import { loadStateDict, type TorchTensor } from '../../src/models/state-dict.js';
import { Rng } from '../../src/util/rng.js';
import { exportOnnx } from '../../src/export/onnx-file.js';
import { newCheckpointConfig, readCheckpointConfig, saveModelCheckpoint } from '../../src/weights/checkpoint.js';
import * as ort from 'onnxruntime-node';
import { missingPythonMessage, referencePython } from '../helpers/python.js';
import { readBundle, nchwToNhwc } from '../helpers/bundle.js';
import { maxAbs, maxAbsDiff, normRelativeError, relativeError } from '../helpers/tensors.js';
import { compareGradients, describeGradients } from '../helpers/parity.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const pyDir = path.resolve(here, '../../../test/python');
const python = referencePython('torch', 'torchvision', 'numpy');
if (!python) console.warn(`SEMICON parity: ${missingPythonMessage('torch', 'torchvision', 'numpy')}`);
const maybe = python ? test.serial : test.skip;

test.before(async () => {
  await selectBackend();
});

test('SEMICON code lengths split as the reference does; others are refused', (t) => {
  t.deepEqual([12, 24, 32, 48].map((b) => semiconSplit(b)), [
    { global: 6, local: 2 },
    { global: 12, local: 4 },
    { global: 17, local: 5 },
    { global: 24, local: 8 },
  ]);
  for (const b of [16, 64, 7]) t.throws(() => semiconSplit(b), { message: /cannot make/ });
});

/** Per-tensor gradient errors of `got` against `want` (bundles with `grad.<name>` entries). */
function bundleGradientErrors(got: Map<string, TorchTensor>, want: Map<string, TorchTensor>): Map<string, { max: number; norm: number }> {
  const out = new Map<string, { max: number; norm: number }>();
  for (const [name, w] of want) {
    if (!name.startsWith('grad.')) continue;
    const g = got.get(name);
    if (g) out.set(name.slice(5), { max: relativeError(g.data, w.data), norm: normRelativeError(g.data, w.data) });
  }
  return out;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? 0;

function describeErrors(e: Map<string, { max: number; norm: number }>): string {
  const max = [...e.values()].map((v) => v.max);
  const norm = [...e.values()].map((v) => v.norm);
  return `${e.size} gradients: worst max-based ${Math.max(...max).toExponential(2)}, worst norm-wise ${Math.max(...norm).toExponential(2)}, median max-based ${median(max).toExponential(2)}`;
}

/** Max abs difference of the running statistics (`state.<name>`) of two bundles. */
function statErrors(got: Map<string, TorchTensor>, want: Map<string, TorchTensor>): number {
  let m = 0;
  for (const [name, w] of want) if (name.startsWith('state.') && got.has(name)) m = Math.max(m, maxAbsDiff(got.get(name)!.data, w.data));
  return m;
}

maybe('SEMICON: parameter count and eval features match the PyTorch reference; eval-mode gradients match; training-mode forward and gradients as close to float64 as PyTorch float32 is', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-semicon-'));
  try {
    const r = spawnSync(python!, [path.join(pyDir, 'semicon_reference.py'), dir, '224', '2', '5', '32', '64', '--float64'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`reference script failed: ${r.stderr}`);
    const model = new Semicon(new Rng(1), { bits: 32 });
    const count = model.trainableVariables().reduce((a, v) => a + v.size, 0);
    t.is(count, Number(r.stdout.trim()), 'trainable parameters, as PyTorch counts them');
    const report = loadStateDict(model, readBundle(path.join(dir, 'weights')), { strict: true });
    t.deepEqual(report.missing, []);

    const ev = readBundle(path.join(dir, 'eval'));
    const x = nchwToNhwc(ev.get('input')!);
    const features = model.encode(tf.tensor4d(x.data, x.shape));
    const evalErr = maxAbsDiff(features.dataSync(), ev.get('features')!.data);
    const evalScale = maxAbs(ev.get('features')!.data);
    features.dispose();
    t.log(`eval (224 px, batch 2): features max abs diff ${evalErr.toExponential(2)} (max |feature| ${evalScale.toFixed(3)}, relative ${(evalErr / evalScale).toExponential(2)})`);
    // tanh features, max |f| 0.55 here; one run: 5.5e-7 of it.
    t.true(evalErr / evalScale <= 5e-6, `eval features: max abs diff ${evalErr} at max |feature| ${evalScale}`);

    const tr = readBundle(path.join(dir, 'train'));
    const xt = nchwToNhwc(tr.get('input')!);
    const rt = tr.get('r')!.data;
    const before = tf.memory().numTensors;
    /** Features and gradients of sum(features * r) on the 64 px input, BN on batch statistics if training. */
    const pass = (training: boolean) => {
      let f32: Float32Array = new Float32Array(0);
      const { value, grads } = tf.variableGrads(() => {
        const f = model.forward(tf.tensor4d(xt.data, xt.shape), { training, noDropout: true });
        f32 = f.dataSync() as Float32Array;
        return tf.sum(tf.mul(f, tf.tensor(rt, f.shape)));
      }, model.trainableVariables());
      value.dispose();
      return { features: f32, grads };
    };

    // Eval-mode gradients (BN on running statistics): every backward formula but the batch-statistics
    // one, which the ResNet parity test covers. Well conditioned on this input (the script picks one
    // whose ReLU inputs stay clear of 0), so the bounds are tight: PyTorch float32 vs float64 gives
    // 4e-5 worst norm-wise and 2e-6 median. tfjs-wasm's Sign, which returns 0 near 0, gave 1e-2 and 6e-4.
    const ev32 = readBundle(path.join(dir, 'evalgrad'));
    const evalPass = pass(false);
    const evalGrads = compareGradients(model, evalPass.grads, ev32);
    t.log(`eval-mode gradients (64 px, batch 2), ours vs PyTorch: ${describeGradients(evalGrads)}`);
    t.deepEqual(evalGrads.presenceMismatch, []);
    t.is(evalGrads.compared, model.trainableVariables().length, 'every parameter has a gradient');
    const evalModeErr = maxAbsDiff(evalPass.features, ev32.get('features')!.data);
    const evalModeScale = maxAbs(ev32.get('features')!.data);
    t.log(`eval-mode features (64 px): max abs diff ${evalModeErr.toExponential(2)} at max |feature| ${evalModeScale.toFixed(3)} (relative ${(evalModeErr / evalModeScale).toExponential(2)})`);
    // tanh features, max |f| 0.55 here; one run: 4.9e-7 of it.
    t.true(evalModeErr / evalModeScale <= 5e-6, `eval-mode features: max abs diff ${evalModeErr} at max |feature| ${evalModeScale}`);
    t.true(evalGrads.worstNorm <= 2e-4, `eval-mode gradient of ${evalGrads.worstNormName}: norm-wise ${evalGrads.worstNorm}`);
    t.true(evalGrads.worstMax <= 5e-3, `eval-mode gradient of ${evalGrads.worstMaxName}: max-based ${evalGrads.worstMax}`);
    t.true(evalGrads.medianMax <= 2e-5, `eval-mode median max-based gradient error ${evalGrads.medianMax}`);
    tf.dispose(Object.values(evalPass.grads));

    // Training mode (BN on batch statistics). Float32 cannot pin these gradients down, in PyTorch
    // either: rounding flips ReLU masks at near-ties and the signs of channel-transformer logits
    // near 0 (sign(a)·sqrt(|a| + 1e-5) jumps by 6e-3 there). On a 96 px batch of 5, PyTorch float32
    // and float64 disagree on 157 of 11.4M ReLU inputs and 509 of 7.9M logit signs (none of either
    // in eval mode, where the forward error stays at 3e-7 instead of growing to 1e-4 through the
    // batch-normalised blocks). A flip changes one gradient entry; BN's batch-statistics backward
    // (means of dy and dy·x̂ over N·H·W) spreads it over the channel, and convolutions over every
    // channel upstream. Replaying float32's ReLU masks in float64 brings ResNet-50 stages 1-3 to
    // 4e-5; with each precision choosing its own masks they differ by 1e-1. No input avoids the
    // flips (12 tried, 10-18 in stages 1-3 alone), so the reference here is PyTorch in float64 and
    // the claim is that our float32 is about as close to it as PyTorch's own float32.
    const exact = readBundle(path.join(dir, 'train64'));
    const trainPass = pass(true);
    const ref64 = exact.get('features')!.data;
    const featOurs = maxAbsDiff(trainPass.features, ref64);
    const featTorch = maxAbsDiff(tr.get('features')!.data, ref64);
    t.log(`train (64 px, batch 2): features max abs diff vs float64: ours ${featOurs.toExponential(2)}, PyTorch float32 ${featTorch.toExponential(2)}`);
    const ours = compareGradients(model, trainPass.grads, exact);
    const torch32 = bundleGradientErrors(tr, exact);
    const torchStat = statErrors(tr, exact);
    t.log(`train, ours vs float64: ${describeGradients(ours)}`);
    t.log(`train, PyTorch float32 vs float64: ${describeErrors(torch32)}; running stats max abs diff ${torchStat.toExponential(2)}`);
    t.deepEqual(ours.presenceMismatch, []);
    t.is(ours.compared, model.trainableVariables().length, 'every parameter has a gradient');
    const tNorm = Math.max(...[...torch32.values()].map((e) => e.norm));
    const tMedian = median([...torch32.values()].map((e) => e.max));
    t.true(featOurs <= 3 * featTorch, `training features ${featOurs} vs PyTorch float32's ${featTorch}`);
    t.true(ours.worstNorm <= 2 * tNorm, `worst norm-wise gradient error ${ours.worstNorm} (${ours.worstNormName}) vs PyTorch float32's ${tNorm}`);
    t.true(ours.medianMax <= 2 * tMedian, `median max-based gradient error ${ours.medianMax} vs PyTorch float32's ${tMedian}`);
    t.true(ours.worstStat <= 3 * torchStat, `running statistics ${ours.worstStat} vs PyTorch float32's ${torchStat}`);
    tf.dispose(Object.values(trainPass.grads));
    t.is(tf.memory().numTensors, before, 'gradient passes leak no tensors');
    model.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

maybe('SEMICON alpha (the attention exponent, 0.15 in the authors\' code, 0.3 in the paper): eval features and the exported graph follow it, as PyTorch computes them', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-semicon-alpha-'));
  try {
    const r = spawnSync(python!, [path.join(pyDir, 'semicon_reference.py'), dir, '64', '2', '5', '12', '0', '--alpha', '0.3'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`reference script failed: ${r.stderr}`);
    const weights = readBundle(path.join(dir, 'weights'));
    const ev = readBundle(path.join(dir, 'eval'));
    const want = ev.get('features')!.data;
    const x = nchwToNhwc(ev.get('input')!);
    const featuresWith = (alpha?: number): Float32Array => {
      const m = new Semicon(new Rng(1), { bits: 12, ...(alpha !== undefined ? { alpha } : {}) });
      loadStateDict(m, weights, { strict: true });
      const f = m.encode(tf.tensor4d(x.data, x.shape));
      const out = f.dataSync() as Float32Array;
      f.dispose();
      m.dispose();
      return out;
    };
    const scale = maxAbs(want);
    const err = maxAbsDiff(featuresWith(0.3), want) / scale;
    const other = maxAbsDiff(featuresWith(), want) / scale;
    t.log(`alpha 0.3 (64 px, batch 2): features max abs diff relative to max |feature| ${scale.toFixed(3)}: ${err.toExponential(2)}; with the default 0.15: ${other.toExponential(2)}`);
    // tanh features, max |f| 0.59 here; one run: 5.8e-7 of it, and 1.2e-2 with the default alpha.
    t.true(err <= 5e-6, `alpha 0.3: relative error ${err} at max |feature| ${scale}`);
    t.true(other > 100 * err && other > 2e-3, `alpha changes the features on this input: relative ${other} with 0.15`);

    // A checkpoint records it and the exported graph computes with it.
    const model = new Semicon(new Rng(1), { bits: 12, alpha: 0.3 });
    loadStateDict(model, weights, { strict: true });
    const ckpt = path.join(dir, 'ckpt');
    await saveModelCheckpoint(ckpt, newCheckpointConfig({ method: 'semicon', arch: 'resnet50', bits: 12, inputSize: 64, attentionAlpha: 0.3 }), model);
    model.dispose();
    t.is((await readCheckpointConfig(ckpt)).attentionAlpha, 0.3);
    const onnx = path.join(dir, 'semicon.onnx');
    await exportOnnx({ checkpoint: ckpt, out: onnx });
    const session = await ort.InferenceSession.create(onnx);
    const input = ev.get('input')!;
    const out = await session.run({ images: new ort.Tensor('float32', Float32Array.from(input.data), input.shape) });
    const graphErr = maxAbsDiff(out.features!.data as Float32Array, want) / scale;
    t.log(`exported graph: features max abs diff relative to max |feature| ${graphErr.toExponential(2)}`);
    // One run: 9.8e-7 of max |feature|.
    t.true(graphErr <= 1e-5, `exported graph: relative error ${graphErr} at max |feature| ${scale}`);
    await session.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
