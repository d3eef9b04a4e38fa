/**
 * The safetensors format (huggingface/safetensors): an 8-byte little-endian header length, a JSON
 * header `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}`, then
 * the raw little-endian tensor bytes, offsets relative to the end of the header.
 *
 * Reading converts every tensor to float32 and records the file's dtype. Writing stores float
 * tensors as F32 and tensors marked `int64` (BN's num_batches_tracked) as I64, so that PyTorch's
 * `load_state_dict` gets the dtypes it expects.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { FghError, errorMessage } from '../util/errors.js';
import { withAtomicPath } from '../util/atomic.js';
import { numel, toFloat32, DTYPE_BYTES, type LoadedTensor, type TorchDtype } from './dtypes.js';

export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const TO_TORCH: Readonly<Record<SafetensorsDtype, TorchDtype>> = {
  F64: 'float64',
  F32: 'float32',
  F16: 'float16',
  BF16: 'bfloat16',
  I64: 'int64',
  I32: 'int32',
  I16: 'int16',
  I8: 'int8',
  U8: 'uint8',
  BOOL: 'bool',
};

/** The safetensors library refuses headers above 100 MB; so do we, before parsing. */
const MAX_HEADER = 100_000_000;

export interface SafetensorsContents {
  /** In file order (by data offset). */
  tensors: Map<string, LoadedTensor>;
  metadata: Record<string, string>;
}

/** A tensor to write: float32 values, stored as I64 when `dtype` is `int64`, else as F32. */
export interface WritableTensor {
  shape: readonly number[];
  data: Float32Array;
  dtype?: TorchDtype;
}

interface HeaderEntry {
  dtype: SafetensorsDtype;
  shape: number[];
  data_offsets: [number, number];
}

function isNonNegInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Parses a whole safetensors file held in memory. `source` prefixes error messages. */
export function parseSafetensors(buf: Uint8Array, source: string): SafetensorsContents {
  const bad = (m: string): never => {
    throw new FghError(`${source}: ${m}`);
  };
  if (buf.length < 8) bad(`truncated: ${buf.length} bytes, not even a safetensors header length`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const headerLen = view.getBigUint64(0, true);
  if (headerLen > BigInt(MAX_HEADER)) bad(`not a safetensors file (header length ${headerLen})`);
  const n = Number(headerLen);
  if (8 + n > buf.length) bad(`truncated: safetensors header needs ${n} bytes, ${buf.length - 8} left`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, 8 + n)));
  } catch (e) {
    bad(`bad safetensors header: ${errorMessage(e)}`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) return bad('bad safetensors header: not a JSON object');
  const dataStart = 8 + n;
  const dataLen = buf.length - dataStart;
  const metadata: Record<string, string> = {};
  const entries: Array<[string, HeaderEntry]> = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null) bad('bad safetensors header: __metadata__ is not an object');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') bad(`bad safetensors header: __metadata__.${k} is not a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    const e = raw as Partial<HeaderEntry> | null;
    if (typeof e !== 'object' || e === null) return bad(`bad safetensors header: entry ${name} is not an object`);
    if (typeof e.dtype !== 'string' || !(e.dtype in TO_TORCH)) bad(`${name}: unsupported dtype ${JSON.stringify(e.dtype)}`);
    if (!Array.isArray(e.shape) || !e.shape.every(isNonNegInt)) bad(`${name}: bad shape ${JSON.stringify(e.shape)}`);
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !isNonNegInt(off[0]) || !isNonNegInt(off[1]) || off[0] > off[1]) bad(`${name}: bad data_offsets ${JSON.stringify(off)}`);
    const [b, end] = off as [number, number];
    const want = numel(e.shape!) * DTYPE_BYTES[TO_TORCH[e.dtype!]];
    if (end - b !== want) bad(`${name}: ${e.dtype} [${e.shape}] needs ${want} bytes, data_offsets give ${end - b}`);
    if (end > dataLen) bad(`truncated: tensor ${name} ends at byte ${end} of the data, which has ${dataLen}`);
    entries.push([name, e as HeaderEntry]);
  }
  entries.sort((x, y) => x[1].data_offsets[0] - y[1].data_offsets[0]);
  const tensors = new Map<string, LoadedTensor>();
  for (const [name, e] of entries) {
    const dtype = TO_TORCH[e.dtype];
    const [b, end] = e.data_offsets;
    const data = toFloat32(buf.subarray(dataStart + b, dataStart + end), dtype, numel(e.shape));
    tensors.set(name, { shape: e.shape, data, dtype });
  }
  return { tensors, metadata };
}

export async function readSafetensors(file: string): Promise<SafetensorsContents> {
  let buf: Buffer;
  try {
    buf = await fsp.readFile(file);
  } catch (e) {
    throw new FghError(`${file}: cannot read: ${errorMessage(e)}`);
  }
  return parseSafetensors(buf, path.basename(file));
}

function storedDtype(t: WritableTensor): 'F32' | 'I64' {
  return t.dtype === 'int64' ? 'I64' : 'F32';
}

/**
 * The file as a list of byte chunks (header, then each tensor's data without copying float32
 * arrays), to be written one after the other.
 */
export function safetensorsChunks(tensors: ReadonlyMap<string, WritableTensor>, metadata: Record<string, string> = { format: 'pt' }): Uint8Array[] {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === '__metadata__') throw new FghError('a tensor may not be named __metadata__');
    const n = numel(t.shape);
    if (t.data.length !== n) throw new FghError(`${name}: ${t.data.length} values for shape [${t.shape}]`);
    const dtype = storedDtype(t);
    let bytes: Uint8Array;
    if (dtype === 'I64') {
      const ints = new BigInt64Array(n);
      for (let i = 0; i < n; i++) {
        const v = t.data[i]!;
        if (!Number.isInteger(v)) throw new FghError(`${name}: int64 tensor holds non-integer ${v}`);
        ints[i] = BigInt(v);
      }
      bytes = new Uint8Array(ints.buffer);
    } else {
      bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    }
    header[name] = { dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes.byteLength] };
    offset += bytes.byteLength;
    chunks.push(bytes);
  }
  let json = JSON.stringify(header);
  // Pad with spaces so that the data starts 8-byte aligned, as the reference writer does.
  const encoder = new TextEncoder();
  const len = encoder.encode(json).length;
  json += ' '.repeat((8 - (len % 8)) % 8);
  const headerBytes = encoder.encode(json);
  const prefix = new Uint8Array(8 + headerBytes.length);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  prefix.set(headerBytes, 8);
  return [prefix, ...chunks];
}

export function encodeSafetensors(tensors: ReadonlyMap<string, WritableTensor>, metadata?: Record<string, string>): Uint8Array {
  const chunks = safetensorsChunks(tensors, metadata);
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** Writes chunks to `file` (not atomically; see writeSafetensors) and fsyncs; returns the size. */
export async function writeChunks(file: string, chunks: Uint8Array[]): Promise<number> {
  const fh = await fsp.open(file, 'w');
  let size = 0;
  try {
    for (const c of chunks) {
      for (let done = 0; done < c.byteLength; ) done += (await fh.write(c, done, c.byteLength - done)).bytesWritten;
      size += c.byteLength;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  return size;
}

/** Writes a safetensors file atomically; returns its size in bytes. */
export async function writeSafetensors(file: string, tensors: ReadonlyMap<string, WritableTensor>, metadata?: Record<string, string>): Promise<number> {
  const chunks = safetensorsChunks(tensors, metadata);
  return withAtomicPath(file, (tmp) => writeChunks(tmp, chunks));
}
