import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { constants as zc, inflateSync } from 'node:zlib';
import { errorMessage, FghError } from '../../util/errors.js';

/**
 * A small reader for MATLAB v5/v7 MAT-files (the format of Stanford Dogs' lists): numeric, char,
 * cell and struct arrays, little- or big-endian, with or without zlib compression. Sparse
 * arrays, objects, function handles and v7.3 (HDF5) files are refused. Every length is checked
 * against the bytes present, so a truncated or corrupt file is a one-line FghError, never a
 * crash or an allocation larger than the data. Variables are located by seeking, and only the
 * ones asked for are decoded: the Dogs feature files hold a large matrix next to the lists.
 */

export type NumericClass = 'double' | 'single' | 'int8' | 'uint8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'int64' | 'uint64';

export type MatValue =
  /** Column-major values converted to float64 whatever the stored type; `imag` for complex arrays. */
  | { kind: 'numeric'; class: NumericClass; dims: number[]; data: Float64Array; imag?: Float64Array; logical: boolean }
  /** One string per row (a 1xN char array is one string). */
  | { kind: 'char'; dims: number[]; rows: string[] }
  /** Column-major elements. */
  | { kind: 'cell'; dims: number[]; items: MatValue[] }
  /** Column-major elements, each mapping the field names to values. */
  | { kind: 'struct'; dims: number[]; fields: string[]; items: Array<Map<string, MatValue>> };

// Data types (miINT8...) and array classes (mxCELL_CLASS...) of the format.
const MI = { INT8: 1, UINT8: 2, INT16: 3, UINT16: 4, INT32: 5, UINT32: 6, SINGLE: 7, DOUBLE: 9, INT64: 12, UINT64: 13, MATRIX: 14, COMPRESSED: 15, UTF8: 16, UTF16: 17, UTF32: 18 } as const;
const NUMERIC_TYPE_SIZE: Record<number, number> = { 1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8 };
const NUMERIC_CLASSES: Record<number, NumericClass> = { 6: 'double', 7: 'single', 8: 'int8', 9: 'uint8', 10: 'int16', 11: 'uint16', 12: 'int32', 13: 'uint32', 14: 'int64', 15: 'uint64' };
const REFUSED_CLASSES: Record<number, string> = { 3: 'a MATLAB object', 5: 'a sparse array', 16: 'a function handle', 17: 'an opaque (class) object' };
const CELL = 1;
const STRUCT = 2;
const CHAR = 4;

/** Nesting deeper than this is refused (corrupt files could otherwise exhaust the stack). */
const MAX_DEPTH = 64;
/** Largest decompressed variable we accept. */
const DEFAULT_MAX_INFLATED = 1 << 30;
/** Bytes read (or inflated) to learn a variable's name before deciding whether to decode it. */
const PEEK = 4096;

export interface MatReadOptions {
  /** Upper bound on one decompressed variable, in bytes (default 1 GiB). */
  maxInflatedBytes?: number;
}

/** Random access to the file's bytes. */
interface ByteSource {
  size: number;
  read(offset: number, length: number): Buffer;
}

/** An element's tag: type, byte count, where its data starts and where the next element starts. */
interface Tag {
  type: number;
  n: number;
  data: number;
  next: number;
}

