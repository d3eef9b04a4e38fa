import test from 'ava';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { selectBackend } from '../../src/backend/select.js';
import { writeSynthDataset } from '../../src/data/synth.js';
import { loadDataset, split } from '../../src/data/datasets/index.js';
import { trainSrlh, SRLH_FIELDS, type SrlhHyper } from '../../src/train/srlh.js';
import { trainSemicon, SEMICON_FIELDS, type SemiconHyper } from '../../src/train/semicon.js';
import { STATE_FILE } from '../../src/train/run.js';
import { readCheckpointConfig } from '../../src/weights/checkpoint.js';

/**
 * Every hyper-parameter of both methods reaches the training loop: a tiny run with one value
 * changed ends in other weights, training state, epoch count or evaluations than the same run
 * without the change (and the unchanged run repeats bit for bit, so a difference is the option's).
 */
let work = '';
let root = '';

test.before(async () => {
  await selectBackend();
  work = mkdtempSync(path.join(os.tmpdir(), 'fgh-hyper-'));
  root = path.join(work, 'synth');
  await writeSynthDataset(root, { classes: 3, perClass: 6, size: 112, seed: 4 });
});

test.after.always(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

function data() {
  const d = loadDataset('cub', { root });
  return { train: split(d, 'train'), test: split(d, 'test'), classes: d.classes.length, info: { name: 'synth', root } };
}

/** What a run leaves that an option can change: weights, training state, epochs, eval transform, evaluations. */
async function fingerprint(out: string): Promise<string> {
  const h = createHash('sha256');
  h.update(readFileSync(path.join(out, 'weights.safetensors')));
  h.update(readFileSync(path.join(out, STATE_FILE)));
  const cfg = await readCheckpointConfig(out);
  // The log without its timings: losses, rates, evaluations.
  const log = readFileSync(path.join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => {
    const { seconds: _s, images_per_s: _i, ...rest } = JSON.parse(l) as Record<string, unknown>;
    return rest;
  });
  // The eval transform is what the export and every later encode use.
  h.update(JSON.stringify({ epoch: cfg.training?.epoch, transform: cfg.transform, log }));
  return h.digest('hex');
}

const quiet = { quiet: true, log: () => undefined };

const SRLH_BASE: Partial<SrlhHyper> = { epochs: 2, batch: 4, lr: 0.002, warmupLr: 0, lrSteps: [], warmup: 1, samplesPerEpoch: 6, evalEvery: 0, numParts: 0, dropout: false, updateCentres: true, seed: 1 };
const SRLH_CHANGES: { [K in keyof SrlhHyper]: SrlhHyper[K] } = {
  epochs: 3,
  batch: 3,
  lr: 0.004,
  warmupLr: 0.01,
  lrSteps: [1],
  momentum: 0.5,
  weightDecay: 0.01,
  alpha: 0,
  gamma: 5,
  hashWeight: 3,
  hashClasses: 50,
  margin: 0,
  numParts: 1,
  dropout: true,
  updateCentres: false,
  warmup: 0,
  samplesPerEpoch: 5,
  evalEvery: 1,
  seed: 2,
};

/**
 * One test per few fields, all against one base run (memoised): each test ends well within ava's
 * timeout on a slow machine.
 */
function optionTests<H extends object>(method: string, fields: readonly { key: string }[], changes: H, run: (name: string, hyper: Partial<H>) => Promise<string>): void {
  let base: Promise<string> | null = null;
  const baseRun = (): Promise<string> => (base ??= run('base', {}));
  test.serial(`${method}: a change for every hyper-parameter; the unchanged run repeats exactly`, async (t) => {
    t.deepEqual(Object.keys(changes).sort(), fields.map((f) => f.key).sort(), 'a change for every field');
    t.is(await run('base-again', {}), await baseRun());
  });
  const entries = Object.entries(changes);
  for (let i = 0; i < entries.length; i += 4) {
    const group = entries.slice(i, i + 4);
    test.serial(`${method}: ${group.map(([k]) => k).join(', ')} each change what a run produces`, async (t) => {
      for (const [key, value] of group) t.not(await run(key, { [key]: value } as Partial<H>), await baseRun(), `${key} = ${JSON.stringify(value)} is ignored`);
    });
  }
}

optionTests('sRLH', SRLH_FIELDS, SRLH_CHANGES, async (name, hyper) => {
  const out = path.join(work, 'srlh', name);
  await trainSrlh({ data: data(), bits: 16, out, size: 112, ...quiet }, { ...SRLH_BASE, ...hyper });
  return fingerprint(out);
});

const SEMICON_BASE: Partial<SemiconHyper> = { maxIter: 2, maxEpoch: 1, batch: 3, lr: 0.001, lrSteps: [], numSamples: 6, evalEvery: 1, topk: 0, seed: 1 };
const SEMICON_CHANGES: { [K in keyof SemiconHyper]: SemiconHyper[K] } = {
  maxIter: 1,
  maxEpoch: 2,
  batch: 2,
  lr: 0.004,
  lrSteps: [1],
  optim: 'adam',
  momentum: 0.5,
  nesterov: false,
  weightDecay: 0.01,
  numSamples: 5,
  gamma: 20,
  evalEvery: 2,
  topk: 2,
  cropScale: 1,
  evalTransform: 'resize-224',
  alpha: 0.3,
  seed: 2,
};

optionTests('SEMICON', SEMICON_FIELDS, SEMICON_CHANGES, async (name, hyper) => {
  const out = path.join(work, 'semicon', name);
  await trainSemicon({ data: data(), bits: 12, out, size: 64, ...quiet }, { ...SEMICON_BASE, ...hyper });
  return fingerprint(out);
});
