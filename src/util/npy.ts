/**
 * NumPy .npy files (format versions 1.0, 2.0 and 3.0), for the plain numeric dtypes that codes,
 * labels and features use. Reading accepts either byte order and C or Fortran order and always
 * returns native (little-endian) data in C order; writing produces version 1.0 (2.0 when the
 * header needs it), little-endian, C order, with the data 64-byte aligned as numpy does.
 * Format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
 */
import { readFileSync } from 'node:fs';
import { FghError } from './errors.js';
import { writeFileAtomic, writeFileAtomicSync } from './atomic.js';

export type NpyDtype = 'u1' | 'i1' | 'u2' | 'i2' | 'u4' | 'i4' | 'u8' | 'i8' | 'f4' | 'f8' | 'b1';

export type NpyData =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | BigUint64Array
  | BigInt64Array
  | Float32Array
  | Float64Array;

/** An array in C order; `b1` is held as a Uint8Array of 0/1. */
export interface NpyArray {
  dtype: NpyDtype;
  shape: number[];
  data: NpyData;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

const ITEM_SIZE: Record<NpyDtype, number> = { u1: 1, i1: 1, b1: 1, u2: 2, i2: 2, u4: 4, i4: 4, u8: 8, i8: 8, f4: 4, f8: 8 };

const DTYPE_NAMES: Record<NpyDtype, string> = {
  u1: 'uint8', i1: 'int8', b1: 'bool', u2: 'uint16', i2: 'int16', u4: 'uint32', i4: 'int32',
  u8: 'uint64', i8: 'int64', f4: 'float32', f8: 'float64',
};

function isDtype(s: string): s is NpyDtype {
  return Object.prototype.hasOwnProperty.call(ITEM_SIZE, s);
}

export function dtypeName(d: NpyDtype): string {
  return DTYPE_NAMES[d];
}

/** The typed array constructor for a dtype, over an existing buffer. */
function view(dtype: NpyDtype, buf: ArrayBufferLike, offset: number, length: number): NpyData {
  switch (dtype) {
    case 'u1':
    case 'b1':
      return new Uint8Array(buf, offset, length);
    case 'i1':
      return new Int8Array(buf, offset, length);
    case 'u2':
      return new Uint16Array(buf, offset, length);
    case 'i2':
      return new Int16Array(buf, offset, length);
    case 'u4':
      return new Uint32Array(buf, offset, length);
    case 'i4':
      return new Int32Array(buf, offset, length);
    case 'u8':
      return new BigUint64Array(buf, offset, length);
    case 'i8':
      return new BigInt64Array(buf, offset, length);
    case 'f4':
      return new Float32Array(buf, offset, length);
    case 'f8':
      return new Float64Array(buf, offset, length);
  }
}

/** Allocates a zeroed array of `length` elements. */
export function allocNpyData(dtype: NpyDtype, length: number): NpyData {
  return view(dtype, new ArrayBuffer(length * ITEM_SIZE[dtype]), 0, length);
}

// ---------------------------------------------------------------------------------------------
// Header: a Python dict literal such as {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }

type PyValue = string | boolean | number | PyValue[];

/** A small parser for the literal subset numpy writes; anything else is an error. */
function parsePyLiteral(text: string, file: string): Record<string, PyValue> {
  let i = 0;
  const fail = (what: string): never => {
    throw new FghError(`${file}: malformed .npy header (${what} at character ${i}): ${text.trim()}`);
  };
  // Python's own whitespace only: numpy's literal_eval refuses anything else (NUL, NBSP, ...).
  const ws = () => {
    while (i < text.length && /[ \t\n\r\f]/.test(text[i]!)) i++;
  };
  const value = (): PyValue => {
    ws();
    const c = text[i];
    if (c === "'" || c === '"') {
      const end = text.indexOf(c, i + 1);
      if (end < 0) fail('unterminated string');
      const s = text.slice(i + 1, end);
      i = end + 1;
      return s;
    }
    if (c === '(' || c === '[') {
      const close = c === '(' ? ')' : ']';
      i++;
      const items: PyValue[] = [];
      for (;;) {
        ws();
        if (text[i] === close) {
          i++;
          return items;
        }
        items.push(value());
        ws();
        if (text[i] === ',') i++;
        else if (text[i] !== close) fail(`expected "," or "${close}"`);
      }
    }
    if (c === '{') return fail('nested dict (structured dtypes are not supported)');
    const m = /^(True|False|-?\d+L?)/.exec(text.slice(i));
    if (!m) return fail('unexpected token');
    i += m[0].length;
    if (m[0] === 'True') return true;
    if (m[0] === 'False') return false;
    return Number.parseInt(m[0], 10);
  };
  ws();
  if (text[i] !== '{') fail('expected "{"');
  i++;
  const out: Record<string, PyValue> = {};
  for (;;) {
    ws();
    if (text[i] === '}') {
      i++;
      break;
    }
    const key = value();
    if (typeof key !== 'string') fail('dict key is not a string');
    ws();
    if (text[i] !== ':') fail('expected ":"');
    i++;
    out[key as string] = value();
    ws();
    if (text[i] === ',') i++;
    else if (text[i] !== '}') fail('expected "," or "}"');
  }
  ws();
  if (i < text.length) fail('unexpected text after the dict');
  // numpy refuses keys beyond these three: an unknown one is a damaged or foreign header.
  const unknown = Object.keys(out).filter((k) => k !== 'descr' && k !== 'fortran_order' && k !== 'shape');
  if (unknown.length) fail(`unknown key '${unknown[0]}'`);
  return out;
}

interface ParsedHeader {
  dtype: NpyDtype;
  bigEndian: boolean;
  fortran: boolean;
  shape: number[];
  dataOffset: number;
}

function parseHeader(bytes: Uint8Array, file: string): ParsedHeader {
  if (bytes.length < 10 || MAGIC.some((b, k) => bytes[k] !== b)) {
    throw new FghError(`${file}: not a NumPy .npy file (missing the \\x93NUMPY magic)`);
  }
  const major = bytes[6]!;
  const minor = bytes[7]!;
  if (minor !== 0 || major < 1 || major > 3) {
    throw new FghError(`${file}: unsupported .npy format version ${major}.${minor} (supported: 1.0, 2.0, 3.0)`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lenSize = major === 1 ? 2 : 4;
  if (bytes.length < 8 + lenSize) throw new FghError(`${file}: truncated .npy header`);
  const headerLen = major === 1 ? dv.getUint16(8, true) : dv.getUint32(8, true);
  const start = 8 + lenSize;
  if (bytes.length < start + headerLen) throw new FghError(`${file}: truncated .npy header (needs ${start + headerLen} bytes, file has ${bytes.length})`);
  const text = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(start, start + headerLen));
  const dict = parsePyLiteral(text, file);
  const descr = dict.descr;
  if (typeof descr !== 'string') {
    throw new FghError(`${file}: unsupported dtype ${JSON.stringify(descr)} (structured arrays are not supported)`);
  }
  const m = /^([<>|=])([a-zA-Z]\d+)$/.exec(descr);
  const code = m?.[2];
  if (!m || !code || !isDtype(code)) {
    throw new FghError(`${file}: unsupported dtype '${descr}' (supported: ${Object.keys(ITEM_SIZE).join(', ')}, either byte order)`);
  }
  if (typeof dict.fortran_order !== 'boolean') throw new FghError(`${file}: malformed .npy header (fortran_order missing)`);
  const shape = dict.shape;
  if (!Array.isArray(shape) || shape.some((s) => typeof s !== 'number' || !Number.isSafeInteger(s) || s < 0)) {
    throw new FghError(`${file}: malformed .npy header (shape ${JSON.stringify(shape)})`);
  }
  return { dtype: code, bigEndian: m[1] === '>', fortran: dict.fortran_order, shape: shape as number[], dataOffset: start + headerLen };
}

function swapBytes(bytes: Uint8Array, itemSize: number): void {
  if (itemSize === 1) return;
  for (let p = 0; p < bytes.length; p += itemSize) {
    for (let a = p, b = p + itemSize - 1; a < b; a++, b--) {
      const t = bytes[a]!;
      bytes[a] = bytes[b]!;
      bytes[b] = t;
    }
  }
}

/** Fortran (column-major) to C (row-major) order, on raw items of `itemSize` bytes. */
function fortranToC(src: Uint8Array, shape: number[], itemSize: number): Uint8Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const dst = new Uint8Array(n * itemSize);
  const rank = shape.length;
  if (rank <= 1) {
    dst.set(src);
    return dst;
  }
  // Strides (in items) of the Fortran layout, walked in C order with an odometer.
  const fStride = new Array<number>(rank);
  let s = 1;
  for (let k = 0; k < rank; k++) {
    fStride[k] = s;
    s *= shape[k]!;
  }
  const idx = new Array<number>(rank).fill(0);
  let f = 0;
  for (let c = 0; c < n; c++) {
    dst.set(src.subarray(f * itemSize, (f + 1) * itemSize), c * itemSize);
    for (let k = rank - 1; k >= 0; k--) {
      idx[k]!++;
      f += fStride[k]!;
      if (idx[k]! < shape[k]!) break;
      f -= fStride[k]! * shape[k]!;
      idx[k] = 0;
    }
  }
  return dst;
}

/** Parses the bytes of a .npy file; `file` names it in error messages. */
export function parseNpy(bytes: Uint8Array, file = '<npy>'): NpyArray {
  const h = parseHeader(bytes, file);
  const itemSize = ITEM_SIZE[h.dtype];
  const count = h.shape.reduce((a, b) => a * b, 1);
  const need = count * itemSize;
  const have = bytes.length - h.dataOffset;
  if (have < need) {
    throw new FghError(`${file}: truncated .npy data (shape (${h.shape.join(', ')}) of ${dtypeName(h.dtype)} needs ${need} bytes, file has ${have})`);
  }
  if (have > need) throw new FghError(`${file}: ${have - need} unexpected bytes after the .npy data`);
  // Copy into a fresh buffer: aligned for the typed array, and ours to byte-swap or reorder.
  let raw: Uint8Array = bytes.slice(h.dataOffset, h.dataOffset + need);
  if (h.bigEndian) swapBytes(raw, itemSize);
  if (h.fortran) raw = fortranToC(raw, h.shape, itemSize);
  const data = view(h.dtype, raw.buffer, raw.byteOffset, count);
  if (h.dtype === 'b1') {
    const u = data as Uint8Array;
    for (let k = 0; k < u.length; k++) if (u[k]! > 1) throw new FghError(`${file}: bool array holds the byte ${u[k]} at item ${k}`);
  }
  return { dtype: h.dtype, shape: h.shape, data };
}

export function readNpy(file: string): NpyArray {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FghError(code === 'ENOENT' ? `${file}: no such file` : `${file}: cannot read (${code ?? String(e)})`);
  }
  return parseNpy(bytes, file);
}