/** Bounds-checked little/big-endian reads over one buffer; `where` names the file and variable in errors. */
class Reader {
  readonly view: DataView;
  /** `origin`: the file offset of buf[0], or null for decompressed bytes (then offsets are into them). */
  constructor(
    readonly buf: Buffer,
    readonly le: boolean,
    private readonly where: string,
    private readonly origin: number | null,
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  fail(msg: string): never {
    throw new FghError(`${this.where}: ${msg}`);
  }

  /** Where byte `pos` of the buffer is, in words. */
  byte(pos: number): string {
    return this.origin === null ? `byte ${pos} of the decompressed element` : `byte ${this.origin + pos}`;
  }

  /** A failure inside the variable, at `what` (`file_list{3}`; empty for the variable itself). */
  failAt(what: string, msg: string): never {
    return this.fail(what ? `${what}: ${msg}` : msg);
  }

  u32(at: number): number {
    return this.view.getUint32(at, this.le);
  }

  /** The element tag at `pos`, which must lie (with its data) before `end`. */
  tag(pos: number, end: number): Tag {
    if (end - pos < 8) this.fail(`truncated data element at ${this.byte(pos)}`);
    const w0 = this.u32(pos);
    if (w0 >>> 16 !== 0) {
      // Small data element: type and size share the first word, data in the second.
      const n = w0 >>> 16;
      if (n > 4) this.fail(`corrupt small data element at ${this.byte(pos)} (size ${n})`);
      return { type: w0 & 0xffff, n, data: pos + 4, next: pos + 8 };
    }
    const n = this.u32(pos + 4);
    const data = pos + 8;
    if (n > end - data) this.fail(`truncated data element at ${this.byte(pos)} (${n} bytes declared, ${end - data} present)`);
    return { type: w0, n, data, next: Math.min(data + pad8(n), end) };
  }
}

/** A name from the file, quoted, with control characters escaped (corrupt files must not break the one-line message). */
export const quote = (s: string): string => JSON.stringify(s);
const printable = (s: string): string => JSON.stringify(s).slice(1, -1);

const pad8 = (n: number): number => n + ((8 - (n % 8)) % 8);

function describeDims(dims: number[]): string {
  return dims.join('x');
}

/** What a value is, in words, for error messages ("a 3x1 cell array"). */
export function describeMatValue(v: MatValue): string {
  const cls = v.kind === 'numeric' ? v.class : v.kind;
  return `a ${describeDims(v.dims)} ${cls} array`;
}

interface MatrixHeader {
  cls: number;
  complex: boolean;
  logical: boolean;
  dims: number[];
  name: string;
  /** First byte after the name. */
  pos: number;
}

/** Array flags, dimensions and name of the miMATRIX whose data spans [start, end). */
function matrixHeader(r: Reader, start: number, end: number): MatrixHeader {
  const flags = r.tag(start, end);
  if (flags.type !== MI.UINT32 || flags.n !== 8) r.fail(`corrupt array flags at ${r.byte(start)}`);
  const w = r.u32(flags.data);
  const dimsTag = r.tag(flags.next, end);
  if (dimsTag.type !== MI.INT32 || dimsTag.n % 4 !== 0 || dimsTag.n < 8) r.fail(`corrupt array dimensions at ${r.byte(flags.next)}`);
  const dims: number[] = [];
  for (let i = 0; i < dimsTag.n / 4; i++) {
    const d = r.view.getInt32(dimsTag.data + 4 * i, r.le);
    if (d < 0) r.fail(`negative array dimension at ${r.byte(dimsTag.data + 4 * i)}`);
    dims.push(d);
  }
  const nameTag = r.tag(dimsTag.next, end);
  if (nameTag.type !== MI.INT8 && nameTag.type !== MI.UINT8) r.fail(`corrupt array name at ${r.byte(dimsTag.next)}`);
  const name = r.buf.toString('latin1', nameTag.data, nameTag.data + nameTag.n);
  return { cls: w & 0xff, complex: (w & 0x800) !== 0, logical: (w & 0x200) !== 0, dims, name, pos: nameTag.next };
}

function numericData(r: Reader, t: Tag, count: number, what: string): Float64Array {
  const size = NUMERIC_TYPE_SIZE[t.type];
  if (size === undefined) r.failAt(what, `unexpected data type ${t.type} for numeric data`);
  if (t.n !== count * size) r.failAt(what, `${t.n} bytes of data for ${count} element(s) of ${size} byte(s)`);
  const out = new Float64Array(count);
  const v = r.view;
  const le = r.le;
  let p = t.data;
  for (let i = 0; i < count; i++, p += size) {
    switch (t.type) {
      case MI.INT8: out[i] = v.getInt8(p); break;
      case MI.UINT8: out[i] = v.getUint8(p); break;
      case MI.INT16: out[i] = v.getInt16(p, le); break;
      case MI.UINT16: out[i] = v.getUint16(p, le); break;
      case MI.INT32: out[i] = v.getInt32(p, le); break;
      case MI.UINT32: out[i] = v.getUint32(p, le); break;
      case MI.SINGLE: out[i] = v.getFloat32(p, le); break;
      case MI.DOUBLE: out[i] = v.getFloat64(p, le); break;
      case MI.INT64:
      case MI.UINT64: {
        const b = t.type === MI.INT64 ? v.getBigInt64(p, le) : v.getBigUint64(p, le);
        const x = Number(b);
        // Refuse rather than silently round: float64 holds integers exactly only up to 2^53.
        if (!Number.isSafeInteger(x)) r.failAt(what, `64-bit integer ${b} does not fit a float64 exactly`);
        out[i] = x;
        break;
      }
    }
  }
  return out;
}

function charData(r: Reader, t: Tag, count: number, what: string): string {
  let s: string;
  switch (t.type) {
    case MI.UINT8:
    case MI.INT8:
      if (t.n !== count) r.failAt(what, `${t.n} bytes of character data for ${count} character(s)`);
      return r.buf.toString('latin1', t.data, t.data + t.n);
    case MI.UINT16:
    case MI.UTF16: {
      if (t.n !== 2 * count) r.failAt(what, `${t.n} bytes of character data for ${count} character(s)`);
      const units = new Array<number>(count);
      for (let i = 0; i < count; i++) units[i] = r.view.getUint16(t.data + 2 * i, r.le);
      s = '';
      for (let i = 0; i < count; i += 4096) s += String.fromCharCode(...units.slice(i, i + 4096));
      return s;
    }
    case MI.UTF8:
      s = r.buf.toString('utf8', t.data, t.data + t.n);
      break;
    case MI.UTF32: {
      if (t.n % 4 !== 0) r.failAt(what, `${t.n} bytes of UTF-32 character data`);
      s = '';
      for (let i = 0; i < t.n / 4; i++) {
        const c = r.u32(t.data + 4 * i);
        if (c > 0x10ffff) r.failAt(what, `invalid UTF-32 character ${c}`);
        s += String.fromCodePoint(c);
      }
      break;
    }
    default:
      r.failAt(what, `unexpected data type ${t.type} for character data`);
  }
  // MATLAB counts UTF-16 code units, as JavaScript strings do.
  if (s.length !== count) r.failAt(what, `${s.length} character(s) of data for ${count} declared`);
  return s;
}

/** The miMATRIX whose data spans [start, end): its name and value; `what` locates it in errors (`file_list{3}`). */
function parseMatrix(r: Reader, start: number, end: number, depth: number, what: string): { name: string; value: MatValue } {
  if (depth > MAX_DEPTH) r.failAt(what, `arrays nested deeper than ${MAX_DEPTH} levels`);
  // An empty miMATRIX element is an empty array (MATLAB writes them inside cells).
  if (start === end) return { name: '', value: { kind: 'numeric', class: 'double', dims: [0, 0], data: new Float64Array(0), logical: false } };
  const h = matrixHeader(r, start, end);
  const refused = REFUSED_CLASSES[h.cls];
  if (refused !== undefined) r.failAt(what, `${refused}, which is not supported`);
  let count = 1;
  for (const d of h.dims) count *= d;
  const left = end - h.pos;
  // Every element of a cell or struct is a tagged element of at least 8 bytes.
  const needElements = (k: number): void => {
    if (k * 8 > left) r.failAt(what, `${describeDims(h.dims)} array declared but only ${left} bytes of data follow`);
  };
  if (h.cls === CELL) {
    needElements(count);
    const items: MatValue[] = [];
    let pos = h.pos;
    for (let i = 0; i < count; i++) {
      const t = r.tag(pos, end);
      if (t.type !== MI.MATRIX) r.failAt(`${what}{${i + 1}}`, `expected an array element, found data type ${t.type}`);
      items.push(parseMatrix(r, t.data, t.data + t.n, depth + 1, `${what}{${i + 1}}`).value);
      pos = t.next;
    }
    return { name: h.name, value: { kind: 'cell', dims: h.dims, items } };
  }
  if (h.cls === STRUCT) {
    const lenTag = r.tag(h.pos, end);
    if (lenTag.type !== MI.INT32 || lenTag.n !== 4) r.failAt(what, `corrupt struct field name length`);
    const len = r.view.getInt32(lenTag.data, r.le);
    const namesTag = r.tag(lenTag.next, end);
    if (namesTag.type !== MI.INT8 && namesTag.type !== MI.UINT8) r.failAt(what, `corrupt struct field names`);
    if (len <= 0 ? namesTag.n !== 0 : namesTag.n % len !== 0) r.failAt(what, `${namesTag.n} bytes of field names do not divide into names of ${len} bytes`);
    const fields: string[] = [];
    for (let p = namesTag.data; len > 0 && p < namesTag.data + namesTag.n; p += len) {
      const raw = r.buf.subarray(p, p + len);
      const nul = raw.indexOf(0);
      fields.push(raw.toString('latin1', 0, nul < 0 ? len : nul));
    }
    if (new Set(fields).size !== fields.length) r.failAt(what, `duplicate struct field names`);
    if (fields.length === 0 && count > 1 << 20) r.failAt(what, `${describeDims(h.dims)} struct array without fields`);
    needElements(count * fields.length);
    const items: Array<Map<string, MatValue>> = [];
    let pos = namesTag.next;
    for (let i = 0; i < count; i++) {
      const m = new Map<string, MatValue>();
      for (const f of fields) {
        const sub = `${what}${count === 1 ? '' : `(${i + 1})`}${what || count !== 1 ? '.' : ''}${printable(f)}`;
        const t = r.tag(pos, end);
        if (t.type !== MI.MATRIX) r.failAt(sub, `expected an array element, found data type ${t.type}`);
        m.set(f, parseMatrix(r, t.data, t.data + t.n, depth + 1, sub).value);
        pos = t.next;
      }
      items.push(m);
    }
    return { name: h.name, value: { kind: 'struct', dims: h.dims, fields, items } };
  }
  if (h.cls === CHAR) {
    let text = '';
    if (h.pos < end) text = charData(r, r.tag(h.pos, end), count, what);
    else if (count !== 0) r.failAt(what, `character data missing`);
    const nrows = h.dims[0] ?? 0;
    if (count === 0 && nrows > 1 << 20) r.failAt(what, `${describeDims(h.dims)} char array`);
    const ncols = nrows === 0 ? 0 : count / nrows;
    const rows: string[] = [];
    for (let i = 0; i < nrows; i++) {
      let row = '';
      for (let j = 0; j < ncols; j++) row += text[j * nrows + i];
      rows.push(row);
    }
    return { name: h.name, value: { kind: 'char', dims: h.dims, rows } };
  }
  const cls = NUMERIC_CLASSES[h.cls];
  if (cls === undefined) r.failAt(what, `unknown array class ${h.cls}`);
  const realTag = r.tag(h.pos, end);
  const data = numericData(r, realTag, count, what);
  const value: MatValue = { kind: 'numeric', class: cls, dims: h.dims, data, logical: h.logical };
  if (h.complex) value.imag = numericData(r, r.tag(realTag.next, end), count, `${what}${what ? ' ' : ''}(imaginary part)`);
  return { name: h.name, value };
}

/** The name of the miMATRIX whose data starts at `start`, or null if the bytes present end before it. */
function peekName(r: Reader, start: number, end: number): string | null {
  try {
    return matrixHeader(r, start, end).name;
  } catch {
    return null;
  }
}

function fileSource(file: string): { src: ByteSource; close: () => void } {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new FghError(`${file}: cannot open (${errorMessage(e).split('\n')[0]})`);
  }
  const size = fstatSync(fd).size;
  return {
    src: {
      size,
      read(offset, length) {
        const b = Buffer.alloc(length);
        let got = 0;
        while (got < length) {
          const k = readSync(fd, b, got, length - got, offset + got);
          if (k === 0) break;
          got += k;
        }
        return got === length ? b : b.subarray(0, got);
      },
    },
    close: () => closeSync(fd),
  };
}

