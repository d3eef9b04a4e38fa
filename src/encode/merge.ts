import { existsSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import path from 'node:path';
import { CodeStoreReader, writeCodeStoreFrom, type StoreBatch, type StoreHeader, type StoreLayout } from '../retrieval/code-store.js';
import { assertWritableOutput, writeFileAtomic } from '../util/atomic.js';
import { FghError } from '../util/errors.js';
import { Progress } from '../util/progress.js';
import { comparableJson, describeRange, provenanceOf, metadataJson, shardRange, type EncodeProvenance, type EpRecord, type ShardRange } from './shards.js';

/**
 * `fgh codes merge`: the stores of `fgh encode --shard I/N` joined into the store a single encode
 * writes. Every shard must come from the same model, bits, listing and fgh; their ranges must tile
 * the listing with no gap, overlap or repeat. Shards are copied chunk by chunk in listing order,
 * so memory is bounded by one chunk, and the result is written atomically under its lock.
 */

export interface MergeSummary {
  out: string;
  shards: number;
  items: number;
  bits: number;
  /** Items of the listing the shards skipped (unreadable or missing images). */
  skipped: number;
  skippedFile: string | null;
  listing: EncodeProvenance['listing'];
}

interface Shard {
  file: string;
  header: StoreHeader;
  meta: EncodeProvenance;
  range: ShardRange;
}

const skippedPath = (store: string): string => `${store}.skipped.tsv`;
const short = (sha: string): string => sha.slice(0, 12);
const name = (r: ShardRange): string => `shard ${r.index}/${r.count}`;

/** Refuses what is not a finished shard store, naming the file. */
function openShard(file: string): Shard {
  if (file.endsWith('.part') && existsSync(`${file.slice(0, -'.part'.length)}.encode.json`)) {
    throw new FghError(`${file}: the work store of an unfinished encode; finish it (fgh encode ... --resume), then merge ${file.slice(0, -'.part'.length)}`);
  }
  if (existsSync(`${file}.encode.json`)) {
    throw new FghError(`${file}: its encode is unfinished or still running (${file}.encode.json exists); finish it with fgh encode ... --resume, then merge`);
  }
  const r = CodeStoreReader.open(file);
  try {
    const meta = provenanceOf(r.metadata, file);
    if (!meta) throw new FghError(`${file}: no encode metadata (not written by fgh encode --shard): only shard stores can be merged`);
    if (!meta.shard) throw new FghError(`${file}: a whole encode, not a shard (encoded without --shard)`);
    const want = shardRange(meta.shard, meta.listing.count);
    if (want.first !== meta.shard.first || want.end !== meta.shard.end) throw new FghError(`${file}: corrupt shard metadata (${name(meta.shard)} of ${meta.listing.count} items is ${describeRange(want)}, it records ${describeRange(meta.shard)})`);
    if (meta.model.bits !== r.header.bits) throw new FghError(`${file}: corrupt encode metadata (a ${meta.model.bits}-bit model, ${r.header.bits}-bit codes)`);
    if (r.header.count > meta.shard.end - meta.shard.first) throw new FghError(`${file}: holds ${r.header.count} items, more than its ${name(meta.shard)} (${describeRange(meta.shard)})`);
    return { file, header: r.header, meta, range: meta.shard };
  } finally {
    r.close();
  }
}

/** The first difference between two shards that makes them unmergeable, as one line. */
function mismatch(a: Shard, b: Shard): string | null {
  const [x, y] = [a.meta, b.meta];
  if (a.header.bits !== b.header.bits) return `${a.file} holds ${a.header.bits}-bit codes, ${b.file} ${b.header.bits}-bit: the shards must come from the same model`;
  if (x.model.sha256 !== y.model.sha256) return `${a.file} and ${b.file} come from different models (graph sha256 ${short(x.model.sha256)}... and ${short(y.model.sha256)}...)`;
  if (x.listing.sha256 !== y.listing.sha256) {
    const l = (m: EncodeProvenance) => `"${m.listing.source}", ${m.listing.count} items, sha256 ${short(m.listing.sha256)}...`;
    return `${a.file} and ${b.file} were encoded from different listings (${l(x)}; ${l(y)})`;
  }
  if (a.header.labels !== b.header.labels || a.header.numClasses !== b.header.numClasses) return `${a.file} and ${b.file} have different label layouts`;
  // Anything else recorded (the fgh that encoded, the graph's metadata) must agree too; the
  // execution providers may differ (see mergedExecution).
  const rest = comparableJson;
  if (rest(x) !== rest(y)) return `${a.file} and ${b.file} differ in their encode metadata (${rest(x)} vs ${rest(y)})`;
  return null;
}

/** Checks that the shards tile the listing; returns them in listing order. */
function tile(shards: Shard[], total: number): Shard[] {
  const byIndex = new Map<string, Shard>();
  for (const s of shards) {
    const key = `${s.range.index}/${s.range.count}`;
    const other = byIndex.get(key);
    if (other) throw new FghError(`${other.file} and ${s.file} are both ${name(s.range)} (${describeRange(s.range)})`);
    byIndex.set(key, s);
  }
  const counts = new Set(shards.map((s) => s.range.count));
  if (counts.size === 1) {
    const n = shards[0]!.range.count;
    const missing = Array.from({ length: n }, (_, i) => i).filter((i) => !byIndex.has(`${i}/${n}`));
    if (missing.length) {
      const list = missing.slice(0, 5).map((i) => `${i}/${n} (${describeRange(shardRange({ index: i, count: n }, total))})`).join(', ');
      throw new FghError(`missing shard${missing.length > 1 ? 's' : ''} ${list}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''} of ${total} items: merge needs all ${n} (${shards.length} given)`);
    }
  }
  // Mixed N (a shard re-split finer): the ranges themselves must meet end to end.
  const sorted = [...shards].sort((a, b) => a.range.first - b.range.first || a.range.end - b.range.end);
  let pos = 0;
  let prev: Shard | null = null;
  for (const s of sorted) {
    if (s.range.end === s.range.first) continue;
    const where = (p: Shard) => `${p.file} (${name(p.range)}, ${describeRange(p.range)})`;
    if (s.range.first > pos) throw new FghError(`no shard holds ${describeRange({ first: pos, end: s.range.first })} of ${total}: a gap ${prev ? `between ${where(prev)} and` : 'before'} ${where(s)}`);
    if (s.range.first < pos) throw new FghError(`${where(prev!)} and ${where(s)} overlap`);
    pos = s.range.end;
    prev = s;
  }
  if (pos < total) throw new FghError(`no shard holds ${describeRange({ first: pos, end: total })} of ${total}: a gap after ${prev ? prev.file : 'every shard given'}`);
  return sorted;
}

/**
 * The shards' runs in listing order, each naming its shard: one list, as a resumed run's store
 * has one (docs/code-store.md). None if a shard of an older fgh recorded none: a partial list
 * would read as the whole story.
 */
function mergedExecution(ordered: Shard[]): { execution?: EpRecord[] } {
  if (ordered.some((s) => s.meta.execution === undefined)) return {};
  return { execution: ordered.flatMap((s) => s.meta.execution!.map((e) => ({ requested: e.requested, used: e.used, fallback: e.fallback, shard: `${s.range.index}/${s.range.count}` }))) };
}

export async function mergeShards(files: string[], out: string, opts: { quiet?: boolean } = {}): Promise<MergeSummary> {
  if (files.length === 0) throw new FghError('give the shard stores to merge');
  const seen = new Map<string, string>();
  const identity = (f: string): string => (existsSync(f) ? realpathSync(f) : path.resolve(f));
  for (const f of files) {
    const id = identity(f);
    const first = seen.get(id);
    if (first !== undefined) throw new FghError(first === f ? `${f} is given twice` : `${first} and ${f} are the same file`);
    seen.set(id, f);
  }
  if (seen.has(identity(out))) throw new FghError(`--out ${out} is one of the shards: merge into a new file`);
  assertWritableOutput(out, 'file');

  const shards = files.map(openShard);
  for (const s of shards.slice(1)) {
    const why = mismatch(shards[0]!, s);
    if (why) throw new FghError(why);
  }
  const { meta, header } = shards[0]!;
  const ordered = tile(shards, meta.listing.count);

  const skippedRows = ordered.flatMap((s) => (existsSync(skippedPath(s.file)) ? readFileSync(skippedPath(s.file), 'utf8').split('\n').slice(1).filter((l) => l !== '') : []));
  const total = ordered.reduce((a, s) => a + s.header.count, 0);
  const bar = new Progress('merge', total, { unit: 'codes', quiet: opts.quiet ?? false });
  async function* batches(): AsyncGenerator<StoreBatch> {
    for (const s of ordered) {
      const r = CodeStoreReader.open(s.file);
      try {
        for (const c of r.chunks()) yield { codes: c.codes, labels: c.labels, ids: c.ids };
      } finally {
        r.close();
      }
    }
  }
  const layout: StoreLayout = { bits: header.bits, labels: header.labels, numClasses: header.numClasses };
  const whole: EncodeProvenance = { producer: meta.producer, model: meta.model, listing: meta.listing, ...mergedExecution(ordered) };
  try {
    await writeCodeStoreFrom(out, layout, batches(), { metadata: metadataJson(whole), onBatch: (n) => bar.tick(n) });
  } finally {
    bar.finish();
  }
  // After the store: a shard found damaged midway leaves OUT and its skip list as they were.
  if (skippedRows.length) await writeFileAtomic(skippedPath(out), `path\treason\n${skippedRows.join('\n')}\n`);
  else rmSync(skippedPath(out), { force: true });
  return { out, shards: ordered.length, items: total, bits: header.bits, skipped: skippedRows.length, skippedFile: skippedRows.length ? skippedPath(out) : null, listing: meta.listing };
}
