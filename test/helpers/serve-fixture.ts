import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { selectBackend } from '../../src/backend/select.js';
import { writeSynthDataset } from '../../src/data/synth.js';
import { createHashingModel } from '../../src/models/factory.js';
import { newCheckpointConfig, saveModelCheckpoint } from '../../src/weights/checkpoint.js';
import { Rng } from '../../src/util/rng.js';
import { fgh } from './cli.js';
import { perturbBatchNorm } from './models.js';

/** A real gallery for `fgh serve`: a synthetic CUB tree, an exported sRLH graph and its code stores. */
export interface ServeFixture {
  dir: string;
  root: string;
  model: string;
  db: string;
  query: string;
  /** The database's continuous features as fgh encode --features wrote them. */
  dbFeatures: string;
  bits: number;
  cleanup(): void;
}

/** Random weights with non-trivial batch norm, exported and encoded by the real CLI. */
export async function makeServeFixture(opts: { bits?: number; size?: number; classes?: number; perClass?: number } = {}): Promise<ServeFixture> {
  const bits = opts.bits ?? 16;
  const size = opts.size ?? 96;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-serve-'));
  const root = path.join(dir, 'synth');
  await writeSynthDataset(root, { classes: opts.classes ?? 4, perClass: opts.perClass ?? 6, size: 128, seed: 5 });
  await selectBackend();
  const model = createHashingModel({ method: 'srlh', bits, classes: opts.classes ?? 4, seed: 9 });
  perturbBatchNorm(model, new Rng(10));
  const ckpt = path.join(dir, 'ckpt');
  await saveModelCheckpoint(ckpt, newCheckpointConfig({ method: 'srlh', arch: 'resnet18', bits, classes: opts.classes ?? 4, inputSize: size }), model);
  model.dispose();
  const onnx = path.join(dir, 'model.onnx');
  const run = (...args: string[]): void => {
    const r = fgh(...args);
    if (r.status !== 0) throw new Error(`fgh ${args.join(' ')}: ${r.stderr}`);
  };
  run('export', '--onnx', '--checkpoint', ckpt, '--out', onnx);
  const db = path.join(dir, 'db.codes');
  const query = path.join(dir, 'query.codes');
  const dbFeatures = path.join(dir, 'db.features.npy');
  run('encode', '--model', onnx, '--dataset', 'cub', '--root', root, '--split', 'train', '--out', db, '--features', dbFeatures);
  run('encode', '--model', onnx, '--dataset', 'cub', '--root', root, '--split', 'test', '--out', query);
  return { dir, root, model: onnx, db, query, dbFeatures, bits, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
