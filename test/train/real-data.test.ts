import test from 'ava';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadDataset, split } from '../../src/data/datasets/index.js';
import { pixelFeatures, randomProjectionCodes } from '../../src/retrieval/baselines/index.js';
import { evaluate } from '../../src/retrieval/metrics.js';
import { labelsOf } from '../../src/train/evaluate.js';
import { fgh } from '../helpers/cli.js';
import { MISSING_FASHION_MNIST, writeFashionMnist, referenceFashionMnist } from '../helpers/fashion-mnist.js';

const fashion = referenceFashionMnist();

/**
 * The one-command path on real images: `fgh train` with nothing but the data, the code length and
 * a small input size (the scratch recipe, its default without --init) must learn codes that clearly
 * beat random projections of the pixels. Before the recipe and the hash-loss scale, this very
 * command ended below LSH: the hash phase saturated tanh and undid the warm-up.
 */
(fashion ? test : test.skip)(`fgh train from scratch on Fashion-MNIST: 32-bit codes clearly beat LSH on the pixels${fashion ? '' : ` (${MISSING_FASHION_MNIST})`}`, async (t) => {
  const work = mkdtempSync(path.join(os.tmpdir(), 'fgh-real-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const root = path.join(work, 'fashion-mnist');
  await writeFashionMnist(root, { train: 500, query: 200, seed: 3 });
  const out = path.join(work, 'run');
  const r = fgh('train', '--method', 'srlh', '--dataset', 'folder', '--root', root, '--bits', '32', '--out', out, '--size', '48', '--quiet', '--json');
  t.is(r.status, 0, r.stderr);
  const run = (JSON.parse(r.stdout) as { runs: Array<{ complete: boolean; lastMap: number | null }> }).runs[0]!;
  t.true(run.complete);
  const cfg = JSON.parse(readFileSync(path.join(out, 'train-config.json'), 'utf8')) as { recipe: string };
  t.is(cfg.recipe, 'scratch');

  const d = loadDataset('folder', { root });
  const [train, query] = [split(d, 'train'), split(d, 'test')];
  const [q, db] = [await pixelFeatures(query), await pixelFeatures(train)];
  const lsh: number[] = [];
  for (const seed of [1, 2, 3]) {
    const c = randomProjectionCodes(q, db, 32, seed);
    lsh.push((await evaluate(c.query, labelsOf(query, 10), c.db, labelsOf(train, 10))).map);
  }
  const best = Math.max(...lsh);
  t.log(`sRLH from scratch ${run.lastMap?.toFixed(4)}, LSH ${lsh.map((m) => m.toFixed(4)).join(' / ')}`);
  t.true(run.lastMap !== null && run.lastMap > best + 0.1, `sRLH ${run.lastMap} against the best LSH ${best}`);
});