/** The header of a C-order little-endian array: magic, version, padded dict (64-byte aligned). */
export function encodeNpyHeader(dtype: NpyDtype, shape: readonly number[]): Uint8Array {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const descr = `${ITEM_SIZE[dtype] === 1 ? '|' : '<'}${dtype}`;
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  let major = 1;
  let pre = 10;
  if (dict.length + 1 + pre > 0xffff) {
    major = 2;
    pre = 12;
  }
  const total = Math.ceil((pre + dict.length + 1) / 64) * 64;
  const header = dict + ' '.repeat(total - pre - dict.length - 1) + '\n';
  const out = new Uint8Array(total);
  out.set(MAGIC, 0);
  out[6] = major;
  out[7] = 0;
  const dv = new DataView(out.buffer);
  if (major === 1) dv.setUint16(8, header.length, true);
  else dv.setUint32(8, header.length, true);
  for (let k = 0; k < header.length; k++) out[pre + k] = header.charCodeAt(k);
  return out;
}

/** Serialises an array (little-endian, C order). */
export function encodeNpy(arr: NpyArray): Uint8Array {
  const count = arr.shape.reduce((a, b) => a * b, 1);
  if (arr.data.length !== count) throw new Error(`npy: data has ${arr.data.length} items, shape (${arr.shape.join(', ')}) needs ${count}`);
  const header = encodeNpyHeader(arr.dtype, arr.shape);
  const dataBytes = count * ITEM_SIZE[arr.dtype];
  const out = new Uint8Array(header.length + dataBytes);
  out.set(header, 0);
  out.set(new Uint8Array(arr.data.buffer, arr.data.byteOffset, dataBytes), header.length);
  return out;
}

export async function writeNpy(file: string, arr: NpyArray): Promise<void> {
  await writeFileAtomic(file, encodeNpy(arr));
}

export function writeNpySync(file: string, arr: NpyArray): void {
  writeFileAtomicSync(file, encodeNpy(arr));
}

/**
 * The values as float64 numbers; 64-bit integers must be exactly representable (|v| <= 2^53),
 * which class ids and codes always are.
 */
export function npyToNumbers(arr: NpyArray, file = '<npy>'): Float64Array {
  const d = arr.data;
  if (d instanceof BigInt64Array || d instanceof BigUint64Array) {
    const out = new Float64Array(d.length);
    for (let k = 0; k < d.length; k++) {
      const v = d[k]!;
      if (v > 9007199254740991n || v < -9007199254740991n) throw new FghError(`${file}: item ${k} (${v}) is too large for exact arithmetic`);
      out[k] = Number(v);
    }
    return out;
  }
  return Float64Array.from(d as ArrayLike<number>);
}

export function isFloatDtype(d: NpyDtype): boolean {
  return d === 'f4' || d === 'f8';
}
