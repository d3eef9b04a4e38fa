import test from 'ava';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { allocCodes, type Codes } from '../../src/retrieval/codes.js';
import { multiHotLabels, singleLabels, type Labels } from '../../src/retrieval/labels.js';
import { CodeStoreReader, appendToCodeStore, readCodeStore, recoverCodeStore, writeCodeStore, type StoreContents } from '../../src/retrieval/code-store.js';
import { crc32, crc32Table } from '../../src/retrieval/crc32.js';
import { FghError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';

const zcrc = (zlib as unknown as { crc32: (b: Uint8Array) => number }).crc32;

function tmp(t: { teardown: (f: () => void) => void }): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function randomCodes(rng: Rng, bits: number, n: number): Codes {
  const c = allocCodes(bits, n);
  for (let i = 0; i < n; i++) {
    for (let b = 0; b < bits; b++) if (rng.bool()) c.data[i * c.stride + (b >> 3)]! |= 0x80 >> (b & 7);
  }
  return c;
}

function labelsFor(kind: 'none' | 'single' | 'multi', rng: Rng, n: number): Labels | null {
  if (kind === 'none') return null;
  if (kind === 'single') return singleLabels(Array.from({ length: n }, () => rng.int(6) - 1), 5);
  return multiHotLabels(Array.from({ length: n * 37 }, () => (rng.bool(0.1) ? 1 : 0)), n, 37);
}

/** Superblock slot fields at 64-byte slot `s`: [generation, count, end]. */
function slot(bytes: Buffer, s: number): [number, number, number] {
  return [Number(bytes.readBigUInt64LE(64 * s + 24)), Number(bytes.readBigUInt64LE(64 * s + 32)), Number(bytes.readBigUInt64LE(64 * s + 40))];
}

test('our CRC-32 equals zlib\'s, table and native', (t) => {
  const b = new TextEncoder().encode('123456789 fine-grained hashing');
  t.is(crc32Table(new TextEncoder().encode('123456789')), 0xcbf43926);
  t.is(crc32Table(b), zcrc(b) >>> 0);
  t.is(crc32(b), zcrc(b) >>> 0);
  t.is(crc32Table(b.subarray(9), crc32Table(b.subarray(0, 9))), crc32Table(b));
});

test('write then read: codes, labels (none, single, multi-hot) and ids, over several chunks; codes are 64-byte aligned words in the file', async (t) => {
  const dir = tmp(t);
  const rng = new Rng(1);
  for (const kind of ['none', 'single', 'multi'] as const) {
    for (const bits of [12, 48, 100]) {
      const n = 23;
      const codes = randomCodes(rng, bits, n);
      const labels = labelsFor(kind, rng, n);
      const ids = Array.from({ length: n }, (_, i) => (i % 3 ? `images/${i}.jpg` : `oiseau-${i}-é\u{1F426}`));
      const file = path.join(dir, `${kind}-${bits}.fghc`);
      const h = await writeCodeStore(file, { codes, labels, ids }, { chunkItems: 7 });
      t.deepEqual([h.count, h.chunks, h.bits, h.labels], [n, 4, bits, kind]);
      const r = readCodeStore(file);
      t.deepEqual(r.codes.data, codes.data, `${kind}/${bits} codes`);
      t.deepEqual(r.ids, ids);
      if (labels?.kind === 'single') t.deepEqual(r.labels?.kind === 'single' && Array.from(r.labels.ids), Array.from(labels.ids));
      else if (labels?.kind === 'multi') t.deepEqual(r.labels?.kind === 'multi' && Array.from(r.labels.sets), Array.from(labels.sets));
      else t.is(r.labels, null);
      // Streaming gives the same items chunk by chunk.
      const reader = CodeStoreReader.open(file);
      const sizes = [...reader.chunks()].map((c) => [c.first, c.codes.count]);
      reader.close();
      t.deepEqual(sizes, [[0, 7], [7, 7], [14, 7], [21, 2]]);
      // The first chunk's codes sit at offset 192 of the file and read as words without copying.
      const raw = readFileSync(file);
      const buf = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length);
      if (bits <= 32) t.deepEqual(new Uint32Array(buf, 192, 7), new Uint32Array(codes.data.buffer, 0, 7));
      else t.deepEqual(new BigUint64Array(buf, 192, (7 * codes.stride) / 8), new BigUint64Array(codes.data.buffer, 0, (7 * codes.stride) / 8));
    }
  }
  // Without ids, ids are the item indices.
  const file = path.join(dir, 'noids.fghc');
  await writeCodeStore(file, { codes: randomCodes(rng, 8, 3) });
  t.deepEqual(readCodeStore(file).ids, ['0', '1', '2']);
});

