import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, unlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadDataset, split } from '../../src/data/datasets/index.js';
import type { Dataset, DatasetName } from '../../src/data/types.js';
import { projectRoot } from '../../src/util/version.js';

/** Builds a dataset tree: `files` maps relative paths to contents (images are empty files). */
function tree(files: Record<string, string>): string {
  const root = mkdtempSync(path.join(os.tmpdir(), 'fgh-ds-'));
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    writeFileSync(path.join(root, rel), text);
  }
  return root;
}

function withTree(t: { teardown: (f: () => void) => void }, files: Record<string, string>): string {
  const root = tree(files);
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  return root;
}

const summary = (d: Dataset, s: 'train' | 'test' | 'val') =>
  (d.splits[s] ?? []).map((x) => [path.relative(d.root, x.path), x.labels.join(','), x.id]);

const cubFiles = (): Record<string, string> => ({
  'images/001.Black_footed_Albatross/a.jpg': '',
  'images/001.Black_footed_Albatross/b.jpg': '',
  'images/002.Laysan_Albatross/c.jpg': '',
  'images.txt': '1 001.Black_footed_Albatross/a.jpg\n2 001.Black_footed_Albatross/b.jpg\n3 002.Laysan_Albatross/c.jpg\n',
  'image_class_labels.txt': '1 1\n2 1\n3 2\n',
  'train_test_split.txt': '1 1\n2 0\n3 1\n',
  'classes.txt': '1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n',
});

test('cub: ids join the four files, labels are 0-based, splits and canonical-count warnings', (t) => {
  const d = loadDataset('cub', { root: withTree(t, cubFiles()) });
  t.deepEqual(d.classes, ['001.Black_footed_Albatross', '002.Laysan_Albatross']);
  t.deepEqual(summary(d, 'train'), [
    ['images/001.Black_footed_Albatross/a.jpg', '0', '1'],
    ['images/002.Laysan_Albatross/c.jpg', '1', '3'],
  ]);
  t.deepEqual(summary(d, 'test'), [['images/001.Black_footed_Albatross/b.jpg', '0', '2']]);
  t.is(d.splits.train![0]!.source, 'images.txt:1');
  t.true(d.warnings.some((w) => /2 classes, the canonical dataset has 200/.test(w)));
  t.is(split(d, 'all').length, 3);
});

test('cub: malformed and inconsistent metadata give one-line errors naming file and line', (t) => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ 'images.txt': '1 001.Black_footed_Albatross/a.jpg\n2\n' }, /^images\.txt:2: expected "<image id> <relative path>", got "2"$/],
    [{ 'image_class_labels.txt': '1 1\n2 x\n3 2\n' }, /^image_class_labels\.txt:2: class id must be an integer in 1\.\.N, got "x"$/],
    [{ 'image_class_labels.txt': '1 1\n2 1\n3 7\n' }, /^image_class_labels\.txt:3: class 7 of image 3 is not in classes\.txt$/],
    [{ 'train_test_split.txt': '1 1\n3 1\n' }, /^images\.txt:2: image 2 has no line in train_test_split\.txt$/],
    [{ 'train_test_split.txt': '1 1\n2 2\n3 1\n' }, /^train_test_split\.txt:2: expected 1 \(train\) or 0 \(test\), got "2"$/],
    [{ 'images.txt': '1 001.Black_footed_Albatross/a.jpg\n1 001.Black_footed_Albatross/b.jpg\n' }, /^images\.txt:2: duplicate id 1 \(first on line 1\)$/],
  ];
  for (const [override, message] of cases) {
    const root = withTree(t, { ...cubFiles(), ...override });
    const e = t.throws(() => loadDataset('cub', { root }));
    t.regex(e!.message, message);
    t.false(e!.message.includes('\n'));
  }
  const root = withTree(t, cubFiles());
  unlinkSync(path.join(root, 'classes.txt'));
  t.throws(() => loadDataset('cub', { root }), { message: `${path.join(root, 'classes.txt')}: missing metadata file` });
});

test('a missing image fails naming the image and its metadata line, or is skipped and counted', (t) => {
  const root = withTree(t, cubFiles());
  unlinkSync(path.join(root, 'images/002.Laysan_Albatross/c.jpg'));
  t.throws(() => loadDataset('cub', { root }), { message: `images.txt:3: image not found: ${path.join(root, 'images/002.Laysan_Albatross/c.jpg')}` });
  const d = loadDataset('cub', { root, skipBadImages: true });
  t.is(d.splits.train!.length, 1);
  t.deepEqual(d.skipped, [{ path: path.join(root, 'images/002.Laysan_Albatross/c.jpg'), source: 'images.txt:3', reason: 'not found' }]);
  t.true(d.warnings.some((w) => /skipped 1 missing image/.test(w)));
});

