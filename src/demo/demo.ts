import { existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { writeSynthDataset, SYNTH_DEFAULTS, type SynthOptions } from '../data/synth.js';
import { loadDataset, split } from '../data/datasets/index.js';
import { encode } from '../encode/encoder.js';
import { exportOnnx } from '../export/onnx-file.js';
import { readCodeStore } from '../retrieval/code-store.js';
import { evaluate } from '../retrieval/metrics.js';
import { writePrCurve } from '../retrieval/plot.js';
import { resolveParts, trainSrlh, type SrlhHyper } from '../train/srlh.js';
import { completeRunConfig, resolveRunConfig, writeRunConfig } from '../train/run-config.js';
import { labelsOf } from '../train/evaluate.js';
import type { StopSignal } from '../train/run.js';
import { Progress } from '../util/progress.js';
import { pixelFeatures, randomProjectionCodes } from '../retrieval/baselines/index.js';

/**
 * `fgh demo`: the whole pipeline on the embedded synthetic dataset, offline and from scratch:
 * synth -> train sRLH -> export ONNX -> encode query and database with onnxruntime -> mAP@all,
 * next to a random-projection baseline on the same images, and a PR-curve image.
 */
export interface DemoOptions {
  out: string;
  bits: number;
  size: number;
  epochs: number;
  seed: number;
  resume?: boolean;
  quiet?: boolean;
  stop?: StopSignal;
  log?: (line: string) => void;
}

/**
 * The demo trains with `fgh train`'s scratch recipe (src/train/recipes.ts) on 48 px images (1,000
 * for training, 20 classes); only the run's size is the demo's own: its epochs, every image in
 * each epoch, and no evaluation inside the run (the exported graph is evaluated instead). The
 * resolved configuration is written next to the model, so `fgh train --config` repeats it.
 */
export { DEMO_DEFAULTS } from './defaults.js';
export const DEMO_DATA: Omit<SynthOptions, 'seed'> = { ...SYNTH_DEFAULTS, perClass: 100, size: 64 };

export interface DemoSummary {
  out: string;
  bits: number;
  map: number;
  baselineMap: number;
  queries: number;
  database: number;
  trainSeconds: number;
  totalSeconds: number;
  model: string;
  prCurve: string;
  /** Distinct database codes: a collapsed model maps every image to a handful of codes. */
  distinctCodes: number;
  complete: boolean;
}

function distinct(data: Uint8Array, count: number, stride: number): number {
  const seen = new Set<string>();
  for (let i = 0; i < count; i++) seen.add(Buffer.from(data.subarray(i * stride, (i + 1) * stride)).toString('hex'));
  return seen.size;
}

export async function runDemo(o: DemoOptions): Promise<DemoSummary> {
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const started = Date.now();
  const dataDir = path.join(o.out, 'data');
  if (!(o.resume && existsSync(path.join(dataDir, 'images.txt')))) {
    // Images at the training size (or larger): nothing is lost to a second resize.
    const synth: SynthOptions = { ...DEMO_DATA, size: Math.max(DEMO_DATA.size, o.size), seed: o.seed };
    log(`1/5 synthetic dataset (${synth.classes} classes x ${synth.perClass} images, ${synth.size} px) -> ${dataDir}`);
    await writeSynthDataset(dataDir, synth, new Progress('synth', synth.classes * synth.perClass, { unit: 'images', quiet: o.quiet ?? false }));
  }
  const d = loadDataset('cub', { root: dataDir });
  const train = split(d, 'train');
  const test = split(d, 'test');
  const classes = d.classes.length;

  const modelDir = path.join(o.out, 'model');
  const cfg = completeRunConfig(
    resolveRunConfig([
      { layer: { method: 'srlh', recipe: 'scratch', dataset: 'cub', root: dataDir, bits: [o.bits], size: o.size, hyper: { epochs: o.epochs, samplesPerEpoch: train.length, evalEvery: 0, seed: o.seed } }, where: 'fgh demo' },
    ]),
  );
  const hyper = cfg.hyper as unknown as SrlhHyper;
  const parts = resolveParts(o.size, hyper.numParts);
  log(`2/5 training sRLH (${o.bits} bits, ${o.size} px, ${o.epochs} epochs, ${parts} local part${parts > 1 ? 's' : ''}, from scratch: no pretrained weights; recipe ${cfg.recipe})`);
  const ckpt = path.join(modelDir, String(o.bits));
  mkdirSync(modelDir, { recursive: true });
  writeRunConfig(modelDir, cfg);
  const t0 = Date.now();
  const run = await trainSrlh(
    { data: { train, test, classes, info: { name: 'synth', root: dataDir } }, bits: o.bits, out: ckpt, size: o.size, resume: o.resume ?? false, quiet: o.quiet ?? false, log, ...(o.stop ? { stop: o.stop } : {}) },
    hyper,
  );
  const trainSeconds = (Date.now() - t0) / 1000;
  const model = path.join(o.out, `srlh-${o.bits}.onnx`);
  const prCurve = path.join(o.out, 'pr-curve.png');
  if (!run.complete) {
    return { out: o.out, bits: o.bits, map: NaN, baselineMap: NaN, queries: test.length, database: train.length, trainSeconds, totalSeconds: (Date.now() - started) / 1000, model, prCurve, distinctCodes: 0, complete: false };
  }

  log(`3/5 exporting ${model}`);
  const ex = await exportOnnx({ checkpoint: ckpt, out: model });
  log(`    ${ex.nodes} nodes, ${(ex.bytes / 1e6).toFixed(1)} MB`);

  log('4/5 encoding query (test) and database (train) images with onnxruntime');
  const qFile = path.join(o.out, 'query.codes');
  const dbFile = path.join(o.out, 'db.codes');
  for (const f of [qFile, dbFile]) for (const x of [f, `${f}.encode.json`]) rmSync(x, { force: true });
  const quiet = { quiet: o.quiet ?? false, log };
  await encode({ model, source: { kind: 'dataset', dataset: 'cub', root: dataDir, split: 'test' }, out: qFile, ...quiet });
  await encode({ model, source: { kind: 'dataset', dataset: 'cub', root: dataDir, split: 'train' }, out: dbFile, ...quiet });
  const q = readCodeStore(qFile);
  const db = readCodeStore(dbFile);
  const trained = await evaluate(q.codes, q.labels!, db.codes, db.labels!, { prCurve: true });

  log('5/5 random-projection baseline on the same images');
  const base = randomProjectionCodes(await pixelFeatures(test), await pixelFeatures(train), o.bits, o.seed);
  const baseline = await evaluate(base.query, labelsOf(test, classes), base.db, labelsOf(train, classes), { prCurve: true });
  await writePrCurve(prCurve, [
    { label: `sRLH, mAP ${trained.map.toFixed(3)}`, curve: trained.pr! },
    { label: `LSH, mAP ${baseline.map.toFixed(3)}`, curve: baseline.pr! },
  ], `fgh demo, ${o.bits} bits: precision-recall by Hamming radius`);
  return {
    out: o.out,
    bits: o.bits,
    map: trained.map,
    baselineMap: baseline.map,
    queries: test.length,
    database: train.length,
    trainSeconds,
    totalSeconds: (Date.now() - started) / 1000,
    model,
    prCurve,
    distinctCodes: distinct(db.codes.data, db.codes.count, db.codes.stride),
    complete: true,
  };
}
