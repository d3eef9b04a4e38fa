import { createHash } from 'node:crypto';
import { closeSync, existsSync, ftruncateSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync, createReadStream } from 'node:fs';
import { promises as fsp } from 'node:fs';
import type { Sample } from '../data/types.js';
import { appendToCodeStore, CodeStoreReader, writeCodeStore, writeCodeStoreFrom, type StoreBatch, type StoreLayout } from '../retrieval/code-store.js';
import { fromPackedBytes } from '../retrieval/codes.js';
import { multiHotLabels, singleLabels, type Labels } from '../retrieval/labels.js';
import { assertWritableOutput, removeStaleTemps, tempNameFor, writeFileAtomic } from '../util/atomic.js';
import { FghError } from '../util/errors.js';
import { encodeNpyHeader } from '../util/npy.js';
import { Progress } from '../util/progress.js';
import { evalLoader } from './eval-loader.js';
import { readModelInfo } from './model-info.js';
import { openSession, type EpName, type EpRequest } from './session.js';
import { resolveSource, type EncodeSource } from './sources.js';
import { killPoint } from '../util/test-hooks.js';
import { acquireLock } from '../util/lock.js';
import { comparableJson, describeRange, encodeProvenance, metadataJson, provenanceOf, type EncodeProvenance, type EpRecord, type ShardRange, type ShardSpec } from './shards.js';

/**
 * `fgh encode`: images -> exported graph (onnxruntime-node) -> code store. Decoding runs ahead of
 * inference in a bounded queue (BatchLoader), results are committed in groups to a work store
 * (OUT.part) that replaces OUT only when the run has finished, so an existing store stays whole
 * until then; a small progress file next to it makes an interrupted run resumable. The run
 * holds OUT's writer lock throughout. The store's metadata records the model, the listing and the
 * execution provider of every run (docs/code-store.md, "Metadata").
 */

export interface EncodeOptions {
  model: string;
  source: EncodeSource;
  out: string;
  /** Also write the tanh features as float32 [N, bits] .npy. */
  features?: string;
  ep?: EpRequest;
  batch?: number;
  resume?: boolean;
  /** Encode only the I-th of N contiguous ranges of the items (see shards.ts). */
  shard?: ShardSpec;
  threads?: number;
  quiet?: boolean;
  /** Items committed per store append (default 2048); also committed at least every 10 s. */
  commitEvery?: number;
  /** Checked after every batch; true stops cleanly after committing (Ctrl-C). */
  shouldStop?: () => boolean;
  /** Called after each commit with the store's item count (tests use it to interrupt runs). */
  onCommit?: (count: number) => void;
  log?: (line: string) => void;
}

export interface EncodeSummary {
  out: string;
  model: string;
  method: string;
  bits: number;
  /**
   * The execution provider the codes were made with (after a kill at the finish, the one the
   * finished run recorded; null when its record, from an older fgh, has none).
   */
  ep: EpName | null;
  /** Why the requested provider was not used, or null. */
  fallback: string | null;
  /** Items in the store. */
  items: number;
  /** Items encoded by this run (less than `items` after a resume). */
  encoded: number;
  skipped: number;
  skippedFile: string | null;
  features: string | null;
  seconds: number;
  imagesPerSecond: number;
  complete: boolean;
  /** The range of the listing this store holds, with --shard. */
  shard: ShardRange | null;
}

interface ProgressFile {
  /** 1: fgh before the work store, which appended to OUT itself. */
  format: 1 | 2;
  modelSha256: string;
  source: string;
  bits: number;
  features: string | null;
  skipped: Array<{ id: string; path: string; reason: string }>;
  /** Set once the features and skip list are final, just before the work store replaces OUT. */
  complete?: boolean;
  /** One per run (a resumed encode has several); absent in files from older fgh. */
  runs?: EncodeRun[];
  /** The listing's fingerprint and the shard (absent in progress files of an older fgh). */
  listing?: string;
  shard?: ShardSpec | null;
}

/** How one run of `fgh encode` computed its codes: kept in the progress file, recorded in the store. */
export interface EncodeRun {
  /** `--ep` as given. */
  requested: EpRequest;
  used: EpName;
  fallback: string | null;
}

const progressPath = (out: string): string => `${out}.encode.json`;
const workPath = (out: string): string => `${out}.part`;
const skippedPath = (out: string): string => `${out}.skipped.tsv`;
/** The sidecar of an older fgh, now in the store's metadata: removed when OUT is replaced. */
const oldSidecarPath = (out: string): string => `${out}.meta.json`;
const featuresPart = (features: string): string => `${features}.part`;