function bufferSource(buf: Buffer): ByteSource {
  return { size: buf.length, read: (offset, length) => buf.subarray(offset, offset + length) };
}

function inflate(data: Buffer, where: string, max: number, partial: boolean): Buffer {
  try {
    return partial ? inflateSync(data, { finishFlush: zc.Z_SYNC_FLUSH }) : inflateSync(data, { maxOutputLength: max });
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ERR_BUFFER_TOO_LARGE') throw new FghError(`${where}: decompresses to more than ${max} bytes`);
    throw new FghError(`${where}: corrupt compressed data (${errorMessage(e).split('\n')[0]})`);
  }
}

/** The variable name at the start of (possibly partially) inflated element bytes, or null if they end before it. */
function peekCompressedName(r: Reader): string | null {
  if (r.buf.length < 8) return null;
  const type = r.u32(0);
  if (type !== MI.MATRIX) r.fail(`expected an array element, found data type ${type}`);
  return peekName(r, 8, Math.min(r.buf.length, 8 + r.u32(4)));
}

/** Checks the 128-byte header; returns whether the file is little-endian. */
function readHeader(src: ByteSource, file: string): boolean {
  const h = src.read(0, 128);
  if (h.length >= 8 && h[0] === 0x89 && h.toString('latin1', 1, 4) === 'HDF') throw new FghError(`${file}: an HDF5 file (MATLAB 7.3 format), which is not supported: save it with -v7`);
  const text = h.toString('latin1', 0, Math.min(h.length, 116));
  if (text.startsWith('MATLAB 7.3')) throw new FghError(`${file}: a MATLAB 7.3 (HDF5) MAT-file, which is not supported: save it with -v7`);
  if (h.length < 128) throw new FghError(`${file}: not a MATLAB v5 MAT-file (${src.size} bytes, shorter than the 128-byte header)`);
  const endian = h.toString('latin1', 126, 128);
  if (endian !== 'IM' && endian !== 'MI') throw new FghError(`${file}: not a MATLAB v5 MAT-file (no v5 header${text.startsWith('MATLAB') ? '' : '; MATLAB v4 files are not supported'})`);
  const le = endian === 'IM';
  const version = le ? h.readUInt16LE(124) : h.readUInt16BE(124);
  if (version === 0x0200) throw new FghError(`${file}: a MATLAB 7.3 (HDF5) MAT-file, which is not supported: save it with -v7`);
  if (version !== 0x0100) throw new FghError(`${file}: unsupported MAT-file version 0x${version.toString(16).padStart(4, '0')}`);
  return le;
}

