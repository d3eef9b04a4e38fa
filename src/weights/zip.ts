/**
 * A minimal zip reader for PyTorch's zip checkpoints (torch >= 1.6): the central directory
 * (with zip64 extensions), stored and deflated entries, and CRC-32 checks. Entries are read from a
 * buffer holding the whole file.
 */
import zlib from 'node:zlib';
import { FghError, errorMessage } from '../util/errors.js';
import { crc32 } from '../retrieval/crc32.js';

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflate. */
  method: number;
  compressedSize: number;
  size: number;
  crc: number;
  localHeaderOffset: number;
}

const EOCD = 0x06054b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_EOCD = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

export function isZip(buf: Uint8Array): boolean {
  return buf.length >= 4 && buf[0] === 0x50 && buf[1] === 0x4b && (buf[2] === 3 || buf[2] === 5) && (buf[3] === 4 || buf[3] === 6);
}

function u64(view: DataView, at: number): number {
  const v = view.getBigUint64(at, true);
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
}

/** The central directory of a zip file, by entry name. `source` prefixes error messages. */
export function readZipDirectory(buf: Uint8Array, source: string): Map<string, ZipEntry> {
  const corrupt = (m: string): never => {
    throw new FghError(`${source}: corrupt zip: ${m}`);
  };
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let eocd = -1;
  for (let p = buf.length - 22; p >= Math.max(0, buf.length - 22 - 0xffff); p--) {
    if (view.getUint32(p, true) === EOCD) {
      eocd = p;
      break;
    }
  }
  if (eocd < 0) corrupt('no end-of-central-directory record (truncated file?)');
  let count = view.getUint16(eocd + 10, true);
  let cdSize = view.getUint32(eocd + 12, true);
  let cdOffset = view.getUint32(eocd + 16, true);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const loc = eocd - 20;
    if (loc < 0 || view.getUint32(loc, true) !== ZIP64_LOCATOR) corrupt('zip64 locator missing');
    const rec = u64(view, loc + 8);
    if (rec + 56 > buf.length || view.getUint32(rec, true) !== ZIP64_EOCD) corrupt('zip64 end-of-central-directory record missing');
    count = u64(view, rec + 32);
    cdSize = u64(view, rec + 40);
    cdOffset = u64(view, rec + 48);
  }
  if (cdOffset + cdSize > buf.length) corrupt(`central directory at byte ${cdOffset} (${cdSize} bytes) lies beyond the end of the file (${buf.length} bytes)`);
  const entries = new Map<string, ZipEntry>();
  let p = cdOffset;
  const decoder = new TextDecoder();
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdOffset + cdSize || view.getUint32(p, true) !== CENTRAL) corrupt(`central directory entry ${i} at byte ${p} is damaged`);
    const method = view.getUint16(p + 10, true);
    const crc = view.getUint32(p + 16, true);
    let compressedSize = view.getUint32(p + 20, true);
    let size = view.getUint32(p + 24, true);
    const nameLen = view.getUint16(p + 28, true);
    const extraLen = view.getUint16(p + 30, true);
    const commentLen = view.getUint16(p + 32, true);
    let localHeaderOffset = view.getUint32(p + 42, true);
    const name = decoder.decode(buf.subarray(p + 46, p + 46 + nameLen));
    // zip64 extra field: the 64-bit values of the fields that are 0xffffffff, in this order.
    let x = p + 46 + nameLen;
    const xEnd = x + extraLen;
    while (x + 4 <= xEnd) {
      const id = view.getUint16(x, true);
      const len = view.getUint16(x + 2, true);
      if (id === 0x0001) {
        let q = x + 4;
        if (size === 0xffffffff) (size = u64(view, q)), (q += 8);
        if (compressedSize === 0xffffffff) (compressedSize = u64(view, q)), (q += 8);
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = u64(view, q);
      }
      x += 4 + len;
    }
    entries.set(name, { name, method, compressedSize, size, crc, localHeaderOffset });
    p = xEnd + commentLen;
  }
  return entries;
}

/** An entry's bytes (a view into `buf` for stored entries), checked against its CRC-32. */
export function readZipEntry(buf: Uint8Array, entry: ZipEntry, source: string): Uint8Array {
  const corrupt = (m: string): never => {
    throw new FghError(`${source}: corrupt zip: ${entry.name}: ${m}`);
  };
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const h = entry.localHeaderOffset;
  if (h + 30 > buf.length || view.getUint32(h, true) !== LOCAL) corrupt(`local header at byte ${h} is missing`);
  const start = h + 30 + view.getUint16(h + 26, true) + view.getUint16(h + 28, true);
  if (start + entry.compressedSize > buf.length) {
    throw new FghError(`${source}: truncated: ${entry.name} needs ${entry.compressedSize} bytes, ${Math.max(0, buf.length - start)} left`);
  }
  const raw = buf.subarray(start, start + entry.compressedSize);
  let data: Uint8Array;
  if (entry.method === 0) data = raw;
  else if (entry.method === 8) {
    try {
      data = zlib.inflateRawSync(raw);
    } catch (e) {
      return corrupt(`cannot inflate: ${errorMessage(e)}`);
    }
  } else return corrupt(`unsupported compression method ${entry.method}`);
  if (data.length !== entry.size) corrupt(`${data.length} bytes, the directory says ${entry.size}`);
  if (crc32(data) !== entry.crc) corrupt('CRC-32 mismatch (the file is damaged)');
  return data;
}