function labelsOf(samples: Sample[], classes: number | null): { layout: StoreLayout['labels']; make: (items: Sample[]) => Labels | null } {
  if (classes === null) return { layout: 'none', make: () => null };
  if (samples.every((s) => s.labels.length === 1)) return { layout: 'single', make: (items) => singleLabels(items.map((s) => s.labels[0]!), classes) };
  return {
    layout: 'multi',
    make: (items) => {
      const hot = new Uint8Array(items.length * classes);
      items.forEach((s, i) => s.labels.forEach((c) => (hot[i * classes + c] = 1)));
      return multiHotLabels(hot, items.length, classes);
    },
  };
}

export async function encode(opts: EncodeOptions): Promise<EncodeSummary> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const started = Date.now();
  const { info, bytes } = readModelInfo(opts.model);
  if (info.method === 'backbone') throw new FghError(`${opts.model} is a plain ${info.arch} feature extractor without codes: encode with a hashing graph (fgh export --onnx --checkpoint)`);
  const batchSize = opts.batch ?? 32;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new FghError(`--batch must be a positive integer, got ${batchSize}`);
  const modelSha256 = createHash('sha256').update(bytes).digest('hex');
  const src = resolveSource(opts.source);
  for (const w of src.warnings) log(`warning: ${w}`);
  // From the whole listing, so that every shard has the layout a single run would have.
  const labels = labelsOf(src.samples, src.classes);
  const metadata = encodeProvenance(modelSha256, info, opts.source, src.samples, opts.shard);
  const shard = metadata.shard;
  const items = shard ? src.samples.slice(shard.first, shard.end) : src.samples;
  if (shard) log(`shard ${shard.index}/${shard.count}: ${describeRange(shard)} of ${src.samples.length}`);

  // Before the model session and the images: an unwritable --out fails at once.
  assertWritableOutput(opts.out, 'file');
  removeStaleTemps(opts.out);
  const unlock = acquireLock(opts.out, 'fgh encode');
  try {
    return await encodeLocked(opts, { log, started, info, bytes, batchSize, modelSha256, src, labels, items, metadata });
  } finally {
    unlock();
  }
}

interface Prepared {
  log: (line: string) => void;
  started: number;
  info: ReturnType<typeof readModelInfo>['info'];
  bytes: Uint8Array;
  batchSize: number;
  modelSha256: string;
  src: ReturnType<typeof resolveSource>;
  labels: ReturnType<typeof labelsOf>;
  /** The items this run encodes: the listing, or the shard's range of it. */
  items: Sample[];
  metadata: EncodeProvenance;
}

