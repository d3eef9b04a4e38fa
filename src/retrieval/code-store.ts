/**
 * The code store: one versioned file of packed codes, labels and item ids, with atomic appends
 * and checksums. The format is specified in docs/code-store.md; keep the two in step.
 */
import { closeSync, fstatSync, fsyncSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import path from 'node:path';
import { FghError } from '../util/errors.js';
import { withAtomicPath } from '../util/atomic.js';
import { acquireLock } from '../util/lock.js';
import { openForReading } from '../util/fs-errors.js';
import { allocCodes, bytesPerCode, checkBits, codeStride, concatCodes, sliceCodes, type Codes } from './codes.js';
import { labelWords, sliceLabels, toMultiLabels, type Labels } from './labels.js';
import { crc32 } from './crc32.js';

/** Stores with metadata are version 2; stores without it are still written as version 1. */
export const STORE_VERSION = 2;
const VERSION_PLAIN = 1;
const MAGIC = 'FGHCODES';
const CHUNK_MAGIC = 'FGHC';
const SUPER = 64;
const DATA_START = 128;
/** Metadata is small (who wrote the store, from what); a larger length means a corrupt header. */
const MAX_METADATA = 1 << 20;
const CHUNK_HEADER = 64;
/** Items per chunk written, so that streaming readers need bounded memory. */
export const CHUNK_ITEMS = 65536;

export type LabelLayout = 'none' | 'single' | 'multi';
const LAYOUT_CODE: Record<LabelLayout, number> = { none: 0, single: 1, multi: 2 };
const LAYOUTS: LabelLayout[] = ['none', 'single', 'multi'];

/** A JSON value, as held in a store's metadata. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
/** What a writer recorded about the store (fgh encode: the model, the listing, the shard); never changes. */
export type StoreMetadata = { [key: string]: JsonValue };

export interface StoreHeader {
  version: number;
  labels: LabelLayout;
  bits: number;
  stride: number;
  /** 0 = unknown (single labels only). */
  numClasses: number;
  generation: number;
  count: number;
  /** Committed file length. */
  end: number;
  chunks: number;
  /** Bytes of UTF-8 JSON metadata at offset 128 (version 2; 0 = none), and their CRC-32. */
  metadataBytes: number;
  metadataCrc: number;
}

/** Where chunk 0 starts: after the superblocks and the metadata, at a multiple of 64. */
const dataStart = (h: Pick<StoreHeader, 'metadataBytes'>): number => DATA_START + align(h.metadataBytes, 64);

/** Items to write or append; ids default to the items' store indices as decimal strings. */
export interface StoreBatch {
  codes: Codes;
  labels?: Labels | null;
  ids?: string[];
}

export interface StoreChunk {
  /** Store index of the chunk's first item. */
  first: number;
  codes: Codes;
  labels: Labels | null;
  ids: string[];
}

export interface StoreContents {
  header: StoreHeader;
  metadata: StoreMetadata | null;
  codes: Codes;
  labels: Labels | null;
  ids: string[];
}

const align = (n: number, a: number) => Math.ceil(n / a) * a;

function ascii(bytes: Uint8Array, at: number, n: number): string {
  return String.fromCharCode(...bytes.subarray(at, at + n));
}

function putAscii(bytes: Uint8Array, at: number, s: string): void {
  for (let i = 0; i < s.length; i++) bytes[at + i] = s.charCodeAt(i);
}

function u64(dv: DataView, at: number): number {
  const v = dv.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) return Number.POSITIVE_INFINITY;
  return Number(v);
}

// ------------------------------------------------------------------------------------------
// Superblock

function encodeSuper(h: StoreHeader): Uint8Array {
  const b = new Uint8Array(SUPER);
  const dv = new DataView(b.buffer);
  putAscii(b, 0, MAGIC);
  dv.setUint16(8, h.version, true);
  dv.setUint16(10, LAYOUT_CODE[h.labels], true);
  dv.setUint32(12, h.bits, true);
  dv.setUint32(16, h.stride, true);
  dv.setUint32(20, h.numClasses, true);
  dv.setBigUint64(24, BigInt(h.generation), true);
  dv.setBigUint64(32, BigInt(h.count), true);
  dv.setBigUint64(40, BigInt(h.end), true);
  dv.setUint32(48, h.chunks, true);
  dv.setUint32(52, h.metadataBytes, true);
  dv.setUint32(56, h.metadataCrc, true);
  dv.setUint32(60, crc32(b.subarray(0, 60)), true);
  return b;
}

