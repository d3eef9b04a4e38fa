/**
 * Item labels for relevance ("shares at least one label"). Two layouts, as in the code store:
 * single class ids (int32, -1 = unlabelled, relevant to nothing), or multi-hot bitsets of
 * ceil(numClasses/32) little-endian uint32 words per item, class c in word c>>5, bit c&31.
 */
import { FghError } from '../util/errors.js';
import { npyToNumbers, type NpyArray } from '../util/npy.js';

export type Labels =
  | { kind: 'single'; count: number; numClasses: number; ids: Int32Array }
  | { kind: 'multi'; count: number; numClasses: number; words: number; sets: Uint32Array };

/** Class ids are stored as int32 (here and in the code store); -1 = unlabelled. */
const MAX_CLASS_ID = 2 ** 31 - 1;

export function labelWords(numClasses: number): number {
  return Math.max(1, Math.ceil(numClasses / 32));
}

export function singleLabels(ids: ArrayLike<number>, numClasses?: number): Labels {
  const out = Int32Array.from(ids);
  let max = -1;
  for (let i = 0; i < out.length; i++) {
    // Int32Array.from wraps 2^32 + 1 to 1 without a word.
    if (out[i] !== ids[i]) throw new FghError(`label of item ${i} is ${ids[i]}; class ids are integers from -1 (unlabelled) to ${MAX_CLASS_ID}`);
    if (out[i]! < -1) throw new FghError(`label of item ${i} is ${out[i]}; class ids are >= 0 (-1 = unlabelled)`);
    if (out[i]! > max) max = out[i]!;
  }
  const n = numClasses ?? max + 1;
  if (max >= n) throw new FghError(`class id ${max} is out of range for ${n} classes`);
  return { kind: 'single', count: out.length, numClasses: n, ids: out };
}

/** Multi-hot labels from row-major [count, numClasses] values (non-zero = member). */
export function multiHotLabels(values: ArrayLike<number>, count: number, numClasses: number): Labels {
  const words = labelWords(numClasses);
  const sets = new Uint32Array(count * words);
  for (let i = 0; i < count; i++) {
    for (let c = 0; c < numClasses; c++) if (values[i * numClasses + c] !== 0) sets[i * words + (c >> 5)]! |= 1 << (c & 31);
  }
  return { kind: 'multi', count, numClasses, words, sets };
}

/** Row-major [count, numClasses] 0/1 bytes. */
export function toMultiHot(labels: Labels): Uint8Array {
  const { count, numClasses } = labels;
  const out = new Uint8Array(count * numClasses);
  if (labels.kind === 'single') {
    for (let i = 0; i < count; i++) if (labels.ids[i]! >= 0) out[i * numClasses + labels.ids[i]!] = 1;
  } else {
    for (let i = 0; i < count; i++) {
      for (let c = 0; c < numClasses; c++) out[i * numClasses + c] = (labels.sets[i * labels.words + (c >> 5)]! >>> (c & 31)) & 1;
    }
  }
  return out;
}

/** The layout as bitsets with `numClasses` classes (for comparing against multi-label items). */
export function toMultiLabels(labels: Labels, numClasses: number): Labels & { kind: 'multi' } {
  if (labels.kind === 'multi' && labels.numClasses === numClasses) return labels;
  if (labels.numClasses > numClasses) throw new Error('toMultiLabels: fewer classes than the labels use');
  const words = labelWords(numClasses);
  const sets = new Uint32Array(labels.count * words);
  if (labels.kind === 'single') {
    for (let i = 0; i < labels.count; i++) {
      const c = labels.ids[i]!;
      if (c >= 0) sets[i * words + (c >> 5)]! |= 1 << (c & 31);
    }
  } else {
    for (let i = 0; i < labels.count; i++) sets.set(labels.sets.subarray(i * labels.words, (i + 1) * labels.words), i * words);
  }
  return { kind: 'multi', count: labels.count, numClasses, words, sets };
}

