import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, copyFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { selectBackend } from '../../src/backend/select.js';
import { createHashingModel } from '../../src/models/factory.js';
import { exportHashingGraph } from '../../src/export/hashing.js';
import { readCodeStore, writeCodeStore } from '../../src/retrieval/code-store.js';
import { allocCodes, toPackedBytes } from '../../src/retrieval/codes.js';
import { readNpy } from '../../src/util/npy.js';
import { encode } from '../../src/encode/encoder.js';
import { provenanceOf } from '../../src/encode/shards.js';
import { writeSynthDataset } from '../../src/data/synth.js';
import { Rng } from '../../src/util/rng.js';
import type { EvalTransform } from '../../src/export/metadata.js';
import { perturbBatchNorm } from '../helpers/models.js';
import { fgh, projectRoot } from '../helpers/cli.js';
import { maxAbsDiff } from '../helpers/tensors.js';
import { missingPythonMessage, referencePython, runPython } from '../helpers/python.js';

const SIZE = 96;
let work = '';
let synthRoot = '';

/** An exported sRLH graph with random weights, declaring `transform` in its metadata. */
async function exportedModel(transform: EvalTransform, bits = 32): Promise<string> {
  const file = path.join(work, `srlh-${bits}-${transform}.onnx`);
  if (existsSync(file)) return file;
  const model = createHashingModel({ method: 'srlh', bits, classes: 20, seed: 3 });
  perturbBatchNorm(model, new Rng(4));
  writeFileSync(file, exportHashingGraph(model, { inputSize: SIZE, transform }).bytes);
  model.dispose();
  return file;
}

test.before(async () => {
  await selectBackend();
  work = mkdtempSync(path.join(os.tmpdir(), 'fgh-encode-'));
  synthRoot = path.join(work, 'synth');
  await writeSynthDataset(synthRoot, { classes: 6, perClass: 10, size: 112, seed: 5 });
});

