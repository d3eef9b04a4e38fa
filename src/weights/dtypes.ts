/**
 * Raw tensor bytes (little-endian, as PyTorch and safetensors store them) to contiguous float32,
 * including strided views of a storage.
 */
import os from 'node:os';
import type { TorchTensor } from '../models/state-dict.js';
import { FghError } from '../util/errors.js';
import { DTYPE_BYTES, type TorchDtype } from './pickle.js';

export { DTYPE_BYTES, type TorchDtype };

/**
 * A tensor read from a weights file: values converted to float32, `dtype` saying what the file
 * held. Integer tensors (BN's `num_batches_tracked`, int64) are kept and marked, not dropped;
 * their float32 values are exact up to 2^24.
 */
export interface LoadedTensor extends TorchTensor {
  dtype: TorchDtype;
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

let halfTable: Float32Array | null = null;

/** IEEE half -> float32 for all 65536 bit patterns (exact: every half is a float32). */
function halfToFloat(): Float32Array {
  if (halfTable) return halfTable;
  halfTable = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    halfTable[h] = exp === 0 ? sign * frac * 2 ** -24 : exp === 31 ? (frac ? NaN : sign * Infinity) : sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return halfTable;
}

function assertLittleEndianHost(): void {
  if (os.endianness() !== 'LE') throw new FghError('reading weights needs a little-endian machine');
}

/** The first `count` elements of `bytes` (of type `dtype`) as a new float32 array. */
export function toFloat32(bytes: Uint8Array, dtype: TorchDtype, count: number): Float32Array {
  assertLittleEndianHost();
  const size = DTYPE_BYTES[dtype];
  if (bytes.byteLength < count * size) throw new Error(`toFloat32: ${bytes.byteLength} bytes hold fewer than ${count} ${dtype}`);
  // Typed-array views need an aligned offset; copy when the source is not aligned.
  // (Buffer#slice does not copy, hence set().)
  let aligned = bytes;
  if (bytes.byteOffset % size !== 0) {
    aligned = new Uint8Array(count * size);
    aligned.set(bytes.subarray(0, count * size));
  }
  const buf = aligned.buffer;
  const off = aligned.byteOffset;
  switch (dtype) {
    case 'float32':
      return new Float32Array(buf, off, count).slice();
    case 'float64':
      return Float32Array.from(new Float64Array(buf, off, count));
    case 'float16': {
      const table = halfToFloat();
      const src = new Uint16Array(buf, off, count);
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = table[src[i]!]!;
      return out;
    }
    case 'bfloat16': {
      // bfloat16 is the upper half of a float32.
      const src = new Uint16Array(buf, off, count);
      const out = new Uint32Array(count);
      for (let i = 0; i < count; i++) out[i] = src[i]! << 16;
      return new Float32Array(out.buffer);
    }
    case 'int64': {
      const src = new BigInt64Array(buf, off, count);
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = Number(src[i]!);
      return out;
    }
    case 'int32':
      return Float32Array.from(new Int32Array(buf, off, count));
    case 'int16':
      return Float32Array.from(new Int16Array(buf, off, count));
    case 'int8':
      return Float32Array.from(new Int8Array(buf, off, count));
    case 'uint8':
      return Float32Array.from(new Uint8Array(buf, off, count));
    case 'bool':
      return Float32Array.from(new Uint8Array(buf, off, count), (v) => (v ? 1 : 0));
  }
}

function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] !== 1 && stride[d] !== expected) return false;
    expected *= shape[d]!;
  }
  return true;
}

/**
 * The tensor `storage[offset + sum(i_d * stride_d)]` over `shape`, as contiguous float32.
 * `storage` holds `storageNumel` elements of `dtype`; `what` names the tensor in errors.
 */
export function stridedToFloat32(
  storage: Uint8Array,
  dtype: TorchDtype,
  storageNumel: number,
  offset: number,
  shape: readonly number[],
  stride: readonly number[],
  what: string,
): Float32Array {
  const n = numel(shape);
  if (n === 0) return new Float32Array(0);
  let last = offset;
  for (let d = 0; d < shape.length; d++) last += (shape[d]! - 1) * stride[d]!;
  if (last >= storageNumel) throw new FghError(`${what}: tensor [${shape}] at offset ${offset} with stride [${stride}] reaches element ${last} of a storage of ${storageNumel}`);
  const size = DTYPE_BYTES[dtype];
  if (isContiguous(shape, stride)) return toFloat32(storage.subarray(offset * size, (offset + n) * size), dtype, n);
  // A view (transpose, slice): convert the span it touches, then gather in row-major order.
  const span = toFloat32(storage.subarray(offset * size, (last + 1) * size), dtype, last + 1 - offset);
  const out = new Float32Array(n);
  const nd = shape.length;
  const idx = new Array<number>(nd).fill(0);
  let p = 0;
  for (let i = 0; i < n; i++) {
    out[i] = span[p]!;
    for (let d = nd - 1; d >= 0; d--) {
      idx[d] = idx[d]! + 1;
      p += stride[d]!;
      if (idx[d]! < shape[d]!) break;
      p -= stride[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
  return out;
}
