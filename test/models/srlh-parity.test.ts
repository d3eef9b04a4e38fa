import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tf } from '../../src/backend/tf.js';
import { selectBackend } from '../../src/backend/select.js';
import { Srlh, srlhTorchName } from '../../src/models/srlh.js';
import { loadStateDict } from '../../src/models/state-dict.js';
import { Rng } from '../../src/util/rng.js';
import { missingPythonMessage, referencePython } from '../helpers/python.js';
import { readBundle, nchwToNhwc } from '../helpers/bundle.js';
import { maxAbs, maxAbsDiff } from '../helpers/tensors.js';
import { compareGradients, describeGradients } from '../helpers/parity.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const pyDir = path.resolve(here, '../../../test/python');
const python = referencePython('torch', 'torchvision', 'numpy');
if (!python) console.warn(`sRLH parity: ${missingPythonMessage('torch', 'torchvision', 'numpy')}`);
const maybe = python ? test.serial : test.skip;

const BITS = 48;
const CLASSES = 10;

test.before(async () => {
  await selectBackend();
});

maybe('sRLH MainNet: eval features, training forward (logits, features, sRLM locals) and gradients match the PyTorch reference', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-srlh-'));
  try {
    // 224 px eval (7x7 map, 9 sub-regions); 160 px training (5x5 map: the last row/column is never a block origin).
    const r = spawnSync(python!, [path.join(pyDir, 'srlh_reference.py'), dir, '224', '2', '5', String(BITS), String(CLASSES), '160'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`reference script failed: ${r.stderr}`);
    const model = new Srlh(new Rng(1), { bits: BITS, numClasses: CLASSES });
    const report = loadStateDict(model, readBundle(path.join(dir, 'weights')), { strict: true, rename: srlhTorchName });
    t.deepEqual(report.missing, []);

    const ev = readBundle(path.join(dir, 'eval'));
    const x = nchwToNhwc(ev.get('input')!);
    const features = tf.tidy(() => model.encode(tf.tensor4d(x.data, x.shape)));
    const evalErr = maxAbsDiff(features.dataSync(), ev.get('features')!.data);
    const evalScale = maxAbs(ev.get('features')!.data);
    features.dispose();
    t.log(`eval: features max abs diff ${evalErr.toExponential(2)} (max |feature| ${evalScale.toFixed(3)}, relative ${(evalErr / evalScale).toExponential(2)})`);
    // tanh features, max |f| 1.0 here; one run: 7.5e-7 of it.
    t.true(evalErr / evalScale <= 1e-5, `eval features: max abs diff ${evalErr} at max |feature| ${evalScale}`);

    const tr = readBundle(path.join(dir, 'train'));
    const xt = nchwToNhwc(tr.get('input')!);
    const before = tf.memory().numTensors;
    const got: Record<string, Float32Array> = {};
    const { value, grads } = tf.variableGrads(() => {
      const o = model.forwardTrain(tf.tensor4d(xt.data, xt.shape), { training: true, noDropout: true });
      got.logits = o.logits.dataSync() as Float32Array;
      got.features = o.features.dataSync() as Float32Array;
      got.locals = o.locals.dataSync() as Float32Array;
      const term = (a: tf.Tensor, name: string) => tf.sum(tf.mul(a, tf.tensor(tr.get(name)!.data, a.shape)));
      return tf.addN([term(o.logits, 'r1'), term(o.features, 'r2'), term(o.locals, 'r3')]) as tf.Scalar;
    }, model.trainableVariables());
    // Relative to each output's largest entry: logits 1.1, features (tanh) 0.81, locals 2.0 here;
    // one run: 1.3e-6, 1.9e-6, 3.0e-6 of them.
    const trainBound: Record<string, number> = { logits: 1e-5, features: 2e-5, locals: 3e-5 };
    for (const k of ['logits', 'features', 'locals']) {
      const want = tr.get(k)!.data;
      const e = maxAbsDiff(got[k]!, want);
      const scale = maxAbs(want);
      t.log(`train: ${k} max abs diff ${e.toExponential(2)} at scale ${scale.toFixed(2)} (relative ${(e / scale).toExponential(2)})`);
      t.true(e / scale <= trainBound[k]!, `training ${k}: max abs diff ${e} at scale ${scale} (relative ${e / scale})`);
    }
    const g = compareGradients(model, grads, tr);
    t.log(`train: ${describeGradients(g)}`);
    t.deepEqual(g.presenceMismatch, []);
    t.true(g.compared > 60, `compared ${g.compared} gradients`);
    // One run: worst max-based 1.2e-5, worst norm-wise 6.6e-6 (see resnet-parity for the margin).
    t.true(g.worstNorm <= 1e-4, `gradient of ${g.worstNormName}: norm-wise ${g.worstNorm}`);
    t.true(g.worstMax <= 1e-3, `gradient of ${g.worstMaxName}: max-based ${g.worstMax}`);
    // Running means and variances after the step, up to 2.1; one run: 3.8e-7 of each tensor's largest entry.
    t.true(g.worstStatRel <= 3e-6, `running statistic ${g.worstStatName}: relative error ${g.worstStatRel} (max abs diff over all ${g.worstStat})`);
    tf.dispose([value, ...Object.values(grads)]);
    t.is(tf.memory().numTensors, before, 'a training step leaks no tensors');
    model.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
