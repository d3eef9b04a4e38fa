/**
 * Reading PyTorch weights without Python: the legacy `.pth` format (torch < 1.6, and
 * `_use_new_zipfile_serialization=False`), the zip format of torch >= 1.6, and `.safetensors`.
 *
 * Legacy layout: pickles of the magic number, the protocol version (1001) and sys_info, then the
 * object pickle (storages as persistent ids), then the pickled list of storage keys, then each
 * storage's raw bytes in that order, preceded by its element count as a little-endian int64.
 * Zip layout: `<prefix>/data.pkl` plus one entry `<prefix>/data/<key>` per storage.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { FghError, errorMessage } from '../util/errors.js';
import { DTYPE_BYTES, PickleDict, StorageRef, StorageType, TensorRef, describe, unpickle, type PickleValue } from './pickle.js';
import { stridedToFloat32, type LoadedTensor, type TorchDtype } from './dtypes.js';
import { parseSafetensors } from './safetensors.js';
import { isZip, readZipDirectory, readZipEntry } from './zip.js';

export type { LoadedTensor } from './dtypes.js';

export type WeightsFormat = 'legacy-pickle' | 'zip' | 'safetensors';

export interface WeightsFile {
  format: WeightsFormat;
  /** The state dict, unwrapped and without a DataParallel prefix, in file order. */
  tensors: Map<string, LoadedTensor>;
  /** The key the state dict was nested under (`model_state_dict`, `state_dict`), if any. */
  unwrappedFrom: string | null;
  /** The prefix removed from every name (`module.`), if any. */
  strippedPrefix: string | null;
  /** Size and SHA-256 of the file, for provenance. */
  bytes: number;
  sha256: string;
}

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL = 1001;
/** Keys under which training scripts commonly nest the state dict, tried in this order. */
export const STATE_DICT_KEYS: readonly string[] = ['model_state_dict', 'state_dict'];

/** Reads a state dict from a `.pth` (legacy or zip) or `.safetensors` file. */
export async function readTorchFile(file: string): Promise<Map<string, LoadedTensor>> {
  return (await readWeightsFile(file)).tensors;
}

export async function readWeightsFile(file: string): Promise<WeightsFile> {
  let buf: Buffer;
  try {
    buf = await fsp.readFile(file);
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new FghError(code === 'ENOENT' ? `${file}: no such file` : `${file}: cannot read: ${errorMessage(e)}`);
  }
  return { ...parseWeights(buf, path.basename(file)), bytes: buf.length, sha256: createHash('sha256').update(buf).digest('hex') };
}

/** Parses a weights file held in memory; `source` names it in error messages. */
export function parseWeights(buf: Uint8Array, source: string): Omit<WeightsFile, 'bytes' | 'sha256'> {
  if (buf.length === 0) throw new FghError(`${source}: empty file`);
  if (isZip(buf)) return fromPickle('zip', readZipFormat(buf, source), source);
  if (buf[0] === 0x80) return fromPickle('legacy-pickle', readLegacyFormat(buf, source), source);
  if (looksLikeSafetensors(buf)) {
    const { tensors } = parseSafetensors(buf, source);
    const stripped = stripModulePrefix(tensors);
    return { format: 'safetensors', tensors: stripped.tensors, unwrappedFrom: null, strippedPrefix: stripped.prefix };
  }
  throw new FghError(`${source}: not a PyTorch .pth (legacy or zip) or .safetensors file`);
}

function looksLikeSafetensors(buf: Uint8Array): boolean {
  if (buf.length < 10) return false;
  const n = new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true);
  return n >= 2n && n <= 100_000_000n && buf[8] === 0x7b;
}

/**
 * Finds the state dict in an unpickled object: the object itself, or the dict under one of
 * STATE_DICT_KEYS (`{'model_state_dict': ..., 'epoch': ...}` as training scripts save them).
 */
export function unwrapStateDict(root: PickleValue, source: string): { dict: PickleDict; key: string | null } {
  if (!(root instanceof PickleDict)) throw new FghError(`${source}: holds a ${describe(root)}, not a state dict`);
  for (const key of STATE_DICT_KEYS) {
    const inner = root.items.get(key);
    if (inner instanceof PickleDict) return { dict: inner, key };
  }
  return { dict: root, key: null };
}