async function encodeLocked(opts: EncodeOptions, { log, started, info, bytes, batchSize, modelSha256, src, labels, items, metadata }: Prepared): Promise<EncodeSummary> {
  // Fresh start or resume: what is already in the work store is not encoded again.
  const pfile = progressPath(opts.out);
  const unfinished = existsSync(pfile);
  const shard = metadata.shard ?? null;
  if (!unfinished && opts.resume && existsSync(opts.out)) {
    // A batch system may run a shard's task again after it finished: the same shard is done.
    if (shard && finishedShard(opts.out, metadata)) return finishedSummary(opts, info, shard, started);
    throw new FghError(`${opts.out} is a finished encode (no ${pfile}): nothing to resume`);
  }
  if (unfinished && !opts.resume) throw new FghError(`${opts.out} is an unfinished encode (${pfile} exists): pass --resume to continue it, or delete ${pfile} and ${workPath(opts.out)} to start over`);
  // A run killed after it had finished needs no session, only the replacement of OUT.
  if (unfinished) {
    const state = readProgress(pfile);
    if (state.complete) {
      checkResumable(opts, state, modelSha256, src.describe, shard, metadata.listing.sha256, src.samples.length);
      return finishInterruptedRename(opts, state, info, pfile, started);
    }
  }
  // The execution provider first: a run that cannot start (--ep cuda! without CUDA) touches nothing.
  const opened = await openSession(bytes, opts.ep ?? 'cpu', opts.threads ? { threads: opts.threads } : {});
  if (opened.fallback) log(`note: ${opened.fallback}`);
  const { session, images } = opened;
  const run: EncodeRun = { requested: opts.ep ?? 'cpu', used: opened.ep, fallback: opened.fallback };

  let state: ProgressFile;
  let done = new Set<string>();
  let storeCount = 0;
  const work = workPath(opts.out);
  const layout: StoreLayout = { bits: info.bits, labels: labels.layout, numClasses: src.classes ?? 0 };
  const storeMetadata = () => metadataJson({ ...metadata, execution: execution(state.runs ?? []) });
  const emptyStore = () => writeCodeStore(work, { codes: fromPackedBytes(new Uint8Array(0), 0, info.codeBytes, info.bits), labels: labels.make([]) }, { layout, metadata: storeMetadata() });
  try {
    if (unfinished) {
      state = readProgress(pfile);
      checkResumable(opts, state, modelSha256, src.describe, shard, metadata.listing.sha256, src.samples.length);
      state.runs = [...(state.runs ?? []), run];
      // An encode started by an older fgh appended to OUT itself: it becomes the work store.
      if (state.format === 1 && existsSync(opts.out) && !existsSync(work)) renameSync(opts.out, work);
      state.format = 2;
      // Killed between writing the progress file and creating the work store: nothing was stored yet.
      if (!existsSync(work)) await emptyStore();
      const reader = CodeStoreReader.open(work);
      const stored = reader.readAll();
      reader.close();
      if (stored.header.bits !== info.bits) throw new FghError(`${work} holds ${stored.header.bits}-bit codes, the model makes ${info.bits}`);
      done = new Set(stored.ids);
      for (const s of state.skipped) done.add(s.id);
      storeCount = stored.header.count;
      // The metadata is written with the store: this run's provider joins it in a copy.
      await writeCodeStoreFrom(work, layout, chunksOf(work), { metadata: storeMetadata() });
      if (opts.features) truncateFeatures(opts.features, storeCount, info.bits);
      log(`resuming ${opts.out}: ${storeCount} items stored, ${state.skipped.length} skipped`);
    } else {
      state = { format: 2, modelSha256, source: src.describe, bits: info.bits, features: opts.features ?? null, skipped: [], runs: [run], listing: metadata.listing.sha256, shard: shard && { index: shard.index, count: shard.count } };
      // Declared items without a file are not in the listing: the first shard reports them, once.
      if (!shard || shard.index === 0) for (const m of src.missing) state.skipped.push({ id: m.path, path: m.path, reason: m.reason });
      await writeFileAtomic(pfile, JSON.stringify(state));
      await emptyStore();
      if (opts.features) closeSync(openSync(featuresPart(opts.features), 'w'));
    }
  } catch (e) {
    await session.release();
    throw e;
  }

  const todo = items.filter((s) => !done.has(s.id));
  const bar = new Progress('encode', items.length, { unit: 'images', quiet: opts.quiet ?? false });
  bar.tick(items.length - todo.length);

  const loader = evalLoader(todo, info, batchSize, { skipBadImages: true, prefetch: 3 });

  const pending = { codes: [] as Uint8Array[], features: [] as Float32Array[], samples: [] as Sample[] };
  let encoded = 0;
  let lastCommit = Date.now();
  let skippedSeen = 0;
  const byPath = new Map(todo.map((t) => [t.path, t]));
  const commitEvery = opts.commitEvery ?? 2048;

  const commit = async (): Promise<void> => {
    // New skips are recorded even when no item is pending.
    for (; skippedSeen < loader.skipped.length; skippedSeen++) {
      const s = loader.skipped[skippedSeen]!;
      const sample = byPath.get(s.path);
      state.skipped.push({ id: sample?.id ?? s.path, path: s.path, reason: s.reason });
      log(`skipped ${s.path}: ${s.reason}`);
    }
    const n = pending.samples.length;
    if (n > 0) {
      const packed = concatBytes(pending.codes);
      if (opts.features) appendFeatures(opts.features, concatFloats(pending.features));
      appendToCodeStore(work, { codes: fromPackedBytes(packed, n, info.codeBytes, info.bits), labels: labels.make(pending.samples), ids: pending.samples.map((s) => s.id) });
      storeCount += n;
    }
    await writeFileAtomic(pfile, JSON.stringify(state));
    pending.codes = [];
    pending.features = [];
    pending.samples = [];
    lastCommit = Date.now();
    opts.onCommit?.(storeCount);
    killPoint('commit');
  };

  let stopped = false;
  try {
    for await (const batch of loader) {
      const out = await session.run({ images: images(batch.images, batch.shape) });
      const codes = out.codes;
      const feats = out.features;
      if (!codes || !feats) throw new FghError(`${opts.model}: the graph has no 'codes'/'features' outputs`);
      pending.codes.push(Uint8Array.from(codes.data as Uint8Array));
      if (opts.features) pending.features.push(Float32Array.from(feats.data as Float32Array));
      pending.samples.push(...batch.indices.map((i) => todo[i]!));
      encoded += batch.indices.length;
      bar.tick(batch.indices.length + (loader.skipped.length - skippedSeen));
      if (pending.samples.length >= commitEvery || Date.now() - lastCommit > 10_000 || loader.skipped.length > skippedSeen) await commit();
      if (opts.shouldStop?.()) {
        stopped = true;
        break;
      }
    }
    await commit();
  } finally {
    bar.finish();
    await session.release();
  }

  const seconds = (Date.now() - started) / 1000;
  const summary: EncodeSummary = {
    out: opts.out,
    model: opts.model,
    method: info.method,
    bits: info.bits,
    ep: opened.ep,
    fallback: opened.fallback,
    items: storeCount,
    encoded,
    skipped: state.skipped.length,
    skippedFile: null,
    features: null,
    seconds,
    imagesPerSecond: encoded / seconds,
    complete: !stopped,
    shard,
  };
  if (stopped) return summary;

  // Finished: the features become a real .npy, skips are listed, then the work store replaces OUT
  // and the progress file goes. A kill in between leaves `complete` in the progress file, and
  // --resume only finishes the replacement.
  if (opts.features) {
    await finishFeatures(opts.features, storeCount, info.bits);
    summary.features = opts.features;
  }
  if (state.skipped.length) {
    await writeFileAtomic(skippedPath(opts.out), `path\treason\n${state.skipped.map((s) => `${s.path}\t${s.reason}`).join('\n')}\n`);
    summary.skippedFile = skippedPath(opts.out);
  } else {
    rmSync(skippedPath(opts.out), { force: true });
  }
  await writeFileAtomic(pfile, JSON.stringify({ ...state, complete: true }));
  killPoint('finish');
  renameSync(work, opts.out);
  rmSync(oldSidecarPath(opts.out), { force: true });
  rmSync(pfile, { force: true });
  return summary;
}

