import { createHash } from 'node:crypto';
import type { Sample } from '../data/types.js';
import type { ModelInfo } from './model-info.js';
import type { EncodeSource } from './sources.js';
import { packageVersion } from '../util/version.js';
import type { JsonValue, StoreMetadata } from '../retrieval/code-store.js';
import { FghError } from '../util/errors.js';

/**
 * Sharded encoding: `fgh encode --shard I/N` encodes the I-th of N contiguous ranges of the items
 * in the listing's own order, and records in its store what `fgh codes merge` checks (the model,
 * the listing, the range). Contiguous ranges, not every N-th item: a merge is then a concatenation
 * in shard order, each shard's store is already in the final order, and shards of different N
 * still tile the listing where their ranges meet (a slow shard I/N re-run as 2I/2N and 2I+1/2N).
 */

export interface ShardSpec {
  index: number;
  count: number;
}

/** Items [first, end) of a listing of `total` items. */
export interface ShardRange extends ShardSpec {
  first: number;
  end: number;
}

export function parseShard(v: string): ShardSpec {
  const m = /^(\d+)\/(\d+)$/.exec(v.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(count) || count < 1 || index >= count) {
    throw new FghError(`--shard must be I/N with 0 <= I < N (e.g. 0/4), got "${v}"`);
  }
  return { index, count };
}

/** Balanced contiguous ranges: shard I holds items floor(I*T/N) up to floor((I+1)*T/N); sizes differ by at most one. */
export function shardRange(spec: ShardSpec, total: number): ShardRange {
  const at = (i: number): number => Number((BigInt(i) * BigInt(total)) / BigInt(spec.count));
  return { ...spec, first: at(spec.index), end: at(spec.index + 1) };
}

/**
 * A fingerprint of what is encoded, independent of where the dataset is mounted: the item count,
 * then each item's id and labels in order (JSON, so that no id can run into the next).
 */
export function listingSha256(samples: readonly Sample[]): string {
  const h = createHash('sha256');
  h.update(`fgh listing v1\n${samples.length}\n`);
  for (const s of samples) h.update(`${JSON.stringify([s.id, s.labels])}\n`);
  return h.digest('hex');
}

/** What fgh encode records in the stores it writes (docs/code-store.md, "Metadata"). */
export interface EncodeProvenance {
  producer: string;
  model: { sha256: string; method: string; arch: string; bits: number; input_size: number; transform: string };
  listing: { source: string; count: number; sha256: string };
  /** Only in the store of `--shard I/N`. */
  shard?: ShardRange;
  /** The execution provider of each run that encoded items (absent in stores of an older fgh). */
  execution?: EpRecord[];
}

/** One run of fgh encode: `--ep` as given, the provider it used and why it fell back. */
export interface EpRecord {
  requested: string;
  used: string;
  fallback: string | null;
  /** In a merged store: the shard whose run this was, `I/N`. */
  shard?: string;
}

/** What a run of fgh encode records: `samples` is the whole listing, before the shard's slice. */
export function encodeProvenance(modelSha256: string, info: ModelInfo, source: EncodeSource, samples: readonly Sample[], shard?: ShardSpec): EncodeProvenance {
  const range = shard ? shardRange(shard, samples.length) : null;
  return {
    producer: `fgh ${packageVersion()}`,
    model: { sha256: modelSha256, method: info.method, arch: info.arch, bits: info.bits, input_size: info.inputSize, transform: info.transform },
    // Without the dataset's root: shards may run where it is mounted elsewhere.
    listing: { source: source.kind === 'images' ? 'images' : `${source.dataset} ${source.split}`, count: samples.length, sha256: listingSha256(samples) },
    ...(range && { shard: range }),
  };
}

export function metadataJson(m: EncodeProvenance): StoreMetadata {
  return m as unknown as { [key: string]: JsonValue };
}

/**
 * What must agree between shards and between a finished shard and its re-run: everything but the
 * range and the execution providers (a shard on CUDA and one on CPU compute the same codes).
 */
export function comparableJson(m: EncodeProvenance): string {
  return JSON.stringify(metadataJson({ ...m, shard: undefined, execution: undefined }));
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The encode metadata of a store, or null if it has none (fgh codes import, an older fgh encode). */
export function provenanceOf(meta: StoreMetadata | null, file: string): EncodeProvenance | null {
  if (!meta || !isObject(meta.model) || !isObject(meta.listing)) return null;
  const m = meta as unknown as EncodeProvenance;
  const ok =
    typeof m.model.sha256 === 'string' && typeof m.listing.sha256 === 'string' && Number.isSafeInteger(m.listing.count) &&
    (m.shard === undefined || (isObject(m.shard) && [m.shard.index, m.shard.count, m.shard.first, m.shard.end].every(Number.isSafeInteger))) &&
    (m.execution === undefined || (Array.isArray(m.execution) && m.execution.every((e) => isObject(e) && typeof e.requested === 'string' && typeof e.used === 'string')));
  if (!ok) throw new FghError(`${file}: unreadable encode metadata`);
  return m;
}

/** "items 3-5", "no items". */
export function describeRange(r: Pick<ShardRange, 'first' | 'end'>): string {
  return r.end <= r.first ? 'no items' : r.end - r.first === 1 ? `item ${r.first}` : `items ${r.first}-${r.end - 1}`;
}