/**
 * Removes the `module.` prefix that `nn.DataParallel`/DistributedDataParallel put on every
 * name; only when all names have it, so that a real sub-module called `module` is left alone.
 */
export function stripModulePrefix<T>(tensors: ReadonlyMap<string, T>, prefix = 'module.'): { tensors: Map<string, T>; prefix: string | null } {
  const names = [...tensors.keys()];
  if (!names.length || !names.every((n) => n.startsWith(prefix))) return { tensors: new Map(tensors), prefix: null };
  return { tensors: new Map([...tensors].map(([n, t]) => [n.slice(prefix.length), t])), prefix };
}

interface PickledStateDict {
  root: PickleValue;
  /** Bytes of a storage from its first element, and how many elements it has. */
  storage: (key: string) => { bytes: Uint8Array; numel: number };
}

function fromPickle(format: WeightsFormat, file: PickledStateDict, source: string): Omit<WeightsFile, 'bytes' | 'sha256'> {
  const { dict, key } = unwrapStateDict(file.root, source);
  const refs = new Map<string, TensorRef>();
  for (const [name, v] of dict.items) {
    if (typeof name !== 'string') throw new FghError(`${source}: state dict key ${String(name)} is not a string`);
    if (!(v instanceof TensorRef)) {
      const hint = key === null ? ` (a training checkpoint? fgh looks for the state dict under ${STATE_DICT_KEYS.map((k) => `'${k}'`).join(' or ')})` : '';
      throw new FghError(`${source}: entry '${name}' is a ${describe(v)}, not a tensor${hint}`);
    }
    refs.set(name, v);
  }
  const tensors = new Map<string, LoadedTensor>();
  for (const [name, ref] of refs) {
    const s = ref.storage;
    const root = file.storage(s.key);
    if (s.base + s.numel > root.numel) throw new FghError(`${source}: ${name}: storage view [${s.base}, ${s.base + s.numel}) exceeds storage ${s.key} of ${root.numel} elements`);
    const size = DTYPE_BYTES[s.dtype];
    const bytes = root.bytes.subarray(s.base * size, (s.base + s.numel) * size);
    const data = stridedToFloat32(bytes, s.dtype, s.numel, ref.offset, ref.shape, ref.stride, `${source}: ${name}`);
    tensors.set(name, { shape: [...ref.shape], data, dtype: s.dtype });
  }
  const stripped = stripModulePrefix(tensors);
  return { format, tensors: stripped.tensors, unwrappedFrom: key, strippedPrefix: stripped.prefix };
}

/** Parses a persistent id `('storage', StorageType, key, location, numel[, view_metadata])`. */
function storagePid(pid: PickleValue, source: string, legacy: boolean): { key: string; dtype: TorchDtype; numel: number; view: { key: string; offset: number; numel: number } | null } {
  const bad = (): never => {
    throw new FghError(`${source}: bad persistent id (${describe(pid)}); only tensor storages are allowed`);
  };
  if (!Array.isArray(pid) || pid.length !== (legacy ? 6 : 5) || pid[0] !== 'storage') return bad();
  const [, type, key, , numel, view] = pid as readonly PickleValue[];
  if (!(type instanceof StorageType) || typeof key !== 'string' || typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0) return bad();
  if (view === null || view === undefined) return { key, dtype: type.dtype, numel, view: null };
  // Legacy storage views: (view_key, offset, size) within the root storage.
  if (!Array.isArray(view) || view.length !== 3) return bad();
  const [vk, off, vn] = view as readonly PickleValue[];
  if (typeof vk !== 'string' || typeof off !== 'number' || typeof vn !== 'number' || off < 0 || vn < 0) return bad();
  return { key, dtype: type.dtype, numel, view: { key: vk, offset: off, numel: vn } };
}