test('nabirds: sparse class ids map to 0..C-1 in sorted order of the ids images use', (t) => {
  const d = loadDataset('nabirds', {
    root: withTree(t, {
      'images/0817/x.jpg': '',
      'images/0295/y.jpg': '',
      'images/0817/z.jpg': '',
      'images.txt': 'aa-1 0817/x.jpg\nbb-2 0295/y.jpg\ncc-3 0817/z.jpg\n',
      'image_class_labels.txt': 'aa-1 817\nbb-2 295\ncc-3 817\n',
      'train_test_split.txt': 'aa-1 1\nbb-2 1\ncc-3 0\n',
      'classes.txt': '0 Birds\n295 Gull\n817 Sparrow\n',
      'hierarchy.txt': '295 0\n817 0\n',
    }),
  });
  t.deepEqual(d.classes, ['Gull', 'Sparrow']);
  t.deepEqual(summary(d, 'train'), [
    ['images/0817/x.jpg', '1', 'aa-1'],
    ['images/0295/y.jpg', '0', 'bb-2'],
  ]);
});

test('aircraft: the FGVC 2013b variant files and the sRLH list layout', (t) => {
  const fgvc = loadDataset('aircraft', {
    root: withTree(t, {
      'data/images/0034309.jpg': '',
      'data/images/0034958.jpg': '',
      'data/images/1234567.jpg': '',
      'data/variants.txt': '707-320\nBoeing 717\n',
      'data/images_variant_trainval.txt': '0034309 707-320\n0034958 Boeing 717\n',
      'data/images_variant_test.txt': '1234567 Boeing 717\n',
    }),
  });
  t.deepEqual(fgvc.classes, ['707-320', 'Boeing 717']);
  t.deepEqual(summary(fgvc, 'train'), [
    ['data/images/0034309.jpg', '0', '0034309'],
    ['data/images/0034958.jpg', '1', '0034958'],
  ]);
  t.deepEqual(summary(fgvc, 'test'), [['data/images/1234567.jpg', '1', '1234567']]);
  const bad = withTree(t, {
    'data/variants.txt': '707-320\n',
    'data/images_variant_trainval.txt': '0034309 A380\n',
    'data/images_variant_test.txt': '',
  });
  t.throws(() => loadDataset('aircraft', { root: bad }), { message: 'data/images_variant_trainval.txt:1: variant "A380" is not in data/variants.txt' });

  const srlh = loadDataset('aircraft', {
    root: withTree(t, { 'data/images/a.jpg': '', 'data/images/b.jpg': '', 'data/train.txt': 'a.jpg 1\n', 'data/test.txt': 'b.jpg 100\n' }),
  });
  t.deepEqual(summary(srlh, 'train'), [['data/images/a.jpg', '0', 'data/images/a.jpg']]);
  t.deepEqual(summary(srlh, 'test')[0]!.slice(0, 2), ['data/images/b.jpg', '99']);
});

test('cars, dogs (SEMICON lists), food101 and vegfru layouts', (t) => {
  const cars = loadDataset('cars', {
    root: withTree(t, { 'cars_train/00001.jpg': '', 'cars_test/00001.jpg': '', 'cars_test/00002.jpg': '', 'train.txt': '00001.jpg 14\n', 'test.txt': '00001.jpg 3\n00002.jpg 196\n' }),
  });
  t.deepEqual(summary(cars, 'train').map((s) => s.slice(0, 2)), [['cars_train/00001.jpg', '13']]);
  t.deepEqual(summary(cars, 'test').map((s) => s.slice(0, 2)), [
    ['cars_test/00001.jpg', '2'],
    ['cars_test/00002.jpg', '195'],
  ]);
  const badCars = withTree(t, { 'cars_train/1.jpg': '', 'train.txt': '1.jpg 0\n', 'test.txt': '' });
  t.throws(() => loadDataset('cars', { root: badCars }), { message: 'train.txt:1: label 0 out of range (labels are 1-based)' });

  const dogs = loadDataset('dogs', {
    root: withTree(t, {
      'images/Images/n02085620-Chihuahua/n02085620_10074.jpg': '',
      'images/Images/n02085782-Japanese_spaniel/n02085782_1039.jpg': '',
      'train.txt': 'n02085620-Chihuahua/n02085620_10074.jpg 1\n',
      'test.txt': 'n02085782-Japanese_spaniel/n02085782_1039.jpg 2\n',
    }),
  });
  t.deepEqual(dogs.classes, ['Chihuahua', 'Japanese_spaniel']);
  t.deepEqual(summary(dogs, 'test').map((s) => s.slice(0, 2)), [['images/Images/n02085782-Japanese_spaniel/n02085782_1039.jpg', '1']]);

  const food = loadDataset('food101', {
    root: withTree(t, {
      'images/apple_pie/1005649.jpg': '',
      'images/baby_back_ribs/1007102.jpg': '',
      'meta/labels.txt': 'Apple pie\nBaby back ribs\n',
      'meta/train.txt': 'apple_pie/1005649\n',
      'meta/test.txt': 'baby_back_ribs/1007102\n',
    }),
  });
  t.deepEqual(food.classes, ['apple_pie', 'baby_back_ribs']);
  t.deepEqual(summary(food, 'test'), [['images/baby_back_ribs/1007102.jpg', '1', 'baby_back_ribs/1007102']]);

  const veg = loadDataset('vegfru', {
    root: withTree(t, {
      'veg200_images/cabbage/v_001.jpg': '',
      'fru92_images/apple/f_001.png': '',
      'fru92_images/apple/f_002.jpg': '',
      'vegfru_list/vegfru_train.txt': 'veg200_images/cabbage/v_001.jpg 0\n',
      'vegfru_list/vegfru_val.txt': 'fru92_images/apple/f_001.png 1\n',
      'vegfru_list/vegfru_test.txt': 'fru92_images/apple/f_002.jpg 1\n',
    }),
  });
  t.deepEqual(veg.classes, ['cabbage', 'apple']);
  t.is(veg.splits.val!.length, 1);
  t.deepEqual(summary(veg, 'test').map((s) => s.slice(0, 2)), [['fru92_images/apple/f_002.jpg', '1']]);
});