test.after.always(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

const python = referencePython('torch', 'torchvision', 'PIL', 'numpy');
if (!python) console.warn(`encode parity: ${missingPythonMessage('torch', 'torchvision', 'PIL', 'numpy')}`);

for (const transform of ['resize-224', 'resize-256-centercrop-224'] as const) {
  (python ? test.serial : test.skip)(`fgh encode (${transform}) = the graph on torchvision-preprocessed images`, async (t) => {
    if (!python) return;
    const model = await exportedModel(transform);
    const out = path.join(work, `parity-${transform}.codes`);
    const feats = path.join(work, `parity-${transform}.npy`);
    const s = await encode({ model, source: { kind: 'dataset', dataset: 'cub', root: synthRoot, split: 'test' }, out, features: feats, batch: 7, quiet: true, log: () => undefined });
    t.true(s.complete);
    const store = readCodeStore(out);
    t.is(store.header.count, 30);
    // The same images, preprocessed by torchvision on PIL, through the same graph.
    const list = path.join(work, `list-${transform}.txt`);
    const images = store.ids.map((id) => path.join(synthRoot, 'images', id));
    const ids = readFileSync(path.join(synthRoot, 'images.txt'), 'utf8').trim().split('\n').map((l) => l.split(' '));
    const byId = new Map(ids.map(([i, rel]) => [i!, rel!]));
    writeFileSync(list, store.ids.map((id) => path.join(synthRoot, 'images', byId.get(id) ?? id)).join('\n'));
    t.is(images.length, 30);
    const tv = path.join(work, `tv-${transform}.npy`);
    const resize = transform === 'resize-224' ? `T.Resize((${SIZE}, ${SIZE}))` : `T.Resize(${Math.round((SIZE * 256) / 224)}), T.CenterCrop(${SIZE})`;
    runPython(
      python,
      `import sys, numpy as np, torch
from PIL import Image
import torchvision.transforms as T
tf = T.Compose([${resize}, T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
paths = open(sys.argv[1]).read().split('\\n')
x = torch.stack([tf(Image.open(p).convert('RGB')) for p in paths])
np.save(sys.argv[2], x.numpy().astype(np.float32))`,
      [list, tv],
    );
    const x = readNpy(tv);
    const session = await ort.InferenceSession.create(model);
    const r = await session.run({ images: new ort.Tensor('float32', x.data as Float32Array, x.shape) });
    await session.release();
    const refFeatures = r.features!.data as Float32Array;
    const ours = readNpy(feats);
    t.deepEqual(ours.shape, [30, 32]);
    const err = maxAbsDiff(ours.data as Float32Array, refFeatures);
    // fgh's decoding and transforms are PIL's and torchvision's to the bit, and the graph is the
    // same: features and codes must be identical (one run: difference 0).
    t.log(`${transform}: features max abs diff vs torchvision preprocessing ${err.toExponential(2)}`);
    t.is(err, 0, `features differ by ${err}`);
    t.deepEqual(toPackedBytes(store.codes), r.codes!.data as Uint8Array, 'the same codes');
    // Labels and ids come from the dataset.
    t.is(store.labels?.kind, 'single');
  });
}

function sameStore(t: import('ava').ExecutionContext, file: string, want: ReturnType<typeof readCodeStore>): void {
  const got = readCodeStore(file);
  t.is(got.header.count, want.header.count);
  // Items may be committed in a different order only if the run order changed; ours is the sample order.
  t.deepEqual(got.ids, want.ids);
  t.true(Buffer.from(got.codes.data).equals(Buffer.from(want.codes.data)));
}

test.serial('an interrupted encode resumes to the same store and features; --resume is required', async (t) => {
  const model = await exportedModel('resize-224');
  const source = { kind: 'dataset', dataset: 'cub', root: synthRoot, split: 'all' } as const;
  const quiet = { quiet: true, log: () => undefined };
  const full = path.join(work, 'full.codes');
  await encode({ model, source, out: full, features: `${full}.npy`, batch: 4, ...quiet });
  const want = readCodeStore(full);
  t.is(want.header.count, 60);

  const part = path.join(work, 'part.codes');
  let commits = 0;
  const first = await encode({ model, source, out: part, features: `${part}.npy`, batch: 4, commitEvery: 8, ...quiet, shouldStop: () => commits >= 2, onCommit: () => commits++ });
  t.false(first.complete);
  t.true(first.items > 0 && first.items < 60, `stopped at ${first.items}`);
  t.true(existsSync(`${part}.encode.json`));
  t.false(existsSync(`${part}.npy`), 'features are only published complete');
  await t.throwsAsync(encode({ model, source, out: part, batch: 4, features: `${part}.npy`, ...quiet }), { message: /unfinished encode.*--resume/ });
  const other = await exportedModel('resize-224', 16);
  await t.throwsAsync(encode({ model: other, source, out: part, batch: 4, features: `${part}.npy`, resume: true, ...quiet }), { message: /different model/ });
  const rest = await encode({ model, source, out: part, features: `${part}.npy`, batch: 4, resume: true, ...quiet });
  t.true(rest.complete);
  t.is(rest.encoded, 60 - first.items);
  sameStore(t, part, want);
  t.deepEqual(readNpy(`${part}.npy`).data, readNpy(`${full}.npy`).data);
  t.false(existsSync(`${part}.encode.json`));
});

test.serial('SIGKILL of the real CLI mid-encode, then --resume: the finished store equals an uninterrupted one', async (t) => {
  const model = await exportedModel('resize-224');
  const want = readCodeStore(path.join(work, 'full.codes'));
  const out = path.join(work, 'killed.codes');
  const args = ['encode', '--model', model, '--dataset', 'cub', '--root', synthRoot, '--split', 'all', '--out', out, '--batch', '2', '--commit-every', '2', '--threads', '1'];
  // Killed (SIGKILL) by the test hook right after the third commit (6 items, 2 a commit).
  const first = spawnSync(process.execPath, [path.join(projectRoot, 'bin', 'fgh.js'), ...args], { env: { ...process.env, FGH_TEST_KILL_AFTER_COMMIT: '3' }, encoding: 'utf8' });
  t.is(first.signal, 'SIGKILL', first.stderr);
  t.false(existsSync(out), 'OUT appears only when the encode has finished');
  const killedAt = readCodeStore(`${out}.part`).header.count;
  t.is(killedAt, 6, 'three commits of two items');
  const r = fgh(...args, '--resume', '--json');
  t.is(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout) as { items: number; encoded: number; complete: boolean };
  t.log(`killed after ${killedAt} items were stored; the resume encoded ${s.encoded}`);
  t.true(s.complete);
  t.is(s.items, 60);
  sameStore(t, out, want);
});

test.serial('encoding over an existing store keeps it whole until the new one is finished: a failed start, a kill, a kill at the finish, a second writer', async (t) => {
  const model = await exportedModel('resize-224');
  const out = path.join(work, 'existing.codes');
  await writeCodeStore(out, { codes: allocCodes(12, 5) }); // what a user had there before
  const old = readFileSync(out);
  const args = ['encode', '--model', model, '--dataset', 'cub', '--root', synthRoot, '--split', 'test', '--out', out, '--batch', '2', '--commit-every', '2', '--threads', '1'];
  const unchanged = (why: string) => t.true(readFileSync(out).equals(old), why);

  const strict = fgh(...args, '--ep', 'cuda!');
  t.is(strict.status, 1);
  t.regex(strict.stderr, /^fgh: the CUDA execution provider is not available/m);
  unchanged('--ep cuda! fails before touching the existing store');
  t.false(existsSync(`${out}.encode.json`), 'nor leaves a progress file');

  const bin = path.join(projectRoot, 'bin', 'fgh.js');
  const killed = spawnSync(process.execPath, [bin, ...args], { env: { ...process.env, FGH_TEST_KILL_AFTER_COMMIT: '1' }, encoding: 'utf8' });
  t.is(killed.signal, 'SIGKILL', killed.stderr);
  unchanged('killed mid-encode: the existing store is still the whole old one');
  t.is(readCodeStore(out).header.count, 5);

  const atFinish = spawnSync(process.execPath, [bin, ...args, '--resume'], { env: { ...process.env, FGH_TEST_KILL_AT_FINISH: '1' }, encoding: 'utf8' });
  t.is(atFinish.signal, 'SIGKILL', atFinish.stderr);
  unchanged('killed after finishing, before the replacement');
  const recorded = JSON.parse(readFileSync(`${out}.encode.json`, 'utf8')) as { complete?: boolean; runs: Array<{ used: string }> };
  t.deepEqual([recorded.complete, recorded.runs.at(-1)?.used], [true, 'cpu'], 'the finished run recorded its provider');

  const holder = spawn('sleep', ['60']);
  t.teardown(() => holder.kill());
  writeFileSync(`${out}.lock`, JSON.stringify({ pid: holder.pid, host: os.hostname(), since: 'then', what: 'fgh encode', token: 'x' }));
  const second = fgh(...args, '--resume');
  t.is(second.status, 1);
  t.is(second.stderr.split('\n').filter((l) => !l.startsWith('warning: ')).join('\n'), `fgh: ${out} is in use by fgh encode (pid ${holder.pid}, since then): one writer at a time; if no such process runs, delete ${out}.lock\n`);
  unchanged('a second writer is refused');
  holder.kill();
  await new Promise((resolve) => holder.once('exit', resolve));

  // Only the replacement is left: no session is made (--ep cuda! would fail here without CUDA),
  // and the summary reports the provider the finished run recorded. The sidecar of an older fgh
  // describes the old store: it goes when the store is replaced.
  writeFileSync(`${out}.meta.json`, '{"items":5}');
  const done = fgh(...args, '--resume', '--json', '--ep', 'cuda!');
  t.is(done.status, 0, done.stderr);
  t.like(JSON.parse(done.stdout) as object, { encoded: 0, complete: true, ep: 'cpu' });
  const store = readCodeStore(out);
  t.is(store.header.count, 30, 'the new store: the test split');
  t.deepEqual([existsSync(`${out}.part`), existsSync(`${out}.encode.json`), existsSync(`${out}.lock`)], [false, false, false]);
  // The new store's own metadata: the two runs that encoded (the killed one and its resume), not the last that only renamed.
  t.deepEqual(provenanceOf(store.metadata, out)?.execution, [{ requested: 'cpu', used: 'cpu', fallback: null }, { requested: 'cpu', used: 'cpu', fallback: null }]);
  t.false(existsSync(`${out}.meta.json`), 'no sidecar');
});

test.serial('unreadable images are skipped and listed; --ep cuda falls back, cuda! fails; bad input gives one line', async (t) => {
  const model = await exportedModel('resize-224');
  const dir = path.join(work, 'tree');
  mkdirSync(path.join(dir, 'a', 'b'), { recursive: true });
  const src = path.join(synthRoot, 'images');
  const files = readFileSync(path.join(synthRoot, 'images.txt'), 'utf8').trim().split('\n').slice(0, 5).map((l) => l.split(' ')[1]!);
  files.forEach((f, i) => copyFileSync(path.join(src, f), path.join(dir, i < 3 ? 'a' : path.join('a', 'b'), `img${i}.jpg`)));
  writeFileSync(path.join(dir, 'a', 'broken.jpg'), Buffer.from('not a jpeg at all'));
  await sharp({ create: { width: 40, height: 30, channels: 4, background: { r: 10, g: 200, b: 30, alpha: 0.5 } } }).png().toFile(path.join(dir, 'rgba.png'));
  writeFileSync(path.join(dir, 'notes.txt'), 'ignored');
  const out = path.join(work, 'tree.codes');
  const r = fgh('encode', '--model', model, '--images', dir, '--out', out, '--ep', 'cuda', '--json');
  t.is(r.status, 0, r.stderr);
  t.regex(r.stderr, /CUDA execution provider not available.*using CPU/);
  const s = JSON.parse(r.stdout) as { items: number; skipped: number; skippedFile: string; ep: string };
  t.is(s.ep, 'cpu');
  t.is(s.items, 6);
  t.is(s.skipped, 1);
  t.regex(readFileSync(s.skippedFile, 'utf8'), /a\/broken\.jpg\tunreadable/);
  t.regex(r.stderr, /skipped .*a\/broken\.jpg: unreadable image \([^)\n]+\)\n/, 'the reason is printed with the image');
  const store = readCodeStore(out);
  t.deepEqual(store.ids, ['a/b/img3.jpg', 'a/b/img4.jpg', 'a/img0.jpg', 'a/img1.jpg', 'a/img2.jpg', 'rgba.png']);
  t.is(store.labels, null);

  const strict = fgh('encode', '--model', model, '--images', dir, '--out', path.join(work, 'x.codes'), '--ep', 'cuda!');
  t.is(strict.status, 1);
  t.regex(strict.stderr, /^fgh: the CUDA execution provider is not available/);
  t.is(strict.stderr.trim().split('\n').length, 1);

  const backbone = path.join(work, 'not-fgh.onnx');
  writeFileSync(backbone, Buffer.from([0x08, 0x07]));
  for (const [args, message] of [
    [['--model', backbone, '--images', dir], /no fgh metadata/],
    [['--model', path.join(work, 'missing.onnx'), '--images', dir], /missing\.onnx: no such file/],
    [['--model', model, '--images', path.join(work, 'nope')], /nope: no such directory/],
    [['--model', model, '--dataset', 'cub', '--root', synthRoot, '--images', dir], /either --images/],
    [['--model', model, '--images', dir, '--ep', 'tpu'], /--ep must be/],
  ] as Array<[string[], RegExp]>) {
    const e = fgh('encode', ...args, '--out', path.join(work, 'y.codes'));
    t.is(e.status, 1, args.join(' '));
    t.regex(e.stderr, message);
  }

  // fgh search --model encodes query images the same way: an image finds itself at distance 0.
  const q = fgh('search', '--db', out, '--model', model, path.join(dir, 'a', 'img1.jpg'), '--topk', '6', '--json');
  t.is(q.status, 0, q.stderr);
  const res = JSON.parse(q.stdout) as { results: Array<{ ids: string[]; distances: number[] }> };
  const hit = res.results[0]!.ids.indexOf('a/img1.jpg');
  t.true(hit >= 0);
  t.is(res.results[0]!.distances[hit], 0);
});