/**
 * Brings query and database labels to one layout: single ids when both are single, else bitsets
 * over the larger class count.
 */
export function alignLabels(q: Labels, db: Labels): [Labels, Labels] {
  if (q.kind === 'single' && db.kind === 'single') return [q, db];
  const n = Math.max(q.numClasses, db.numClasses);
  return [toMultiLabels(q, n), toMultiLabels(db, n)];
}

/** Items [start, end). */
export function sliceLabels(labels: Labels, start: number, end: number): Labels {
  if (labels.kind === 'single') return { ...labels, count: end - start, ids: labels.ids.subarray(start, end) };
  return { ...labels, count: end - start, sets: labels.sets.subarray(start * labels.words, end * labels.words) };
}

/** Every class id an integer in [-1, 2^31-1]: checked before anything narrows them to int32. */
function checkClassIds(arr: NpyArray, file: string): void {
  const bad = (k: number, v: number | bigint): never => {
    throw new FghError(`${file}: item ${k} has class id ${v}; class ids are integers from -1 (unlabelled) to ${MAX_CLASS_ID} (stored as int32)`);
  };
  const d = arr.data;
  if (d instanceof BigInt64Array || d instanceof BigUint64Array) {
    // As bigints: beyond 2^53 a float64 would round the value shown.
    for (let k = 0; k < d.length; k++) if (d[k]! < -1n || d[k]! > BigInt(MAX_CLASS_ID)) bad(k, d[k]!);
    return;
  }
  for (let k = 0; k < d.length; k++) {
    const v = d[k]!;
    if (!Number.isInteger(v) || v < -1 || v > MAX_CLASS_ID) bad(k, v);
  }
}

/**
 * Labels from a .npy: integer [N] or [N,1] = class ids; [N,C] = one-hot/multi-hot (any numeric
 * type, values 0 or 1). Rows of a one-hot matrix with exactly one class become single ids
 * (same relevance, faster), unless some row has several or none.
 */
export function labelsFromNpy(arr: NpyArray, file: string): Labels {
  const isIds = arr.shape.length === 1 || (arr.shape.length === 2 && arr.shape[1] === 1 && arr.dtype !== 'b1');
  if (isIds) {
    checkClassIds(arr, file);
    return singleLabels(npyToNumbers(arr, file));
  }
  if (arr.shape.length !== 2) throw new FghError(`${file}: labels must be [N] class ids or [N, classes] one-hot/multi-hot, got shape (${arr.shape.join(', ')})`);
  const v = npyToNumbers(arr, file);
  const [count, numClasses] = arr.shape as [number, number];
  // Anything but 0/1 (2, 0.5, -1, NaN) is more likely a wrong file than a membership.
  for (let k = 0; k < v.length; k++) {
    if (v[k] !== 0 && v[k] !== 1) throw new FghError(`${file}: row ${Math.floor(k / numClasses)} column ${k % numClasses} holds ${v[k]}; one-hot/multi-hot labels must be 0 or 1`);
  }
  const ids = new Int32Array(count);
  let oneHot = true;
  for (let i = 0; i < count && oneHot; i++) {
    let n = 0;
    for (let c = 0; c < numClasses; c++) {
      if (v[i * numClasses + c] !== 0) {
        n++;
        ids[i] = c;
      }
    }
    if (n !== 1) oneHot = false;
  }
  return oneHot ? singleLabels(ids, numClasses) : multiHotLabels(v, count, numClasses);
}

/** Relevance of one pair (used by the slow paths and by tests of the fast ones). */
export function shareLabel(a: Labels, i: number, b: Labels, j: number): boolean {
  if (a.kind === 'single' && b.kind === 'single') return a.ids[i]! >= 0 && a.ids[i] === b.ids[j];
  const [x, y] = alignLabels(a, b) as [Labels & { kind: 'multi' }, Labels & { kind: 'multi' }];
  for (let w = 0; w < x.words; w++) if ((x.sets[i * x.words + w]! & y.sets[j * y.words + w]!) !== 0) return true;
  return false;
}