test('folder: sorted class folders, a reported deterministic split, or train.txt/test.txt', (t) => {
  const files: Record<string, string> = { 'notes.txt': '' };
  for (const c of ['b_cat', 'a_dog']) for (let i = 0; i < 6; i++) files[`${c}/${i}.jpg`] = '';
  files['a_dog/readme.md'] = '';
  const d = loadDataset('folder', { root: withTree(t, files) });
  t.deepEqual(d.classes, ['a_dog', 'b_cat']);
  t.is(d.splits.train!.length, 10);
  t.deepEqual(summary(d, 'test').map((s) => s.slice(0, 2)), [
    ['a_dog/4.jpg', '0'],
    ['b_cat/4.jpg', '1'],
  ]);
  t.true(d.warnings.some((w) => /every 5th image/.test(w)));

  const listed = loadDataset('folder', { root: withTree(t, { ...files, 'train.txt': 'a_dog/0.jpg\nb_cat/1.jpg\n', 'test.txt': 'b_cat/2.jpg\n' }) });
  t.deepEqual(summary(listed, 'train').map((s) => s.slice(0, 2)), [
    ['a_dog/0.jpg', '0'],
    ['b_cat/1.jpg', '1'],
  ]);
  t.throws(() => loadDataset('folder', { root: withTree(t, { ...files, 'train.txt': '../etc/passwd\n', 'test.txt': '' }) }), { message: 'train.txt:1: "../etc/passwd" is not <class folder>/<image>' });
});

test('20,000 image files listed in one folder all load (time logged)', (t) => {
  const files: Record<string, string> = {};
  const lines: string[] = [];
  for (let i = 0; i < 20000; i++) {
    files[`cars_train/${i}.jpg`] = '';
    lines.push(`${i}.jpg ${1 + (i % 196)}`);
  }
  files['train.txt'] = lines.join('\n');
  files['test.txt'] = '';
  const root = withTree(t, files);
  const start = performance.now();
  const d = loadDataset('cars' as DatasetName, { root });
  t.log(`loaded 20,000 samples in ${(performance.now() - start).toFixed(0)} ms`);
  t.is(d.splits.train!.length, 20000);
});

test('fgh dataset info: --json summary; one-line error and exit 1 on a bad root', (t) => {
  const bin = path.join(projectRoot(), 'bin', 'fgh.js');
  const root = withTree(t, cubFiles());
  const ok = spawnSync(process.execPath, [bin, 'dataset', 'info', '--dataset', 'cub', '--root', root, '--json'], { encoding: 'utf8' });
  t.is(ok.status, 0, ok.stderr);
  const j = JSON.parse(ok.stdout) as { classes: number; splits: Record<string, number>; skipped: number };
  t.deepEqual([j.classes, j.splits, j.skipped], [2, { train: 2, test: 1 }, 0]);
  const bad = spawnSync(process.execPath, [bin, 'dataset', 'info', '--dataset', 'cub', '--root', path.join(root, 'nope')], { encoding: 'utf8' });
  t.is(bad.status, 1);
  t.is(bad.stderr, `fgh: ${path.join(root, 'nope')}: dataset root not found\n`);
});