/** The runs as the store records them (progress files of an older fgh hold more per run). */
const execution = (runs: readonly EncodeRun[]): EpRecord[] => runs.map((r) => ({ requested: r.requested, used: r.used, fallback: r.fallback }));

/** A store's items chunk by chunk, for copying it with new metadata; memory is one chunk. */
async function* chunksOf(file: string): AsyncGenerator<StoreBatch> {
  const r = CodeStoreReader.open(file);
  try {
    for (const c of r.chunks()) yield { codes: c.codes, labels: c.labels, ids: c.ids };
  } finally {
    r.close();
  }
}

/** Refuses a --resume whose model, source, --features, --shard or listing differ from the run's start. */
function checkResumable(opts: EncodeOptions, state: ProgressFile, modelSha256: string, source: string, shard: ShardRange | null, listing: string, itemCount: number): void {
  if (state.modelSha256 !== modelSha256) throw new FghError(`${opts.out} was started with a different model; --resume needs the same ${opts.model}`);
  if (state.source !== source) throw new FghError(`${opts.out} was started on "${state.source}", not "${source}"`);
  if ((state.features ?? null) !== (opts.features ?? null)) throw new FghError(`${opts.out} was started with --features ${state.features ?? '(none)'}; resume with the same`);
  const had = state.shard ?? null;
  if ((had === null) !== (shard === null) || (had && shard && (had.index !== shard.index || had.count !== shard.count))) {
    throw new FghError(`${opts.out} was started ${had ? `as --shard ${had.index}/${had.count}` : 'without --shard'}; resume with the same`);
  }
  if (state.listing !== undefined && state.listing !== listing) {
    throw new FghError(`${opts.out}: the listing of "${source}" changed since the encode started (it has ${itemCount} items now); delete ${progressPath(opts.out)} and ${workPath(opts.out)} to start over`);
  }
}

/**
 * --resume of a run killed after it had finished but before its work store replaced OUT: no
 * session is made; the summary reports the provider the finished run recorded (its last run).
 */
async function finishInterruptedRename(opts: EncodeOptions, state: ProgressFile, info: Prepared['info'], pfile: string, started: number): Promise<EncodeSummary> {
  const work = workPath(opts.out);
  if (existsSync(work)) renameSync(work, opts.out);
  const r = CodeStoreReader.open(opts.out);
  const items = r.header.count;
  r.close();
  rmSync(oldSidecarPath(opts.out), { force: true });
  rmSync(pfile, { force: true });
  const seconds = (Date.now() - started) / 1000;
  const last = state.runs?.at(-1);
  return {
    out: opts.out, model: opts.model, method: info.method, bits: info.bits, ep: last?.used ?? null, fallback: last?.fallback ?? null, items, encoded: 0, skipped: state.skipped.length,
    skippedFile: state.skipped.length ? skippedPath(opts.out) : null, features: state.features, seconds, imagesPerSecond: 0, complete: true,
    shard: provenanceOf(r.metadata, opts.out)?.shard ?? null,
  };
}