type SuperParse = { ok: true; header: StoreHeader } | { ok: false; why: string };

function decodeSuper(b: Uint8Array): SuperParse {
  if (ascii(b, 0, 8) !== MAGIC) return { ok: false, why: 'magic' };
  const dv = new DataView(b.buffer, b.byteOffset, SUPER);
  if (dv.getUint32(60, true) !== crc32(b.subarray(0, 60))) return { ok: false, why: 'crc' };
  const layout = LAYOUTS[dv.getUint16(10, true)];
  const version = dv.getUint16(8, true);
  return {
    ok: true,
    header: {
      version,
      labels: layout ?? ('invalid' as LabelLayout),
      bits: dv.getUint32(12, true),
      stride: dv.getUint32(16, true),
      numClasses: dv.getUint32(20, true),
      generation: u64(dv, 24),
      count: u64(dv, 32),
      end: u64(dv, 40),
      chunks: dv.getUint32(48, true),
      // Reserved (zero) in version 1.
      metadataBytes: version >= 2 ? dv.getUint32(52, true) : 0,
      metadataCrc: version >= 2 ? dv.getUint32(56, true) : 0,
    },
  };
}

const SLOT_NAMES = ['A', 'B'];

/**
 * Reads and checks the superblocks of an open file; returns the one in charge. One damaged slot
 * is only harmless when the file ends where the other slot says: a damaged slot that had been in
 * charge would have committed items past that end (every commit adds a chunk), and falling back
 * to the older slot would silently drop them, so then the store is refused and `recoverCodeStore`
 * (`fgh codes recover`) rescues every complete chunk. `damage` says what was found.
 */
function readHeader(fd: number, file: string): { header: StoreHeader; size: number; slot: number; damage: string | null } {
  const size = fstatSync(fd).size;
  const head = new Uint8Array(DATA_START);
  const got = readSync(fd, head, 0, DATA_START, 0);
  // Either slot's magic identifies the format (one may be torn).
  if (got < 8 || (ascii(head, 0, 8) !== MAGIC && (got < SUPER + 8 || ascii(head, SUPER, 8) !== MAGIC))) {
    throw new FghError(`${file}: not an fgh code store (no FGHCODES magic)`);
  }
  if (got < DATA_START) throw new FghError(`${file}: truncated: ${size} bytes, a code store header alone has ${DATA_START}`);
  const slots = [decodeSuper(head.subarray(0, SUPER)), decodeSuper(head.subarray(SUPER, 2 * SUPER))];
  let best = -1;
  slots.forEach((s, i) => {
    if (s.ok && (best < 0 || s.header.generation > (slots[best] as { header: StoreHeader }).header.generation)) best = i;
  });
  const why = slots.map((s) => (s.ok ? 'ok' : s.why === 'magic' ? 'no magic' : 'checksum mismatch'));
  if (best < 0) {
    throw new FghError(`${file}: corrupt code store header (slot A: ${why[0]}, slot B: ${why[1]}); \`fgh codes recover\` may rescue its items`);
  }
  const h = (slots[best] as { header: StoreHeader }).header;
  if (h.version !== VERSION_PLAIN && h.version !== STORE_VERSION) {
    throw new FghError(`${file}: code store format version ${h.version} is not supported (this fgh reads versions ${VERSION_PLAIN} and ${STORE_VERSION}); upgrade fgh`);
  }
  if ((h.labels as string) === 'invalid') throw new FghError(`${file}: corrupt code store header (unknown label layout)`);
  if (h.bits < 1 || h.bits > 65535 || h.stride !== codeStride(h.bits)) {
    throw new FghError(`${file}: corrupt code store header (bits ${h.bits}, stride ${h.stride})`);
  }
  if (h.labels === 'multi' && h.numClasses < 1) throw new FghError(`${file}: corrupt code store header (multi-hot labels without a class count)`);
  if (h.metadataBytes > MAX_METADATA) throw new FghError(`${file}: corrupt code store header (${h.metadataBytes} bytes of metadata)`);
  if (!Number.isFinite(h.end) || h.end < dataStart(h) || h.end % 64 !== 0 || !Number.isFinite(h.count)) {
    throw new FghError(`${file}: corrupt code store header (end ${h.end}, count ${h.count})`);
  }
  if (size < h.end) {
    throw new FghError(`${file}: truncated: the header records ${h.end.toLocaleString('en-US')} bytes, the file has ${size.toLocaleString('en-US')}`);
  }
  let damage: string | null = null;
  const other = 1 - best;
  if (!slots[other]!.ok) {
    const bad = `superblock slot ${SLOT_NAMES[other]} is damaged (${why[other]})`;
    if (size > h.end) {
      throw new FghError(
        `${file}: ${bad} and ${(size - h.end).toLocaleString('en-US')} bytes follow the end that slot ${SLOT_NAMES[best]} records (${h.count.toLocaleString('en-US')} items): ` +
          `they may be items the damaged slot committed, so the store is not read; \`fgh codes recover ${file} --out NEW\` writes every complete item to NEW`,
      );
    }
    damage = `${bad}; slot ${SLOT_NAMES[best]} records the same items (nothing follows its end), and the next append rewrites the damaged slot`;
  }
  return { header: h, size, slot: best, damage };
}

