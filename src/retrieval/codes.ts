/**
 * Packed binary codes. The file contract (cli.md) is "packed uint8 [N, ceil(bits/8)], most
 * significant bit first, bit = 1 iff feature > 0, zero padded". In memory (and in the code store)
 * every code is additionally padded with zero bytes to a whole number of machine words, the
 * `stride`, so that a database can be read as Uint32 words (codes of <= 32 bits) or 64-bit words
 * (longer codes) with no copy and no per-item alignment work. Padding bits are always zero, so
 * they never contribute to a Hamming distance.
 */
import { FghError } from '../util/errors.js';
import { isFloatDtype, npyToNumbers, type NpyArray } from '../util/npy.js';

export interface Codes {
  bits: number;
  count: number;
  /** Bytes per code in `data`: codeStride(bits). */
  stride: number;
  /** count * stride bytes. */
  data: Uint8Array;
}

export const MAX_BITS = 65535;

/** Bytes of one code in the packed uint8 contract. */
export function bytesPerCode(bits: number): number {
  return Math.ceil(bits / 8);
}

/** Bytes of one code in memory and in the store: one 32-bit word, or whole 64-bit words. */
export function codeStride(bits: number): number {
  checkBits(bits);
  return bits <= 32 ? 4 : Math.ceil(bits / 64) * 8;
}

export function checkBits(bits: number): void {
  if (!Number.isInteger(bits) || bits < 1 || bits > MAX_BITS) throw new FghError(`code length must be an integer in 1..${MAX_BITS}, got ${bits}`);
}

export function allocCodes(bits: number, count: number): Codes {
  const stride = codeStride(bits);
  return { bits, count, stride, data: new Uint8Array(count * stride) };
}

/** The mask of used bits in the last byte of a code (MSB first). */
function lastByteMask(bits: number): number {
  const r = bits % 8;
  return r === 0 ? 0xff : (0xff << (8 - r)) & 0xff;
}

/**
 * Packs row-major [count, bits] values: bit = 1 iff value > 0 (so ±1 codes, tanh features and
 * {0,1} all pack as the contract says; NaN packs as 0).
 */
export function packSigns(values: ArrayLike<number>, count: number, bits: number): Codes {
  if (values.length !== count * bits) throw new Error(`packSigns: ${values.length} values for ${count} x ${bits}`);
  const codes = allocCodes(bits, count);
  const { data, stride } = codes;
  for (let i = 0; i < count; i++) {
    const row = i * bits;
    const out = i * stride;
    for (let b = 0; b < bits; b++) {
      if (values[row + b]! > 0) data[out + (b >> 3)]! |= 0x80 >> (b & 7);
    }
  }
  return codes;
}

/**
 * Copies packed uint8 rows of `rowBytes` bytes into a Codes of `bits` bits; bits beyond `bits`
 * in the last used byte (and whole bytes beyond ceil(bits/8)) are dropped.
 */
export function fromPackedBytes(bytes: Uint8Array, count: number, rowBytes: number, bits: number): Codes {
  const used = bytesPerCode(bits);
  if (used > rowBytes) throw new FghError(`${bits} bits need ${used} bytes per code, the rows have ${rowBytes}`);
  if (bytes.length !== count * rowBytes) throw new Error(`fromPackedBytes: ${bytes.length} bytes for ${count} x ${rowBytes}`);
  const codes = allocCodes(bits, count);
  const mask = lastByteMask(bits);
  const { data, stride } = codes;
  for (let i = 0; i < count; i++) {
    data.set(bytes.subarray(i * rowBytes, i * rowBytes + used), i * stride);
    data[i * stride + used - 1]! &= mask;
  }
  return codes;
}

/** The packed uint8 contract layout [count, ceil(bits/8)]. */
export function toPackedBytes(codes: Codes): Uint8Array {
  const used = bytesPerCode(codes.bits);
  const out = new Uint8Array(codes.count * used);
  for (let i = 0; i < codes.count; i++) out.set(codes.data.subarray(i * codes.stride, i * codes.stride + used), i * used);
  return out;
}

/** Unpacks to row-major [count, bits] of 0/1. */
export function unpackBits(codes: Codes): Uint8Array {
  const { bits, count, stride, data } = codes;
  const out = new Uint8Array(count * bits);
  for (let i = 0; i < count; i++) {
    for (let b = 0; b < bits; b++) out[i * bits + b] = (data[i * stride + (b >> 3)]! >> (7 - (b & 7))) & 1;
  }
  return out;
}

/** Code `i` as its packed bytes (a view, no copy). */
export function codeAt(codes: Codes, i: number): Uint8Array {
  return codes.data.subarray(i * codes.stride, i * codes.stride + bytesPerCode(codes.bits));
}