test('append: new chunks, then the header in the other slot; the store grows by the batch', async (t) => {
  const dir = tmp(t);
  const rng = new Rng(2);
  const file = path.join(dir, 's.fghc');
  const a = randomCodes(rng, 24, 10);
  const b = randomCodes(rng, 24, 5);
  await writeCodeStore(file, { codes: a, labels: singleLabels(new Array(10).fill(1), 4) });
  t.deepEqual([slot(readFileSync(file), 0)[0], slot(readFileSync(file), 1)[0]], [1, 1]);
  appendToCodeStore(file, { codes: b, labels: singleLabels([0, 1, 2, 3, -1], 4) }, { chunkItems: 2 });
  const bytes = readFileSync(file);
  t.deepEqual([slot(bytes, 0)[0], slot(bytes, 0)[1], slot(bytes, 1)[0], slot(bytes, 1)[1]], [1, 10, 2, 15]);
  const r = readCodeStore(file);
  t.is(r.header.count, 15);
  t.is(r.header.chunks, 4);
  t.deepEqual(r.codes.data.subarray(40), b.data);
  t.deepEqual(r.ids.slice(9), ['9', '10', '11', '12', '13', '14']);
  t.deepEqual(r.labels?.kind === 'single' && Array.from(r.labels.ids.subarray(8)), [1, 1, 0, 1, 2, 3, -1]);
  appendToCodeStore(file, { codes: randomCodes(rng, 24, 1), labels: singleLabels([2], 4) });
  t.deepEqual(slot(readFileSync(file), 0).slice(0, 2), [3, 16]);
  // Mismatches are refused and leave the store as it was.
  t.throws(() => appendToCodeStore(file, { codes: randomCodes(rng, 12, 1), labels: singleLabels([0], 4) }), { message: /holds 24-bit codes, the new items have 12 bits/ });
  t.throws(() => appendToCodeStore(file, { codes: randomCodes(rng, 24, 1) }), { message: /has single labels, the new items have none/ });
  t.throws(() => appendToCodeStore(file, { codes: randomCodes(rng, 24, 1), labels: singleLabels([7], 8) }), { message: /class id 7 is beyond the store's 4 classes/ });
  t.is(readCodeStore(file).header.count, 16);
});

test('a crash during an append leaves the previous store: unfinished chunks, torn header slot, half-written chunk', async (t) => {
  const dir = tmp(t);
  const rng = new Rng(3);
  const file = path.join(dir, 's.fghc');
  const a = randomCodes(rng, 48, 9);
  await writeCodeStore(file, { codes: a });
  const before = readFileSync(file);
  appendToCodeStore(file, { codes: randomCodes(rng, 48, 4) });
  const after = readFileSync(file);
  t.true(after.length > before.length);

  // 1. Chunks written, header not yet: the old superblocks over the longer file.
  const crashed = Buffer.from(after);
  before.copy(crashed, 0, 0, 128);
  writeFileSync(file, crashed);
  let r = CodeStoreReader.open(file);
  t.is(r.header.count, 9);
  t.is(r.uncommittedBytes, after.length - before.length);
  t.deepEqual(r.readAll().codes.data, a.data);
  r.close();
  // The next append drops the stale tail.
  appendToCodeStore(file, { codes: randomCodes(rng, 48, 2) });
  t.is(readCodeStore(file).header.count, 11);
  // One chunk: 64 header + 16 codes + 16 (12 id offsets, padded) + 3 id bytes ("9", "10"), padded to 128.
  t.is(readFileSync(file).length, before.length + 128);

  // 2. The header write torn, or the new slot damaged later: the older slot records fewer items
  // than the file holds, so reading refuses (falling back would silently drop the 4 new items)
  // and recover gets every item back.
  const torn = Buffer.from(after);
  torn[64 + 33] = torn[64 + 33]! ^ 0xff; // the count of slot B (generation 2)
  writeFileSync(file, torn);
  t.throws(() => readCodeStore(file), { instanceOf: FghError, message: /superblock slot B is damaged \(checksum mismatch\) and 128 bytes follow the end that slot A records \(9 items\).*fgh codes recover/ });
  t.throws(() => appendToCodeStore(file, { codes: randomCodes(rng, 48, 1) }), { message: /slot B is damaged/ });
  t.deepEqual(readFileSync(file), torn, 'the refused append left the file as it was');
  const rec = await recoverCodeStore(file, path.join(dir, 'rec.fghc'));
  t.like(rec, { items: 13, chunks: 2, recorded: 9, droppedBytes: 0, stoppedBy: null });
  t.deepEqual(readCodeStore(path.join(dir, 'rec.fghc')).ids, Array.from({ length: 13 }, (_, i) => String(i)));

  // 3. Killed halfway through writing a chunk.
  writeFileSync(file, Buffer.concat([before, after.subarray(before.length, before.length + 40)]));
  t.is(readCodeStore(file).header.count, 9);
});

test('corrupt and truncated stores are refused with one-line errors that say what is wrong', async (t) => {
  const dir = tmp(t);
  const rng = new Rng(4);
  const good = path.join(dir, 'good.fghc');
  await writeCodeStore(good, { codes: randomCodes(rng, 12, 20), labels: singleLabels(Array.from({ length: 20 }, (_, i) => i % 3)) }, { chunkItems: 8 });
  const bytes = readFileSync(good);
  const cases: Array<[string, (b: Buffer) => Buffer, RegExp]> = [
    ['flipped code byte', (b) => { b[128 + 64 + 1]! ^= 0x10; return b; }, /^bad\.fghc: chunk 0 \(offset 128\): corrupt data \(checksum mismatch\)$/],
    ['flipped chunk header', (b) => { b[128 + 4]! ^= 1; return b; }, /^bad\.fghc: chunk 0 \(offset 128\): corrupt chunk header \(checksum mismatch\)$/],
    ['truncated', (b) => b.subarray(0, b.length - 100), /^bad\.fghc: truncated: the header records \d[\d,]* bytes, the file has \d[\d,]*$/],
    ['header only, cut short', (b) => b.subarray(0, 100), /^bad\.fghc: truncated: 100 bytes, a code store header alone has 128$/],
    ['both slots broken', (b) => { b[30]! ^= 1; b[64 + 30]! ^= 1; return b; }, /^bad\.fghc: corrupt code store header \(slot A: checksum mismatch, slot B: checksum mismatch\); `fgh codes recover` may rescue its items$/],
    ['not a store', () => Buffer.from('PNG and other things, long enough to be read as a header'.repeat(4)), /^bad\.fghc: not an fgh code store \(no FGHCODES magic\)$/],
    ['empty file', () => Buffer.alloc(0), /^bad\.fghc: not an fgh code store/],
    ['future version', (b) => resealSuper(b, (s) => s.writeUInt16LE(3, 8)), /^bad\.fghc: code store format version 3 is not supported \(this fgh reads versions 1 and 2\); upgrade fgh$/],
    ['stride inconsistent with bits', (b) => resealSuper(b, (s) => s.writeUInt32LE(8, 16)), /^bad\.fghc: corrupt code store header \(bits 12, stride 8\)$/],
    ['count disagrees with chunks', (b) => resealSuper(b, (s) => s.writeBigUInt64LE(21n, 32)), /^bad\.fghc: corrupt \(the chunks hold 20 items, the header says 21\)$/],
    ['non-zero padding bits (valid checksums)', (b) => resealChunk0(b, (p) => { p[1]! |= 0x01; }), /^bad\.fghc: chunk 0 \(offset 128\): corrupt code 0 \(non-zero padding bits\)$/],
    ['class id out of range (valid checksums)', (b) => resealChunk0(b, (p) => p.writeInt32LE(9, 32)), /^bad\.fghc: chunk 0 \(offset 128\): item 0 has class id 9 \(classes: 3\)$/],
  ];
  for (const [what, corrupt, re] of cases) {
    const bad = path.join(dir, 'bad.fghc');
    writeFileSync(bad, corrupt(Buffer.from(bytes)));
    const e = t.throws(() => readCodeStore(bad), { instanceOf: FghError }, what);
    t.regex(e!.message.replace(bad, 'bad.fghc'), re, what);
  }
  t.throws(() => readCodeStore(path.join(dir, 'missing.fghc')), { message: /missing\.fghc: no such file$/ });
  copyFileSync(good, path.join(dir, 'cut.fghc'));
  truncateSync(path.join(dir, 'cut.fghc'), bytes.length - 64);
  t.throws(() => appendToCodeStore(path.join(dir, 'cut.fghc'), { codes: randomCodes(rng, 12, 1), labels: singleLabels([0]) }), { message: /truncated/ });
});

/** Edits both superblocks and recomputes their CRCs (with zlib's CRC, not ours). */
function resealSuper(b: Buffer, edit: (s: Buffer) => void): Buffer {
  for (const at of [0, 64]) {
    const s = b.subarray(at, at + 64);
    edit(s);
    s.writeUInt32LE(zcrc(s.subarray(0, 60)) >>> 0, 60);
  }
  return b;
}

/** Edits chunk 0's payload and recomputes its payload CRC. */
function resealChunk0(b: Buffer, edit: (payload: Buffer) => void): Buffer {
  const h = b.subarray(128, 192);
  const payload = b.subarray(192, 192 + h.readUInt32LE(20));
  edit(payload);
  h.writeUInt32LE(zcrc(payload) >>> 0, 24);
  h.writeUInt32LE(zcrc(h.subarray(0, 60)) >>> 0, 60);
  return b;
}

test('a damaged superblock slot is harmless only when nothing follows the other slot\'s end: then it is reported and healed by the next append', async (t) => {
  const dir = tmp(t);
  const rng = new Rng(5);
  const file = path.join(dir, 's.fghc');
  await writeCodeStore(file, { codes: randomCodes(rng, 20, 6) }); // both slots: generation 1
  const bytes = readFileSync(file);
  bytes[5]! ^= 0x04; // slot A's magic
  writeFileSync(file, bytes);
  const r = CodeStoreReader.open(file);
  t.is(r.header.count, 6);
  t.regex(r.damage ?? '', /^superblock slot A is damaged \(no magic\); slot B records the same items/);
  r.close();
  appendToCodeStore(file, { codes: randomCodes(rng, 20, 2) }); // writes generation 2 into slot A
  const healed = CodeStoreReader.open(file);
  t.deepEqual([healed.header.generation, healed.header.count, healed.damage], [2, 8, null]);
  healed.close();
});

function contentsEqual(a: StoreContents, b: StoreContents): boolean {
  const same = (x: ArrayLike<number>, y: ArrayLike<number>) => x.length === y.length && Array.prototype.every.call(x, (v: number, i: number) => v === y[i]);
  const la = a.labels;
  const lb = b.labels;
  const labelsSame = la === null || lb === null ? la === lb : la.kind === 'single' && lb.kind === 'single' ? same(la.ids, lb.ids) : la.kind === 'multi' && lb.kind === 'multi' && same(la.sets, lb.sets);
  return a.header.count === b.header.count && a.header.bits === b.header.bits && same(a.codes.data, b.codes.data) && labelsSame && a.ids.join('\n') === b.ids.join('\n') &&
    JSON.stringify(a.metadata) === JSON.stringify(b.metadata);
}

for (const withMetadata of [false, true]) test(`every single-bit flip of a store ${withMetadata ? 'with metadata (version 2) ' : ''}written, then appended to twice, is refused or leaves its content identical`, async (t) => {
  const dir = tmp(t);
  const rng = new Rng(6);
  const file = path.join(dir, 's.fghc');
  const labels = (n: number) => singleLabels(Array.from({ length: n }, () => rng.int(3)), 3);
  const metadata = withMetadata ? { producer: 'fgh test', model: { sha256: 'ab'.repeat(32), bits: 12 }, listing: { source: 'cub test', count: 10 } } : null;
  await writeCodeStore(file, { codes: randomCodes(rng, 12, 5), labels: labels(5) }, { metadata });
  appendToCodeStore(file, { codes: randomCodes(rng, 12, 3), labels: labels(3), ids: ['a', 'b', 'c'] });
  appendToCodeStore(file, { codes: randomCodes(rng, 12, 2), labels: labels(2) });
  const original = readCodeStore(file);
  t.is(original.header.count, 10);
  t.is(original.header.version, withMetadata ? 2 : 1);
  t.deepEqual(original.metadata, metadata, 'appends keep the metadata');
  const bytes = readFileSync(file);
  const flipped = path.join(dir, 'f.fghc');
  let refused = 0;
  let identical = 0;
  const accepted: string[] = [];
  // With metadata, what is new: the superblocks, the metadata block and the first chunk's header
  // after it (the chunks themselves are the same as without, flipped in full above).
  const flips = withMetadata ? 2 * 64 + Math.ceil(original.header.metadataBytes / 64) * 64 + 64 : bytes.length;
  for (let bit = 0; bit < flips * 8; bit++) {
    const b = Buffer.from(bytes);
    b[bit >> 3]! ^= 1 << (bit & 7);
    writeFileSync(flipped, b);
    let got: StoreContents;
    try {
      got = readCodeStore(flipped);
    } catch (e) {
      if (!(e instanceof FghError)) throw e;
      refused++;
      continue;
    }
    if (contentsEqual(got, original)) identical++;
    else accepted.push(`bit ${bit} (byte ${bit >> 3})`);
  }
  t.deepEqual(accepted, [], 'flips read back as different content');
  t.is(refused + identical, flips * 8);
  // The flips that changed nothing: the inactive slot, chunk padding; most are refused.
  t.true(refused > identical, `${refused} refused, ${identical} identical`);  if (!withMetadata) return;
  const b = Buffer.from(bytes);
  b[128 + 3]! ^= 0x20;
  writeFileSync(flipped, b);
  t.throws(() => readCodeStore(flipped), { instanceOf: FghError, message: `${flipped}: corrupt metadata (checksum mismatch)` });
  // Both superblocks damaged: recovery still finds the metadata, and keeps it.
  const c = Buffer.from(bytes);
  c[30]! ^= 1;
  c[64 + 30]! ^= 1;
  writeFileSync(flipped, c);
  const rec = path.join(dir, 'rec.fghc');
  t.like(await recoverCodeStore(flipped, rec), { items: 10, recorded: null });
  const back = readCodeStore(rec);
  t.true(contentsEqual(back, original), 'the recovered store has the same items and metadata');
});

test('appends take a writer\'s lock: a live holder is named and the store is untouched; a dead holder\'s lock is taken over', async (t) => {
  const dir = tmp(t);
  const rng = new Rng(7);
  const file = path.join(dir, 's.fghc');
  await writeCodeStore(file, { codes: randomCodes(rng, 16, 4) });
  const before = readFileSync(file);
  const holder = spawn('sleep', ['60']);
  t.teardown(() => holder.kill());
  writeFileSync(`${file}.lock`, JSON.stringify({ pid: holder.pid, host: os.hostname(), since: '2026-12-01T00:00:00.000Z', what: 'fgh encode', token: 'x' }));
  t.throws(() => appendToCodeStore(file, { codes: randomCodes(rng, 16, 1) }), {
    instanceOf: FghError,
    message: `${file} is in use by fgh encode (pid ${holder.pid}, since 2026-12-01T00:00:00.000Z): one writer at a time; if no such process runs, delete ${file}.lock`,
  });
  await t.throwsAsync(writeCodeStore(file, { codes: randomCodes(rng, 16, 1) }), { message: /is in use by fgh encode/ });
  t.deepEqual(readFileSync(file), before);
  holder.kill();
  await new Promise((resolve) => holder.once('exit', resolve));
  appendToCodeStore(file, { codes: randomCodes(rng, 16, 1) });
  t.is(readCodeStore(file).header.count, 5);
  t.false(existsSync(`${file}.lock`), 'released after the append');
});