/** The metadata block of a version 2 store, checked against the superblock's length and CRC. */
function readMetadata(fd: number, file: string, h: StoreHeader): StoreMetadata | null {
  if (h.metadataBytes === 0) return null;
  const bytes = new Uint8Array(h.metadataBytes);
  if (readSync(fd, bytes, 0, bytes.length, DATA_START) !== bytes.length) throw new FghError(`${file}: truncated metadata`);
  if (crc32(bytes) !== h.metadataCrc) throw new FghError(`${file}: corrupt metadata (checksum mismatch)`);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw new FghError(`${file}: corrupt metadata (not UTF-8 JSON)`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new FghError(`${file}: corrupt metadata (not a JSON object)`);
  return value as StoreMetadata;
}

function encodeMetadata(metadata: StoreMetadata | null): Uint8Array {
  if (!metadata) return new Uint8Array(0);
  const bytes = new TextEncoder().encode(JSON.stringify(metadata));
  if (bytes.length > MAX_METADATA) throw new FghError(`code store metadata of ${bytes.length} bytes exceeds ${MAX_METADATA}`);
  return bytes;
}

// ------------------------------------------------------------------------------------------
// Chunks

interface ChunkSizes {
  codes: number;
  labels: number;
  offsets: number;
  payload: number;
}

function chunkSizes(h: Pick<StoreHeader, 'stride' | 'labels' | 'numClasses'>, n: number, idsBytes: number): ChunkSizes {
  const codes = n * h.stride;
  const labels = h.labels === 'none' ? 0 : h.labels === 'single' ? n * 4 : n * labelWords(h.numClasses) * 4;
  const offsets = (n + 1) * 4;
  const payload = align(codes, 8) + align(labels, 8) + align(offsets, 8) + idsBytes;
  return { codes, labels, offsets, payload };
}

function encodeChunk(h: StoreHeader, first: number, codes: Codes, labels: Labels | null, ids: string[]): Uint8Array {
  const n = codes.count;
  const enc = new TextEncoder();
  const idBytes = ids.map((s) => enc.encode(s));
  const idsBytes = idBytes.reduce((a, b) => a + b.length, 0);
  if (idsBytes > 0xffffffff) throw new FghError('item ids of one chunk exceed 4 GiB');
  const sz = chunkSizes(h, n, idsBytes);
  const out = new Uint8Array(align(CHUNK_HEADER + sz.payload, 64));
  let at = CHUNK_HEADER;
  out.set(codes.data.subarray(0, sz.codes), at);
  at += align(sz.codes, 8);
  if (labels) {
    const src = labels.kind === 'single' ? labels.ids : labels.sets;
    out.set(new Uint8Array(src.buffer, src.byteOffset, sz.labels), at);
  }
  at += align(sz.labels, 8);
  const offs = new DataView(out.buffer, at, sz.offsets);
  let o = 0;
  for (let i = 0; i < n; i++) {
    offs.setUint32(4 * i, o, true);
    o += idBytes[i]!.length;
  }
  offs.setUint32(4 * n, o, true);
  at += align(sz.offsets, 8);
  for (const b of idBytes) {
    out.set(b, at);
    at += b.length;
  }
  const dv = new DataView(out.buffer);
  putAscii(out, 0, CHUNK_MAGIC);
  dv.setUint32(4, n, true);
  dv.setBigUint64(8, BigInt(first), true);
  dv.setUint32(16, idsBytes, true);
  dv.setUint32(20, sz.payload, true);
  dv.setUint32(24, crc32(out.subarray(CHUNK_HEADER, CHUNK_HEADER + sz.payload)), true);
  dv.setUint32(60, crc32(out.subarray(0, 60)), true);
  return out;
}

/** Parses and checks one chunk whose header is at `pos`; returns it and where the next starts. */
function readChunk(fd: number, file: string, h: StoreHeader, pos: number, expectFirst: number, index: number): { chunk: StoreChunk; next: number } {
  const where = `${file}: chunk ${index} (offset ${pos})`;
  if (pos + CHUNK_HEADER > h.end) throw new FghError(`${where}: the header promises more chunks than the file holds`);
  const head = new Uint8Array(CHUNK_HEADER);
  if (readSync(fd, head, 0, CHUNK_HEADER, pos) !== CHUNK_HEADER) throw new FghError(`${where}: truncated chunk header`);
  const dv = new DataView(head.buffer);
  if (ascii(head, 0, 4) !== CHUNK_MAGIC) throw new FghError(`${where}: corrupt (no chunk magic)`);
  if (dv.getUint32(60, true) !== crc32(head.subarray(0, 60))) throw new FghError(`${where}: corrupt chunk header (checksum mismatch)`);
  const n = dv.getUint32(4, true);
  const first = u64(dv, 8);
  const idsBytes = dv.getUint32(16, true);
  const payloadBytes = dv.getUint32(20, true);
  if (first !== expectFirst) throw new FghError(`${where}: corrupt (starts at item ${first}, expected ${expectFirst})`);
  const sz = chunkSizes(h, n, idsBytes);
  if (sz.payload !== payloadBytes) throw new FghError(`${where}: corrupt (payload of ${payloadBytes} bytes, its counts need ${sz.payload})`);
  const next = align(pos + CHUNK_HEADER + payloadBytes, 64);
  if (next > h.end) throw new FghError(`${where}: runs past the committed end of the store (${next} > ${h.end})`);
  const payload = new Uint8Array(payloadBytes);
  if (readSync(fd, payload, 0, payloadBytes, pos + CHUNK_HEADER) !== payloadBytes) throw new FghError(`${where}: truncated chunk data`);
  if (dv.getUint32(24, true) !== crc32(payload)) throw new FghError(`${where}: corrupt data (checksum mismatch)`);

  let at = 0;
  const codes: Codes = { bits: h.bits, count: n, stride: h.stride, data: payload.subarray(0, sz.codes) };
  checkPadding(codes, where);
  at += align(sz.codes, 8);
  let labels: Labels | null = null;
  if (h.labels === 'single') {
    const ids = new Int32Array(payload.buffer, at, n);
    for (let i = 0; i < n; i++) {
      if (ids[i]! < -1 || (h.numClasses > 0 && ids[i]! >= h.numClasses)) throw new FghError(`${where}: item ${first + i} has class id ${ids[i]} (classes: ${h.numClasses})`);
    }
    labels = { kind: 'single', count: n, numClasses: h.numClasses, ids };
  } else if (h.labels === 'multi') {
    const words = labelWords(h.numClasses);
    labels = { kind: 'multi', count: n, numClasses: h.numClasses, words, sets: new Uint32Array(payload.buffer, at, n * words) };
  }
  at += align(sz.labels, 8);
  const offs = new DataView(payload.buffer, at, sz.offsets);
  at += align(sz.offsets, 8);
  const idData = payload.subarray(at, at + idsBytes);
  const dec = new TextDecoder('utf-8', { fatal: true });
  const ids: string[] = new Array<string>(n);
  let prev = offs.getUint32(0, true);
  if (prev !== 0 || offs.getUint32(4 * n, true) !== idsBytes) throw new FghError(`${where}: corrupt item id offsets`);
  for (let i = 0; i < n; i++) {
    const e = offs.getUint32(4 * (i + 1), true);
    if (e < prev || e > idsBytes) throw new FghError(`${where}: corrupt item id offsets at item ${first + i}`);
    try {
      ids[i] = dec.decode(idData.subarray(prev, e));
    } catch {
      throw new FghError(`${where}: item ${first + i} has an id that is not valid UTF-8`);
    }
    prev = e;
  }
  return { chunk: { first, codes, labels, ids }, next };
}

/** Padding bits and bytes must be zero, or distances would count them. */
function checkPadding(codes: Codes, where: string): void {
  const used = bytesPerCode(codes.bits);
  const r = codes.bits % 8;
  const tailMask = r === 0 ? 0 : 0xff >> r;
  for (let i = 0; i < codes.count; i++) {
    const base = i * codes.stride;
    let bad = codes.data[base + used - 1]! & tailMask;
    for (let b = used; b < codes.stride; b++) bad |= codes.data[base + b]!;
    if (bad) throw new FghError(`${where}: corrupt code ${i} (non-zero padding bits)`);
  }
}

// ------------------------------------------------------------------------------------------
// Reading

export class CodeStoreReader {
  /** Bytes after the committed end: the remains of an unfinished append (ignored). */
  readonly uncommittedBytes: number;
  private closed = false;

  private constructor(
    private readonly fd: number,
    readonly file: string,
    readonly header: StoreHeader,
    size: number,
    /** A damaged but harmless superblock slot (see readHeader), for `fgh codes info` to report. */
    readonly damage: string | null,
    /** What the writer recorded (version 2), or null. */
    readonly metadata: StoreMetadata | null,
  ) {
    this.uncommittedBytes = size - header.end;
  }

  static open(file: string): CodeStoreReader {
    const fd = openForReading(file);
    try {
      const { header, size, damage } = readHeader(fd, file);
      return new CodeStoreReader(fd, file, header, size, damage, readMetadata(fd, file, header));
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** The chunks in order, each checked; memory is bounded by one chunk. */
  *chunks(): Generator<StoreChunk> {
    let pos = dataStart(this.header);
    let items = 0;
    for (let c = 0; c < this.header.chunks; c++) {
      const { chunk, next } = readChunk(this.fd, this.file, this.header, pos, items, c);
      items += chunk.codes.count;
      pos = next;
      yield chunk;
    }
    if (items !== this.header.count) throw new FghError(`${this.file}: corrupt (the chunks hold ${items} items, the header says ${this.header.count})`);
    if (pos !== this.header.end) throw new FghError(`${this.file}: corrupt (the chunks end at ${pos}, the header says ${this.header.end})`);
  }

  readAll(): StoreContents {
    return { header: this.header, metadata: this.metadata, ...joinChunks(this.header, [...this.chunks()]) };
  }

  close(): void {
    if (!this.closed) closeSync(this.fd);
    this.closed = true;
  }
}

/** Consecutive chunks (from item 0) as one set of codes, labels and ids. */
function joinChunks(h: Pick<StoreHeader, 'bits' | 'labels' | 'numClasses'>, parts: StoreChunk[]): Omit<StoreContents, 'header' | 'metadata'> {
  const count = parts.reduce((a, p) => a + p.codes.count, 0);
  const codes = parts.length === 1 ? parts[0]!.codes : parts.length ? concatCodes(parts.map((p) => p.codes), h.bits) : allocCodes(h.bits, 0);
  const ids = parts.length === 1 ? parts[0]!.ids : parts.flatMap((p) => p.ids);
  let labels: Labels | null = null;
  if (h.labels === 'single') {
    const all = new Int32Array(count);
    parts.forEach((p) => all.set((p.labels as Labels & { kind: 'single' }).ids, p.first));
    labels = { kind: 'single', count, numClasses: h.numClasses, ids: all };
  } else if (h.labels === 'multi') {
    const words = labelWords(h.numClasses);
    const all = new Uint32Array(count * words);
    parts.forEach((p) => all.set((p.labels as Labels & { kind: 'multi' }).sets, p.first * words));
    labels = { kind: 'multi', count, numClasses: h.numClasses, words, sets: all };
  }
  return { codes, labels, ids };
}

export function readCodeStore(file: string): StoreContents {
  const r = CodeStoreReader.open(file);
  try {
    return r.readAll();
  } finally {
    r.close();
  }
}

// ------------------------------------------------------------------------------------------
// Writing

export interface StoreLayout {
  bits: number;
  labels: LabelLayout;
  /** Required for multi-hot labels; for single ids, 0 = unknown. */
  numClasses: number;
}

/** The label layout a batch implies. */
export function layoutOf(batch: StoreBatch): StoreLayout {
  const l = batch.labels ?? null;
  return { bits: batch.codes.bits, labels: l ? l.kind : 'none', numClasses: l ? l.numClasses : 0 };
}

/** Checks a batch against the store layout; returns its labels in the store's layout. */
function conform(layout: StoreLayout, batch: StoreBatch, file: string): Labels | null {
  const n = batch.codes.count;
  if (batch.codes.bits !== layout.bits) throw new FghError(`${file}: the store holds ${layout.bits}-bit codes, the new items have ${batch.codes.bits} bits`);
  if (batch.codes.stride !== codeStride(layout.bits)) throw new Error('code store: codes not in the canonical stride');
  if (batch.ids && batch.ids.length !== n) throw new FghError(`${file}: ${n} codes but ${batch.ids.length} ids`);
  const l = batch.labels ?? null;
  if (layout.labels === 'none') {
    if (l) throw new FghError(`${file}: the store has no labels, the new items do`);
    return null;
  }
  if (!l) throw new FghError(`${file}: the store has ${layout.labels} labels, the new items have none`);
  if (l.count !== n) throw new FghError(`${file}: ${n} codes but ${l.count} labels`);
  if (layout.labels === 'single') {
    if (l.kind !== 'single') throw new FghError(`${file}: the store has single class ids, the new items have multi-hot labels`);
    if (layout.numClasses > 0) {
      for (let i = 0; i < n; i++) if (l.ids[i]! >= layout.numClasses) throw new FghError(`${file}: class id ${l.ids[i]} is beyond the store's ${layout.numClasses} classes`);
    }
    return l;
  }
  if (l.numClasses > layout.numClasses) throw new FghError(`${file}: the new items have ${l.numClasses} classes, the store ${layout.numClasses}`);
  return toMultiLabels(l, layout.numClasses);
}

function writeAll(fd: number, bytes: Uint8Array, pos: number): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, pos + done);
}

/** Writes chunks for `batch` at `pos`; returns the new end and chunk count. */
function writeChunks(fd: number, h: StoreHeader, batch: StoreBatch, labels: Labels | null, pos: number, chunkItems: number): { end: number; chunks: number } {
  const n = batch.codes.count;
  let chunks = 0;
  for (let s = 0; s < n; s += chunkItems) {
    const e = Math.min(n, s + chunkItems);
    const ids = batch.ids ? batch.ids.slice(s, e) : Array.from({ length: e - s }, (_, i) => String(h.count + s + i));
    const bytes = encodeChunk(h, h.count + s, sliceCodes(batch.codes, s, e), labels ? sliceLabels(labels, s, e) : null, ids);
    writeAll(fd, bytes, pos);
    pos += bytes.length;
    chunks++;
  }
  return { end: pos, chunks };
}

function emptyHeader(layout: StoreLayout, metadata: Uint8Array = new Uint8Array(0)): StoreHeader {
  const meta = { metadataBytes: metadata.length, metadataCrc: metadata.length ? crc32(metadata) : 0 };
  return {
    version: metadata.length ? STORE_VERSION : VERSION_PLAIN, labels: layout.labels, bits: layout.bits, stride: codeStride(layout.bits), numClasses: layout.numClasses,
    generation: 1, count: 0, end: dataStart(meta), chunks: 0, ...meta,
  };
}

/**
 * A whole store as bytes, for small stores written as part of something else (a checkpoint's
 * learned database codes); `writeCodeStore` streams large ones. `name` only labels errors.
 */
export function codeStoreBytes(batch: StoreBatch, name: string): Uint8Array {
  const layout = layoutOf(batch);
  checkBits(layout.bits);
  const labels = conform(layout, batch, name);
  const h = emptyHeader(layout);
  const parts: Uint8Array[] = [];
  const n = batch.codes.count;
  for (let s = 0; s < n; s += CHUNK_ITEMS) {
    const e = Math.min(n, s + CHUNK_ITEMS);
    const ids = batch.ids ? batch.ids.slice(s, e) : Array.from({ length: e - s }, (_, i) => String(s + i));
    parts.push(encodeChunk(h, s, sliceCodes(batch.codes, s, e), labels ? sliceLabels(labels, s, e) : null, ids));
  }
  const end = parts.reduce((a, p) => a + p.length, DATA_START);
  const out = new Uint8Array(end);
  const sb = encodeSuper({ ...h, count: n, end, chunks: parts.length });
  out.set(sb, 0);
  out.set(sb, SUPER);
  let pos = DATA_START;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

/**
 * Writes a new store (atomically: a temporary file renamed into place). With no items it creates
 * an empty store to append to; `layout` then says what the items will be. `metadata` (a JSON
 * object) makes it a version 2 store.
 */
export async function writeCodeStore(file: string, batch: StoreBatch, opts: { layout?: StoreLayout; chunkItems?: number; metadata?: StoreMetadata | null } = {}): Promise<StoreHeader> {
  return writeCodeStoreFrom(file, opts.layout ?? layoutOf(batch), [batch], opts);
}

/**
 * Writes a new store from batches that arrive one at a time (a merge of stores): memory is bounded
 * by one batch. Atomic and locked as `writeCodeStore`; `onBatch` sees each batch's size once written.
 */
export async function writeCodeStoreFrom(
  file: string,
  layout: StoreLayout,
  batches: Iterable<StoreBatch> | AsyncIterable<StoreBatch>,
  opts: { chunkItems?: number; metadata?: StoreMetadata | null; onBatch?: (items: number) => void } = {},
): Promise<StoreHeader> {
  checkBits(layout.bits);
  const metadata = encodeMetadata(opts.metadata ?? null);
  const chunkItems = opts.chunkItems ?? CHUNK_ITEMS;
  // Replacing a store another process is appending to would lose its appends.
  const unlock = acquireLock(file, 'a writer of this code store');
  try {
    return await withAtomicPath(file, async (tmp) => {
      const fd = openSync(tmp, 'w');
      try {
        let h = emptyHeader(layout, metadata);
        // Padded with zeros to the first chunk, so that an empty store ends at a multiple of 64 too.
        const block = new Uint8Array(h.end - DATA_START);
        block.set(metadata);
        writeAll(fd, block, DATA_START);
        for await (const batch of batches) {
          const labels = conform(layout, batch, file);
          const w = writeChunks(fd, h, batch, labels, h.end, chunkItems);
          h = { ...h, count: h.count + batch.codes.count, end: w.end, chunks: h.chunks + w.chunks };
          opts.onBatch?.(batch.codes.count);
        }
        const sb = encodeSuper(h);
        writeAll(fd, sb, 0);
        writeAll(fd, sb, SUPER);
        fsyncSync(fd);
        return h;
      } finally {
        closeSync(fd);
      }
    });
  } finally {
    unlock();
  }
}

/**
 * Appends items: they either all land or, after a crash, the store is the previous one (see
 * docs/code-store.md, "Appending"). Returns the new header.
 */
export function appendToCodeStore(file: string, batch: StoreBatch, opts: { chunkItems?: number } = {}): StoreHeader {
  let fd: number;
  try {
    fd = openSync(file, 'r+');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FghError(code === 'ENOENT' ? `${file}: no such file` : code === 'EISDIR' ? `${file}: is a directory, not a code store` : `${file}: cannot open for appending (${code ?? String(e)})`);
  }
  let unlock: (() => void) | null = null;
  try {
    unlock = acquireLock(file, 'an append to this code store');
    const { header: h, size, slot } = readHeader(fd, file);
    const labels = conform(h, batch, file);
    if (size > h.end) ftruncateSync(fd, h.end);
    if (batch.codes.count === 0) return h;
    let w: { end: number; chunks: number };
    try {
      w = writeChunks(fd, h, batch, labels, h.end, opts.chunkItems ?? CHUNK_ITEMS);
      fsyncSync(fd);
    } catch (e) {
      // Not committed: give the space back (a full disk is the usual cause).
      try {
        ftruncateSync(fd, h.end);
      } catch {
        /* the next append truncates it */
      }
      const code = (e as NodeJS.ErrnoException).code;
      if (code) throw new FghError(`${file}: the append failed (${code === 'ENOSPC' ? 'no space left on the device' : code}); the store still holds its ${h.count.toLocaleString('en-US')} items`, { cause: e });
      throw e;
    }
    const next: StoreHeader = { ...h, generation: h.generation + 1, count: h.count + batch.codes.count, end: w.end, chunks: h.chunks + w.chunks };
    writeAll(fd, encodeSuper(next), (1 - slot) * SUPER);
    fsyncSync(fd);
    return next;
  } finally {
    closeSync(fd);
    unlock?.();
  }
}

export interface RecoveryReport {
  /** Items written to the new store. */
  items: number;
  chunks: number;
  /** Items the superblock in charge recorded (null: neither slot was readable). */
  recorded: number | null;
  /** Bytes after the last complete chunk that could not be used. */
  droppedBytes: number;
  /** Why the scan stopped there, if it did before the end of the file. */
  stoppedBy: string | null;
}

/**
 * Rescues a store whose superblocks cannot be trusted: the layout from a readable slot (or, with
 * both damaged, from whichever slot's fields make chunk 0 check out), then every chunk from the
 * start that passes all checks, in order, written as a new store at `out`. Chunks are
 * self-checking (magic, CRCs, item continuity), so nothing unchecked is kept.
 */
export async function recoverCodeStore(file: string, out: string): Promise<RecoveryReport> {
  if (path.resolve(file) === path.resolve(out)) throw new FghError(`${out}: recover into a new file, not over the damaged store`);
  const fd = openForReading(file);
  try {
    const size = fstatSync(fd).size;
    const head = new Uint8Array(DATA_START);
    if (readSync(fd, head, 0, DATA_START, 0) < DATA_START) throw new FghError(`${file}: ${size} bytes: too short to hold any items`);
    const parsed = [0, 1].map((i) => decodeSuper(head.subarray(i * SUPER, (i + 1) * SUPER)));
    const valid = parsed.filter((p): p is { ok: true; header: StoreHeader } => p.ok).sort((a, b) => b.header.generation - a.header.generation);
    const candidates: StoreHeader[] = valid.length ? [valid[0]!.header] : [0, 1].map((i) => rawSuper(head.subarray(i * SUPER, (i + 1) * SUPER))).filter((c): c is StoreHeader => c !== null);
    const recorded = valid.length ? valid[0]!.header.count : null;
    let best: { header: StoreHeader; chunks: StoreChunk[]; end: number; stoppedBy: string | null } | null = null;
    for (const cand of candidates) {
      // Every chunk up to the (64-aligned) end of the file is a candidate.
      const h: StoreHeader = { ...cand, end: align(size, 64) };
      const chunks: StoreChunk[] = [];
      let pos = dataStart(cand);
      let items = 0;
      let stoppedBy: string | null = null;
      while (pos + CHUNK_HEADER <= size) {
        try {
          const { chunk, next } = readChunk(fd, file, h, pos, items, chunks.length);
          chunks.push(chunk);
          items += chunk.codes.count;
          pos = next;
        } catch (e) {
          stoppedBy = e instanceof FghError ? e.message.replace(`${file}: `, '') : String(e);
          break;
        }
      }
      if (!best || chunks.length > best.chunks.length) best = { header: cand, chunks, end: pos, stoppedBy };
    }
    if (!best) throw new FghError(`${file}: neither superblock slot says what the codes are (bits, labels): nothing can be recovered`);
    const { header: h, chunks } = best;
    const layout: StoreLayout = { bits: h.bits, labels: h.labels, numClasses: h.numClasses };
    const { codes, labels, ids } = joinChunks(h, chunks);
    // The metadata is kept only where its checksum holds.
    let metadata: StoreMetadata | null = null;
    try {
      metadata = readMetadata(fd, file, h);
    } catch {
      /* dropped */
    }
    await writeCodeStore(out, { codes, labels, ids }, { layout, metadata });
    return { items: codes.count, chunks: chunks.length, recorded, droppedBytes: Math.max(0, size - best.end), stoppedBy: best.end < size ? best.stoppedBy : null };
  } finally {
    closeSync(fd);
  }
}

/** A superblock's fields without its CRC check, for recovery when both slots are damaged. */
function rawSuper(b: Uint8Array): StoreHeader | null {
  const dv = new DataView(b.buffer, b.byteOffset, SUPER);
  const labels = LAYOUTS[dv.getUint16(10, true)];
  const bits = dv.getUint32(12, true);
  if (!labels || bits < 1 || bits > 65535 || dv.getUint32(16, true) !== codeStride(bits)) return null;
  const version = dv.getUint16(8, true);
  const metadataBytes = version >= 2 ? dv.getUint32(52, true) : 0;
  if (metadataBytes > MAX_METADATA) return null;
  const meta = { metadataBytes, metadataCrc: version >= 2 ? dv.getUint32(56, true) : 0 };
  return { version, labels, bits, stride: codeStride(bits), numClasses: dv.getUint32(20, true), generation: 0, count: 0, end: dataStart(meta), chunks: 0, ...meta };
}

/** Human summary for `fgh codes info`. */
export function describeLayout(h: StoreHeader): string {
  const labels = h.labels === 'none' ? 'no labels' : h.labels === 'single' ? `class ids${h.numClasses ? ` (${h.numClasses} classes)` : ''}` : `multi-hot labels (${h.numClasses} classes)`;
  return `${h.count} items, ${h.bits}-bit codes, ${labels}`;
}