/** Whether OUT is a finished store of exactly this shard (same model, listing, range, fgh). */
function finishedShard(out: string, want: EncodeProvenance): boolean {
  const r = CodeStoreReader.open(out);
  try {
    const had = provenanceOf(r.metadata, out);
    return had !== null && had.shard !== undefined && JSON.stringify(had.shard) === JSON.stringify(want.shard) && comparableJson(had) === comparableJson(want);
  } finally {
    r.close();
  }
}

function finishedSummary(opts: EncodeOptions, info: Prepared['info'], shard: ShardRange, started: number): EncodeSummary {
  const r = CodeStoreReader.open(opts.out);
  const items = r.header.count;
  r.close();
  const skippedFile = existsSync(skippedPath(opts.out)) ? skippedPath(opts.out) : null;
  const skipped = skippedFile ? readFileSync(skippedFile, 'utf8').trim().split('\n').length - 1 : 0;
  return {
    out: opts.out, model: opts.model, method: info.method, bits: info.bits, ep: 'cpu', fallback: null, items, encoded: 0, skipped, skippedFile,
    features: opts.features && existsSync(opts.features) ? opts.features : null, seconds: (Date.now() - started) / 1000, imagesPerSecond: 0, complete: true, shard,
  };
}

function readProgress(file: string): ProgressFile {
  try {
    const p = JSON.parse(readFileSync(file, 'utf8')) as ProgressFile;
    if ((p.format !== 1 && p.format !== 2) || typeof p.modelSha256 !== 'string' || !Array.isArray(p.skipped)) throw new Error('unknown format');
    return p;
  } catch (e) {
    throw new FghError(`${file}: unreadable encode progress (${e instanceof Error ? e.message : String(e)}); delete it and the store to start over`);
  }
}

function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function concatFloats(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function appendFeatures(file: string, rows: Float32Array): void {
  const fd = openSync(featuresPart(file), 'a');
  try {
    writeSync(fd, new Uint8Array(rows.buffer, rows.byteOffset, rows.byteLength));
  } finally {
    closeSync(fd);
  }
}

/** Features rows beyond the store's committed count belong to an uncommitted group: drop them. */
function truncateFeatures(file: string, count: number, bits: number): void {
  const part = featuresPart(file);
  const want = count * bits * 4;
  if (!existsSync(part) && want === 0) closeSync(openSync(part, 'w'));
  const have = existsSync(part) ? statSync(part).size : -1;
  if (have < want) throw new FghError(`${part}: holds ${Math.max(0, have) / (bits * 4)} feature rows but the store has ${count}; delete the store to start over`);
  const fd = openSync(part, 'r+');
  try {
    ftruncateSync(fd, want);
  } finally {
    closeSync(fd);
  }
}

/** Header + the raw rows, written to a temporary file and renamed into place. */
async function finishFeatures(file: string, count: number, bits: number): Promise<void> {
  const part = featuresPart(file);
  const tmp = tempNameFor(file);
  try {
    const fh = await fsp.open(tmp, 'w');
    try {
      await fh.write(encodeNpyHeader('f4', [count, bits]));
      for await (const chunk of createReadStream(part)) await fh.write(chunk as Buffer);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, file);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
  rmSync(part, { force: true });
}

/** Encodes a few image files in memory (fgh search --model): packed codes in argument order. */
export async function encodeFiles(modelFile: string, files: string[], opts: { ep?: EpRequest; batch?: number } = {}): Promise<{ bits: number; packed: Uint8Array; codeBytes: number }> {
  const { info, bytes } = readModelInfo(modelFile);
  if (info.method === 'backbone') throw new FghError(`${modelFile} is a plain feature extractor without codes`);
  for (const f of files) if (!existsSync(f)) throw new FghError(`${f}: no such file`);
  const samples: Sample[] = files.map((f) => ({ path: f, labels: [], id: f }));
  const loader = evalLoader(samples, info, opts.batch ?? 32);
  const { session, images, fallback } = await openSession(bytes, opts.ep ?? 'cpu');
  if (fallback) process.stderr.write(`note: ${fallback}\n`);
  const packed = new Uint8Array(files.length * info.codeBytes);
  try {
    for await (const batch of loader) {
      const out = await session.run({ images: images(batch.images, batch.shape) });
      const codes = out.codes!.data as Uint8Array;
      batch.indices.forEach((i, j) => packed.set(codes.subarray(j * info.codeBytes, (j + 1) * info.codeBytes), i * info.codeBytes));
    }
  } finally {
    await session.release();
  }
  return { bits: info.bits, packed, codeBytes: info.codeBytes };
}
