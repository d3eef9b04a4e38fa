import test from 'ava';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decodeRgb } from '../../src/data/image.js';
import { loadDataset, split } from '../../src/data/datasets/index.js';
import { classFolder, FASHION_MNIST_CLASSES, MISSING_FASHION_MNIST, readFashionMnist, writeFashionMnist, referenceFashionMnist } from '../helpers/fashion-mnist.js';

const fashion = referenceFashionMnist();

function tmpDir(t: { teardown: (f: () => void) => void }): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-fm-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const lists = (dir: string) => ['train.txt', 'test.txt'].map((f) => readFileSync(path.join(dir, f), 'utf8'));

/** "<class>/<part>-<index>.png" -> the part and the index in the IDX file. */
function source(rel: string): { part: 'train' | 't10k'; index: number } {
  const m = /^[^/]+\/(train|t10k)-(\d{5})\.png$/.exec(rel);
  if (!m) throw new Error(`unexpected image name ${rel}`);
  return { part: m[1] as 'train' | 't10k', index: Number(m[2]) };
}

(fashion ? test : test.skip)(`the Fashion-MNIST split: stratified counts, fgh folder loader labels equal the IDX labels, pixels equal the IDX bytes${fashion ? '' : ` (${MISSING_FASHION_MNIST})`}`, async (t) => {
  const dir = tmpDir(t);
  // 205 = 10 x 20 + 5: the five lowest labels get one more.
  const s = await writeFashionMnist(dir, { train: 205, query: 50, seed: 11 });
  t.true(s.written);
  t.deepEqual(s.perClass, FASHION_MNIST_CLASSES.map((_, c) => [c < 5 ? 21 : 20, 5]));
  const d = loadDataset('folder', { root: dir });
  t.deepEqual(d.warnings, []);
  t.deepEqual(d.classes, FASHION_MNIST_CLASSES.map((_, c) => classFolder(c)));
  t.is(d.classes[0], '0-T-shirt-top');
  t.is(d.classes[9], '9-Ankle-boot');
  const train = split(d, 'train');
  const test_ = split(d, 'test');
  t.is(train.length, 205);
  t.is(test_.length, 50);
  const counts = (samples: typeof train) => FASHION_MNIST_CLASSES.map((_, c) => samples.filter((x) => x.labels[0] === c).length);
  t.deepEqual(counts(train), s.perClass.map((p) => p[0]));
  t.deepEqual(counts(test_), s.perClass.map((p) => p[1]));
  const seen = new Set<string>();
  for (const [samples, part] of [[train, 'train'], [test_, 't10k']] as const) {
    const { labels } = readFashionMnist(part);
    for (const x of samples) {
      const src = source(x.id);
      t.is(src.part, part, x.id);
      t.is(x.labels[0], labels[src.index], `${x.id}: fgh's label against the IDX label`);
      t.false(seen.has(x.id), `${x.id} drawn twice`);
      seen.add(x.id);
    }
  }
  // Every 10th image decodes (greyscale PNG -> RGB) to the IDX bytes in all three channels.
  for (const x of [...train, ...test_].filter((_, i) => i % 10 === 0)) {
    const { part, index } = source(x.id);
    const { images } = readFashionMnist(part);
    const img = await decodeRgb(x.path);
    t.is(img.width, 28);
    t.is(img.height, 28);
    const want = images.pixels.subarray(index * 784, (index + 1) * 784);
    let same = true;
    for (let i = 0; i < 784; i++) for (let c = 0; c < 3; c++) if (img.data[3 * i + c] !== want[i]) same = false;
    t.true(same, `${x.id}: pixels differ from the IDX file`);
  }
});

(fashion ? test : test.skip)(`the Fashion-MNIST split is a function of its options, and a second call with them writes nothing${fashion ? '' : ` (${MISSING_FASHION_MNIST})`}`, async (t) => {
  const [a, b, c] = [tmpDir(t), tmpDir(t), tmpDir(t)];
  await writeFashionMnist(a, { train: 60, query: 20, seed: 5 });
  await writeFashionMnist(b, { train: 60, query: 20, seed: 5 });
  await writeFashionMnist(c, { train: 60, query: 20, seed: 6 });
  t.deepEqual(lists(a), lists(b));
  t.notDeepEqual(lists(a)[0], lists(c)[0]);
  t.notDeepEqual(lists(a)[1], lists(c)[1]);
  const first = lists(a)[0]!.split('\n')[0]!;
  t.deepEqual(readFileSync(path.join(a, first)), readFileSync(path.join(b, first)));

  const stamp = statSync(path.join(a, first)).mtimeMs;
  const again = await writeFashionMnist(a, { train: 60, query: 20, seed: 5 });
  t.false(again.written);
  t.is(statSync(path.join(a, first)).mtimeMs, stamp);
  // Other options replace the split, stale images included.
  const other = await writeFashionMnist(a, { train: 30, query: 10, seed: 5, size: 32 });
  t.true(other.written);
  const d = loadDataset('folder', { root: a });
  t.is(split(d, 'train').length, 30);
  t.is((await decodeRgb(split(d, 'test')[0]!.path)).width, 32);
  const onDisk = d.classes.reduce((n, cls) => n + readdirSync(path.join(a, cls)).length, 0);
  t.is(onDisk, 40, 'images of the earlier split left behind');

  // A directory holding anything else is refused.
  const foreign = tmpDir(t);
  writeFileSync(path.join(foreign, 'notes.txt'), 'mine');
  await t.throwsAsync(writeFashionMnist(foreign, { train: 10, query: 10 }), { message: /not empty and not a Fashion-MNIST split/ });
});