/**
 * Reads the named top-level variables (all of them when `names` is omitted). Variables not asked
 * for are skipped without being decoded, and reading stops once all are found. Missing names are
 * simply absent from the result (`found` lists the names seen, for the caller's message).
 */
function readVariables(src: ByteSource, file: string, names: readonly string[] | undefined, opts: MatReadOptions): { vars: Map<string, MatValue>; found: string[] } {
  const max = opts.maxInflatedBytes ?? DEFAULT_MAX_INFLATED;
  const le = readHeader(src, file);
  const vars = new Map<string, MatValue>();
  const found: string[] = [];
  const wanted = (n: string) => (names === undefined || names.includes(n)) && !vars.has(n);
  let offset = 128;
  while (offset < src.size) {
    const head = src.read(offset, 8);
    if (head.length < 8) {
      // MATLAB and scipy end on element boundaries; a few zero bytes of padding are harmless.
      if (head.every((b) => b === 0)) break;
      throw new FghError(`${file}: truncated data element at byte ${offset}`);
    }
    const hr = new Reader(head, le, file, offset);
    const type = hr.u32(0);
    const n = hr.u32(4);
    if (type >>> 16 !== 0) throw new FghError(`${file}: corrupt top-level data element at byte ${offset}`);
    if (n > src.size - offset - 8) throw new FghError(`${file}: truncated data element at byte ${offset} (${n} bytes declared, ${src.size - offset - 8} present)`);
    const dataAt = offset + 8;
    if (type === MI.COMPRESSED) {
      const where = `${file}: compressed element at byte ${offset}`;
      // Learn the name from the first bytes, so that large variables we skip are never read whole.
      let inner = inflate(src.read(dataAt, Math.min(n, PEEK)), where, max, n > PEEK);
      let name = peekCompressedName(new Reader(inner, le, where, null));
      if (name === null || wanted(name)) {
        if (n > PEEK) inner = inflate(src.read(dataAt, n), where, max, false);
        const r = new Reader(inner, le, where, null);
        const t = r.tag(0, inner.length);
        if (t.type !== MI.MATRIX) r.fail(`expected an array element, found data type ${t.type}`);
        name = matrixHeader(r, t.data, t.data + t.n).name;
        if (wanted(name)) vars.set(name, parseMatrix(new Reader(inner, le, `${file}: variable ${quote(name)}`, null), t.data, t.data + t.n, 0, '').value);
      }
      found.push(name);
      offset = dataAt + n; // compressed elements are not padded
    } else if (type === MI.MATRIX) {
      let body = src.read(dataAt, Math.min(n, PEEK));
      let name = peekName(new Reader(body, le, file, dataAt), 0, body.length);
      if (name === null || wanted(name)) {
        if (n > PEEK) body = src.read(dataAt, n);
        name = matrixHeader(new Reader(body, le, `${file}: variable at byte ${offset}`, dataAt), 0, n).name;
        if (wanted(name)) vars.set(name, parseMatrix(new Reader(body, le, `${file}: variable ${quote(name)}`, dataAt), 0, n, 0, '').value);
      }
      found.push(name);
      offset = dataAt + pad8(n);
    } else {
      // Not a variable (the format allows nothing else at top level): skip it.
      offset = dataAt + pad8(n);
    }
    if (names !== undefined && names.every((x) => vars.has(x))) break;
  }
  return { vars, found };
}

/**
 * The named top-level variables of a MAT-file (all when `names` is omitted); a name in `names`
 * that the file lacks is an error listing the variables it has.
 */
export function readMatFile(file: string, names?: readonly string[], opts: MatReadOptions = {}): Map<string, MatValue> {
  const { src, close } = fileSource(file);
  try {
    return requireNames(file, readVariables(src, file, names, opts), names);
  } finally {
    close();
  }
}

/** As readMatFile, from bytes already in memory; `file` names them in errors. */
export function parseMat(buf: Buffer, file: string, names?: readonly string[], opts: MatReadOptions = {}): Map<string, MatValue> {
  return requireNames(file, readVariables(bufferSource(buf), file, names, opts), names);
}

function requireNames(file: string, r: { vars: Map<string, MatValue>; found: string[] }, names: readonly string[] | undefined): Map<string, MatValue> {
  for (const n of names ?? []) {
    if (!r.vars.has(n)) throw new FghError(`${file}: no variable ${quote(n)} (the file has ${r.found.length === 0 ? 'no variables' : r.found.map(quote).join(', ')})`);
  }
  return r.vars;
}