/** A view of items [start, end). */
export function sliceCodes(codes: Codes, start: number, end: number): Codes {
  return { bits: codes.bits, count: end - start, stride: codes.stride, data: codes.data.subarray(start * codes.stride, end * codes.stride) };
}

export function concatCodes(parts: Codes[], bits: number): Codes {
  const total = parts.reduce((a, p) => a + p.count, 0);
  const out = allocCodes(bits, total);
  let at = 0;
  for (const p of parts) {
    if (p.bits !== bits) throw new FghError(`cannot join ${p.bits}-bit codes with ${bits}-bit codes`);
    out.data.set(p.data.subarray(0, p.count * p.stride), at);
    at += p.count * p.stride;
  }
  return out;
}

/** How a .npy array holds codes. `auto` follows cli.md: uint8 = packed, other types = one value per bit. */
export type CodeLayout = 'auto' | 'packed' | 'bits';

/**
 * Codes from a 2-D .npy array: packed uint8 [N, bytes] (with `bits` <= 8 * bytes, default all),
 * float [N, bits] (bit = value > 0: ±1 codes or raw features), or integer/bool [N, bits] holding
 * {0,1} or {-1,1}. With `expectBits` (a database's length), a uint8 [N, bits] array of 0/1 is
 * recognised as one value per bit when that cannot be a packed layout. `bitsFrom` says where an
 * expected `bits` came from when it is not the user's --bits (e.g. "db.fghc holds 12-bit codes"),
 * so that a mismatch names it.
 */
export function codesFromNpy(arr: NpyArray, file: string, opts: { bits?: number; layout?: CodeLayout; bitsFrom?: string } = {}): Codes {
  if (arr.shape.length !== 2) {
    throw new FghError(`${file}: codes must be a 2-D array [N, bits] or packed [N, bytes], got shape (${arr.shape.join(', ')})`);
  }
  const [count, width] = arr.shape as [number, number];
  if (width === 0) throw new FghError(`${file}: codes have zero columns`);
  let layout = opts.layout ?? 'auto';
  if (layout === 'auto') {
    layout = arr.dtype === 'u1' ? 'packed' : 'bits';
    // uint8 [N, bits] of 0/1 (numpy's default for bool-like ints): packed would need ceil(bits/8) columns.
    if (layout === 'packed' && opts.bits !== undefined && width === opts.bits && width !== bytesPerCode(opts.bits)) layout = 'bits';
  }
  if (layout === 'packed') {
    if (arr.dtype !== 'u1') throw new FghError(`${file}: packed codes must be uint8, got ${arr.dtype}`);
    const bits = opts.bits ?? width * 8;
    checkBits(bits);
    if (bytesPerCode(bits) !== width) {
      if (opts.bitsFrom) throw new FghError(`${file}: ${width} bytes per row (packed codes), but ${opts.bitsFrom} (${bytesPerCode(bits)} bytes per row)`);
      throw new FghError(`${file}: ${bits}-bit packed codes have ${bytesPerCode(bits)} bytes per row, the array has ${width}`);
    }
    return fromPackedBytes(arr.data as Uint8Array, count, width, bits);
  }
  if (opts.bits !== undefined && opts.bits !== width) {
    if (opts.bitsFrom) throw new FghError(`${file}: ${width} columns (one per bit), but ${opts.bitsFrom}`);
    throw new FghError(`${file}: expected ${opts.bits} columns (one per bit), the array has ${width}`);
  }
  checkBits(width);
  if (isFloatDtype(arr.dtype)) {
    const f = arr.data as Float32Array | Float64Array;
    // NaN > 0 is false: it would pack as a silent 0-bit.
    for (let k = 0; k < f.length; k++) {
      if (Number.isNaN(f[k]!)) throw new FghError(`${file}: row ${Math.floor(k / width)} column ${k % width} holds NaN; float codes must be numbers (the sign is the bit)`);
    }
    return packSigns(f, count, width);
  }
  const v = npyToNumbers(arr, file);
  let sawZero = false;
  let sawMinus = false;
  for (let k = 0; k < v.length; k++) {
    const x = v[k]!;
    if (x === 0) sawZero = true;
    else if (x === -1) sawMinus = true;
    else if (x !== 1) {
      throw new FghError(`${file}: row ${Math.floor(k / width)} column ${k % width} holds ${x}; integer codes must be {0,1} or {-1,1}`);
    }
  }
  if (sawZero && sawMinus) throw new FghError(`${file}: integer codes mix 0 and -1; use {0,1} or {-1,1}`);
  return packSigns(v, count, width);
}
