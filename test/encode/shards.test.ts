import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { selectBackend } from '../../src/backend/select.js';
import { writeSynthDataset } from '../../src/data/synth.js';
import { encode, type EncodeOptions } from '../../src/encode/encoder.js';
import { mergeShards } from '../../src/encode/merge.js';
import { resolveSource, type EncodeSource } from '../../src/encode/sources.js';
import { listingSha256, parseShard, shardRange } from '../../src/encode/shards.js';
import { exportHashingGraph } from '../../src/export/hashing.js';
import { createHashingModel } from '../../src/models/factory.js';
import { readCodeStore, type StoreContents } from '../../src/retrieval/code-store.js';
import { toPackedBytes } from '../../src/retrieval/codes.js';
import { FghError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { fgh, projectRoot } from '../helpers/cli.js';
import { perturbBatchNorm } from '../helpers/models.js';

/**
 * fgh encode --shard I/N and fgh codes merge: a small real sRLH graph encodes a synthetic dataset
 * whole and in shards; the merged store must equal the whole run's item for item. The shards are
 * encoded once and shared by the tests (each encode is a fraction of a second at 32 px).
 */

const SIZE = 32;
let work = '';
let root = '';
let listing: string[] = [];
const source: EncodeSource = { kind: 'dataset', dataset: 'cub', root: '', split: 'all' };
const quiet = { quiet: true, log: () => undefined, batch: 3 } satisfies Partial<EncodeOptions>;

function exportModel(file: string, bits: number): string {
  const model = createHashingModel({ method: 'srlh', bits, classes: 3, seed: 11 });
  perturbBatchNorm(model, new Rng(12));
  writeFileSync(file, exportHashingGraph(model, { inputSize: SIZE, transform: 'resize-224' }).bytes);
  model.dispose();
  return file;
}

let models: { main: string; bits16: string; renamed: string };

test.before(async () => {
  await selectBackend();
  work = mkdtempSync(path.join(os.tmpdir(), 'fgh-shards-'));
  root = path.join(work, 'synth');
  await writeSynthDataset(root, { classes: 3, perClass: 4, size: 40, seed: 7 });
  (source as { root: string }).root = root;
  // 12 declared images: one file is removed (a missing item, reported by shard 0) and one
  // corrupted (skipped by the shard that holds it), so 11 are listed: shards of 3, 4 and 4.
  const declared = resolveSource(source).samples;
  unlinkSync(declared[1]!.path);
  writeFileSync(declared[5]!.path, 'not an image');
  listing = resolveSource(source).samples.map((s) => s.id);
  const main = exportModel(path.join(work, 'main.onnx'), 12);
  // The same graph with one more metadata entry (ModelProto field 14): other bytes, same weights.
  const entry = Buffer.concat([Buffer.from([0x0a, 4]), Buffer.from('note'), Buffer.from([0x12, 5]), Buffer.from('other')]);
  const renamed = path.join(work, 'renamed.onnx');
  writeFileSync(renamed, Buffer.concat([readFileSync(main), Buffer.from([0x72, entry.length]), entry]));
  models = { main, bits16: exportModel(path.join(work, 'bits16.onnx'), 16), renamed };
});

test.after.always(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Each store is encoded once, whichever test asks first. */
const made = new Map<string, Promise<string>>();
function encoded(name: string, opts: Partial<EncodeOptions> = {}): Promise<string> {
  let p = made.get(name);
  if (!p) {
    const out = path.join(work, `${name}.codes`);
    p = encode({ model: models.main, source, out, ...quiet, ...opts }).then((s) => {
      if (!s.complete) throw new Error(`${name}: interrupted`);
      return out;
    });
    made.set(name, p);
  }
  return p;
}
const whole = () => encoded('whole');
const shard = (i: number, n: number, opts: Partial<EncodeOptions> = {}, tag = '') => encoded(`shard-${i}-of-${n}${tag}`, { shard: { index: i, count: n }, ...opts });

test('shard ranges tile the listing in near-equal contiguous parts; --shard is checked; the listing fingerprint ignores where the dataset is mounted', (t) => {
  for (let total = 0; total <= 40; total++) {
    for (let n = 1; n <= 9; n++) {
      const ranges = Array.from({ length: n }, (_, i) => shardRange({ index: i, count: n }, total));
      const sizes = ranges.map((r) => r.end - r.first);
      t.true(ranges.every((r, i) => r.first === (i === 0 ? 0 : ranges[i - 1]!.end)) && ranges[n - 1]!.end === total, `${n} shards of ${total}`);
      t.true(Math.max(...sizes) - Math.min(...sizes) <= 1, `${n} shards of ${total}: sizes ${sizes.join(',')}`);
    }
  }
  t.deepEqual(shardRange({ index: 1, count: 3 }, 1e12), { index: 1, count: 3, first: 333333333333, end: 666666666666 });
  t.deepEqual(parseShard('2/8'), { index: 2, count: 8 });
  for (const bad of ['8/8', '-1/4', '1/0', '1', 'a/b', '1.5/4']) t.throws(() => parseShard(bad), { instanceOf: FghError, message: `--shard must be I/N with 0 <= I < N (e.g. 0/4), got "${bad}"` });
  const items = [
    { id: '1', path: '/mnt/a/images/1.jpg', labels: [0] },
    { id: '2', path: '/mnt/a/images/2.jpg', labels: [1] },
  ];
  const base = listingSha256(items);
  t.is(listingSha256(items.map((s) => ({ ...s, path: s.path.replace('/mnt/a', '/data') }))), base, 'another mount point');
  t.not(listingSha256([items[0]!, { ...items[1]!, labels: [0] }]), base, 'another label');
  t.not(listingSha256([items[1]!, items[0]!]), base, 'another order');
  // Joined with bare line breaks, these two listings would hash the same.
  const lines = (ids: string[]) => listingSha256(ids.map((id) => ({ id, path: id, labels: [] })));
  t.not(lines(['a\n', 'b']), lines(['a', '\nb']), 'ids cannot run into each other');
});

function sameStore(t: ExecutionContext, got: StoreContents, want: StoreContents): void {
  t.deepEqual(got.ids, want.ids, 'ids, in order');
  t.deepEqual([got.header.count, got.header.bits, got.header.labels, got.header.numClasses], [want.header.count, want.header.bits, want.header.labels, want.header.numClasses]);
  t.deepEqual(toPackedBytes(got.codes), toPackedBytes(want.codes), 'codes');
  t.deepEqual(got.labels, want.labels, 'labels');
  t.deepEqual(withoutExecution(got), withoutExecution(want), 'metadata: the same, without the shard');
}

/** A store's metadata without the execution providers, which merge lists per shard. */
const withoutExecution = (s: StoreContents) => ({ ...s.metadata, execution: undefined });
const executionOf = (s: StoreContents) => (s.metadata as { execution?: unknown }).execution;
const cpu = { requested: 'cpu', used: 'cpu', fallback: null };

test.serial('3 uneven shards, one killed and resumed through the CLI, merge into the store a single run writes', async (t) => {
  const single = readCodeStore(await whole());
  // 11 listed items, one of them unreadable: the single run stores 10.
  t.is(single.header.count, 10);
  t.is(new Set(single.ids).size, 10);
  t.true(new Set(Array.from({ length: 10 }, (_, i) => Buffer.from(single.codes.data.subarray(i * 4, i * 4 + 4)).toString('hex'))).size > 3, 'the codes differ between items');
  t.like(single.metadata, { listing: { source: 'cub all', count: 11 }, model: { bits: 12, method: 'srlh' } });
  t.false('shard' in (single.metadata ?? {}));

  // --resume on a shard never started starts it (what a batch system's retry runs); the serial
  // tests run first, so this is the run that makes shard 0/3.
  const s0 = await shard(0, 3, { resume: true });
  const s1 = await shard(1, 3);
  // Shard 2/3 through the real CLI, killed by the test hook after its second commit (two items).
  const s2 = path.join(work, 'cli-2-of-3.codes');
  const args = ['encode', '--model', models.main, '--dataset', 'cub', '--root', root, '--split', 'all', '--out', s2, '--shard', '2/3', '--batch', '1', '--commit-every', '1', '--threads', '1', '--quiet'];
  const killed = spawnSync(process.execPath, [path.join(projectRoot, 'bin', 'fgh.js'), ...args], { env: { ...process.env, FGH_TEST_KILL_AFTER_COMMIT: '2' }, encoding: 'utf8' });
  t.is(killed.signal, 'SIGKILL', killed.stderr);
  t.false(existsSync(s2));
  t.is(readCodeStore(`${s2}.part`).header.count, 2);
  const out = path.join(work, 'merged.codes');
  await t.throwsAsync(mergeShards([s0, s1, s2], out, { quiet: true }), { instanceOf: FghError, message: `${s2}: its encode is unfinished or still running (${s2}.encode.json exists); finish it with fgh encode ... --resume, then merge` });
  await t.throwsAsync(mergeShards([s0, s1, `${s2}.part`], out, { quiet: true }), { message: new RegExp(`^${s2}\\.part: the work store of an unfinished encode`) });
  const resume = { model: models.main, source, out: s2, resume: true, ...quiet };
  await t.throwsAsync(encode({ ...resume, shard: { index: 1, count: 3 } }), { instanceOf: FghError, message: `${s2} was started as --shard 2/3; resume with the same` });
  const resumed = await encode({ ...resume, shard: { index: 2, count: 3 } });
  t.like(resumed, { items: 4, encoded: 2, complete: true, shard: { index: 2, count: 3, first: 7, end: 11 } });
  // A batch system running the finished task again: nothing to do, success.
  t.like(await encode({ ...resume, shard: { index: 2, count: 3 } }), { items: 4, encoded: 0, complete: true });

  // Contiguous ranges of 3, 4 and 4 listed items in the listing's order (one unreadable in shard 1).
  const parts = [s0, s1, s2].map((f) => readCodeStore(f));
  t.deepEqual(parts.map((p) => (p.metadata as { shard: object }).shard), [
    { index: 0, count: 3, first: 0, end: 3 },
    { index: 1, count: 3, first: 3, end: 7 },
    { index: 2, count: 3, first: 7, end: 11 },
  ]);
  t.deepEqual(parts.map((p) => p.ids), [listing.slice(0, 3), listing.slice(3, 7).filter((id) => single.ids.includes(id)), listing.slice(7, 11)]);
  t.is(parts[1]!.header.count, 3);

  // Shards in any order on the command line.
  const r = fgh('codes', 'merge', s2, s0, s1, '--out', out, '--json');
  t.is(r.status, 0, r.stderr);
  t.like(JSON.parse(r.stdout) as object, { items: 10, shards: 3, skipped: 2 });
  sameStore(t, readCodeStore(out), single);
  // The runs of the shards in listing order: shard 2/3's killed run and its resume.
  t.deepEqual(executionOf(readCodeStore(out)), [{ ...cpu, shard: '0/3' }, { ...cpu, shard: '1/3' }, { ...cpu, shard: '2/3' }, { ...cpu, shard: '2/3' }]);
  t.deepEqual(executionOf(single), [cpu]);
  t.is(readFileSync(`${out}.skipped.tsv`, 'utf8'), readFileSync(`${await whole()}.skipped.tsv`, 'utf8'), 'the skip list: the missing file, then the unreadable one');
  t.false(existsSync(`${out}.lock`));
});

/** Two images under a folder, whole and in three shards (shard 0 is empty). */
let twoImages: Promise<{ one: string; files: string[] }> | null = null;
function two(): Promise<{ one: string; files: string[] }> {
  twoImages ??= (async () => {
    const dir = path.join(work, 'two');
    mkdirSync(dir);
    const present = resolveSource(source).samples;
    copyFileSync(present[0]!.path, path.join(dir, 'a.jpg'));
    copyFileSync(present[2]!.path, path.join(dir, 'b.jpg'));
    const images: EncodeSource = { kind: 'images', dir };
    const one = path.join(work, 'two.codes');
    await encode({ model: models.main, source: images, out: one, ...quiet });
    const files = [0, 1, 2].map((i) => path.join(work, `two-${i}.codes`));
    for (const [i, f] of files.entries()) await encode({ model: models.main, source: images, out: f, shard: { index: i, count: 3 }, ...quiet });
    return { one, files };
  })();
  return twoImages;
}

test.serial('a shard with no items (N above the item count) and shards of different N that meet end to end merge as well', async (t) => {
  const { one, files } = await two();
  t.deepEqual(files.map((f) => readCodeStore(f).header.count), [0, 1, 1]);
  const out = path.join(work, 'two-merged.codes');
  await mergeShards(files, out, { quiet: true });
  const single = readCodeStore(one);
  t.is(single.labels, null);
  sameStore(t, readCodeStore(out), single);
  t.false(existsSync(`${out}.skipped.tsv`));
  // Without the empty shard, merge still wants it: every shard of N.
  await t.throwsAsync(mergeShards(files.slice(1), path.join(work, 'x.codes'), { quiet: true }), { message: 'missing shard 0/3 (no items) of 2 items: merge needs all 3 (2 given)' });

  // A slow shard 1/2 re-run as 3/6 and 2/3: [0,5) + [5,7) + [7,11).
  const mixed = path.join(work, 'mixed.codes');
  await mergeShards([await shard(0, 2), await shard(3, 6), await shard(2, 3)], mixed, { quiet: true });
  sameStore(t, readCodeStore(mixed), readCodeStore(await whole()));
});

test.serial('a shard encoded with --ep cuda (falling back to cpu here) merges with cpu shards; the merged store lists each shard\'s provider', async (t) => {
  const [s0, s2] = [await shard(0, 3), await shard(2, 3)];
  const s1 = await shard(1, 3, { ep: 'cuda' }, '-cuda');
  const [ep] = executionOf(readCodeStore(s1)) as Array<{ requested: string; used: string; fallback: string | null }>;
  t.is(ep!.requested, 'cuda');
  const out = path.join(work, 'merged-cuda.codes');
  await mergeShards([s0, s1, s2], out, { quiet: true });
  const merged = readCodeStore(out);
  sameStore(t, merged, readCodeStore(await whole()));
  t.deepEqual(executionOf(merged), [{ ...cpu, shard: '0/3' }, { ...ep, shard: '1/3' }, { ...cpu, shard: '2/3' }]);
});

test.serial('merge refuses other models, bits and listings, gaps, overlaps, repeats and a store that is not a shard, in one line naming the files', async (t) => {
  const [s0, s1, s2] = [await shard(0, 3), await shard(1, 3), await shard(2, 3)];
  const bits16 = await shard(1, 3, { model: models.bits16 }, '-16');
  const renamed = await shard(1, 3, { model: models.renamed }, '-renamed');
  const other = (await two()).files[2]!;
  const half = await shard(0, 2);
  const copy = path.join(work, 'copy-of-1.codes');
  copyFileSync(s1, copy);
  const out = path.join(work, 'refused.codes');
  const refused = async (files: string[], message: string | RegExp) => {
    const e = await t.throwsAsync(mergeShards(files, out, { quiet: true }), { instanceOf: FghError, message });
    t.false(e?.message.includes('\n'), 'one line');
  };
  await refused([s0, bits16, s2], `${s0} holds 12-bit codes, ${bits16} 16-bit: the shards must come from the same model`);
  await refused([s0, renamed, s2], new RegExp(`^${s0} and ${renamed} come from different models \\(graph sha256 [0-9a-f]{12}\\.\\.\\. and [0-9a-f]{12}\\.\\.\\.\\)$`));
  await refused([s0, s1, other], new RegExp(`^${s0} and ${other} were encoded from different listings \\("cub all", 11 items, sha256 [0-9a-f]{12}\\.\\.\\.; "images", 2 items, sha256 [0-9a-f]{12}\\.\\.\\.\\)$`));
  await refused([s0, s2], 'missing shard 1/3 (items 3-6) of 11 items: merge needs all 3 (2 given)');
  await refused([half, s2], `no shard holds items 5-6 of 11: a gap between ${half} (shard 0/2, items 0-4) and ${s2} (shard 2/3, items 7-10)`);
  await refused([half, s1, s2], `${half} (shard 0/2, items 0-4) and ${s1} (shard 1/3, items 3-6) overlap`);
  await refused([s0, s1, s2, s1], `${s1} is given twice`);
  await refused([s0, s1, s2, copy], `${s1} and ${copy} are both shard 1/3 (items 3-6)`);
  await refused([await whole()], `${await whole()}: a whole encode, not a shard (encoded without --shard)`);
  const e = await t.throwsAsync(mergeShards([s0, s1, s2], s1, { quiet: true }), { instanceOf: FghError });
  t.is(e?.message, `--out ${s1} is one of the shards: merge into a new file`);
  // A shard damaged inside (a flipped code byte) is found while copying: nothing is left behind.
  const damaged = path.join(work, 'damaged-1.codes');
  const bytes = readFileSync(s1);
  const chunk0 = 128 + Math.ceil(bytes.readUInt32LE(52) / 64) * 64;
  bytes[chunk0 + 64]! ^= 0x01;
  writeFileSync(damaged, bytes);
  await refused([s0, damaged, s2], new RegExp(`^${damaged}: chunk 0 \\(offset ${chunk0}\\): corrupt data \\(checksum mismatch\\)$`));
  t.false(existsSync(out), 'nothing written');
  t.deepEqual(readdirSync(work).filter((f) => f.includes('refused')), [], 'no temporary, lock or skip list either');
  // The CLI prints the same one line.
  const r = fgh('codes', 'merge', s0, s2, '--out', out);
  t.is(r.status, 1);
  t.is(r.stderr, 'fgh: missing shard 1/3 (items 3-6) of 11 items: merge needs all 3 (2 given)\n');
});
