import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { selectBackend } from '../../src/backend/select.js';
import { loadDataset, split } from '../../src/data/datasets/index.js';
import { writeSynthDataset } from '../../src/data/synth.js';
import { encode } from '../../src/encode/encoder.js';
import { extractFeatures } from '../../src/encode/features.js';
import { exportBackboneGraph } from '../../src/export/backbone.js';
import { exportHashingGraph } from '../../src/export/hashing.js';
import { createHashingModel } from '../../src/models/factory.js';
import { ResNet } from '../../src/models/resnet.js';
import { readNpy } from '../../src/util/npy.js';
import { Rng } from '../../src/util/rng.js';
import { perturbBatchNorm } from '../helpers/models.js';

const SIZE = 64;

test('extractFeatures: the features fgh encode writes for a hashing graph; a backbone graph in sample order across batches', async (t) => {
  await selectBackend();
  const work = mkdtempSync(path.join(os.tmpdir(), 'fgh-features-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const root = path.join(work, 'synth');
  await writeSynthDataset(root, { classes: 3, perClass: 5, size: 80, seed: 2 });
  const samples = split(loadDataset('cub', { root }), 'test');

  const hashing = path.join(work, 'srlh.onnx');
  const model = createHashingModel({ method: 'srlh', bits: 12, classes: 3, seed: 3 });
  perturbBatchNorm(model, new Rng(4));
  writeFileSync(hashing, exportHashingGraph(model, { inputSize: SIZE, transform: 'resize-224' }).bytes);
  model.dispose();
  const npy = path.join(work, 'f.npy');
  await encode({ model: hashing, source: { kind: 'dataset', dataset: 'cub', root, split: 'test' }, out: path.join(work, 'c'), features: npy, batch: 4, quiet: true, log: () => undefined });
  const mine = await extractFeatures(hashing, samples, { batch: 3 });
  t.deepEqual([mine.rows, mine.cols], readNpy(npy).shape);
  t.deepEqual(mine.data, readNpy(npy).data as Float32Array);

  const backbone = path.join(work, 'resnet18.onnx');
  const net = new ResNet(new Rng(5), 'resnet18').assignNames();
  writeFileSync(backbone, exportBackboneGraph(net, { inputSize: SIZE }).bytes);
  net.dispose();
  const all = await extractFeatures(backbone, samples, { batch: 4 });
  t.is(all.cols, 512);
  t.is(all.rows, samples.length);
  // The same images in reverse order, in batches that split differently: the same rows, reversed.
  const reversed = await extractFeatures(backbone, [...samples].reverse(), { batch: 3 });
  for (let i = 0; i < samples.length; i++) {
    const a = all.data.subarray(i * 512, (i + 1) * 512);
    const b = reversed.data.subarray((samples.length - 1 - i) * 512, (samples.length - i) * 512);
    let diff = 0;
    for (let k = 0; k < 512; k++) diff = Math.max(diff, Math.abs(a[k]! - b[k]!));
    t.true(diff < 1e-5, `image ${i}: rows differ by ${diff}`);
  }
  let spread = 0;
  for (let k = 0; k < 512; k++) spread = Math.max(spread, Math.abs(all.data[k]! - all.data[512 + k]!));
  t.true(spread > 1e-3, 'two images gave the same features');
});