function readLegacyFormat(buf: Uint8Array, source: string): PickledStateDict {
  const magic = unpickle(buf, 0, { source });
  if (magic.value !== LEGACY_MAGIC) throw new FghError(`${source}: a pickle, but not a PyTorch file (no torch.save magic number)`);
  const proto = unpickle(buf, magic.end, { source });
  if (proto.value !== LEGACY_PROTOCOL) throw new FghError(`${source}: unsupported legacy protocol version ${String(proto.value)}`);
  const sysInfo = unpickle(buf, proto.end, { source });
  if (sysInfo.value instanceof PickleDict && sysInfo.value.items.get('little_endian') === false) {
    throw new FghError(`${source}: saved on a big-endian machine, which is not supported`);
  }
  const declared = new Map<string, { dtype: TorchDtype; numel: number }>();
  const main = unpickle(buf, sysInfo.end, {
    source,
    persistentLoad: (pid) => {
      const p = storagePid(pid, source, true);
      const known = declared.get(p.key);
      if (known && known.dtype !== p.dtype) throw new FghError(`${source}: storage ${p.key} is used as both ${known.dtype} and ${p.dtype}`);
      declared.set(p.key, { dtype: p.dtype, numel: p.numel });
      return p.view ? new StorageRef(p.key, p.dtype, p.view.offset, p.view.numel) : new StorageRef(p.key, p.dtype, 0, p.numel);
    },
  });
  const keysPickle = unpickle(buf, main.end, { source });
  const keys = keysPickle.value;
  if (!Array.isArray(keys) || !keys.every((k): k is string => typeof k === 'string')) throw new FghError(`${source}: bad storage key list (${describe(keys)})`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const storages = new Map<string, { bytes: Uint8Array; numel: number }>();
  let pos = keysPickle.end;
  (keys as string[]).forEach((key, i) => {
    const d = declared.get(key);
    if (!d) throw new FghError(`${source}: storage ${key} is listed but no tensor uses it`);
    if (pos + 8 > buf.length) throw new FghError(`${source}: truncated: storage ${i} of ${keys.length} has no size (${buf.length - pos} bytes left)`);
    const count = view.getBigInt64(pos, true);
    if (count !== BigInt(d.numel)) throw new FghError(`${source}: corrupt: storage ${i} (key ${key}) says ${count} elements, the pickle says ${d.numel}`);
    pos += 8;
    const bytes = d.numel * DTYPE_BYTES[d.dtype];
    if (pos + bytes > buf.length) throw new FghError(`${source}: truncated: storage ${i} needs ${bytes} bytes, ${buf.length - pos} left`);
    storages.set(key, { bytes: buf.subarray(pos, pos + bytes), numel: d.numel });
    pos += bytes;
  });
  for (const key of declared.keys()) if (!storages.has(key)) throw new FghError(`${source}: corrupt: storage ${key} is used but not in the storage list`);
  return {
    root: main.value,
    storage: (key) => storages.get(key)!,
  };
}

function readZipFormat(buf: Uint8Array, source: string): PickledStateDict {
  const entries = readZipDirectory(buf, source);
  const pkl = [...entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pkl.length !== 1) throw new FghError(`${source}: a zip file, but not a PyTorch checkpoint (${pkl.length ? 'several' : 'no'} <name>/data.pkl)`);
  const prefix = pkl[0]!.slice(0, -'data.pkl'.length);
  const byteorder = entries.get(`${prefix}byteorder`);
  if (byteorder && new TextDecoder().decode(readZipEntry(buf, byteorder, source)) !== 'little') {
    throw new FghError(`${source}: saved on a big-endian machine, which is not supported`);
  }
  const declared = new Map<string, { dtype: TorchDtype; numel: number }>();
  const main = unpickle(readZipEntry(buf, entries.get(pkl[0]!)!, source), 0, {
    source,
    persistentLoad: (pid) => {
      const p = storagePid(pid, source, false);
      const known = declared.get(p.key);
      if (known && known.dtype !== p.dtype) throw new FghError(`${source}: storage ${p.key} is used as both ${known.dtype} and ${p.dtype}`);
      declared.set(p.key, { dtype: p.dtype, numel: p.numel });
      return new StorageRef(p.key, p.dtype, 0, p.numel);
    },
  });
  const cache = new Map<string, { bytes: Uint8Array; numel: number }>();
  return {
    root: main.value,
    storage: (key) => {
      const hit = cache.get(key);
      if (hit) return hit;
      const d = declared.get(key)!;
      const name = `${prefix}data/${key}`;
      const entry = entries.get(name);
      if (!entry) throw new FghError(`${source}: corrupt: storage ${key} (${name}) is missing from the zip`);
      const bytes = readZipEntry(buf, entry, source);
      const want = d.numel * DTYPE_BYTES[d.dtype];
      if (bytes.length < want) throw new FghError(`${source}: corrupt: storage ${key} has ${bytes.length} bytes, needs ${want}`);
      const s = { bytes, numel: d.numel };
      cache.set(key, s);
      return s;
    },
  };
}
