/**
 * Exact top-K by Hamming distance over packed codes for the page, ties by database index (the
 * order `fgh search` and the metrics use). Distances from a 256-entry popcount table, then a
 * counting pass over the distance values instead of a sort: O(count + bits).
 */

const POPCOUNT = (() => {
  const t = new Uint8Array(256);
  for (let i = 1; i < 256; i++) t[i] = (i & 1) + t[i >> 1]!;
  return t;
})();

export interface Ranked {
  indices: Int32Array;
  distances: Int32Array;
}

/** `query` holds at least `stride` bytes laid out like each code in `codes` (count x stride bytes). */
export function hammingTopK(query: Uint8Array, codes: Uint8Array, stride: number, count: number, k: number): Ranked {
  if (codes.length < count * stride) throw new Error(`codes hold ${codes.length} bytes, ${count} x ${stride} expected`);
  const dist = new Int32Array(count);
  let maxD = 0;
  for (let i = 0; i < count; i++) {
    let d = 0;
    const base = i * stride;
    for (let b = 0; b < stride; b++) d += POPCOUNT[(codes[base + b]! ^ query[b]!) & 255]!;
    dist[i] = d;
    if (d > maxD) maxD = d;
  }
  const kk = Math.min(k, count);
  const hist = new Int32Array(maxD + 2);
  for (let i = 0; i < count; i++) hist[dist[i]!]!++;
  // Smallest radius whose ball holds K items; items at that radius fill the rest in index order.
  let radius = 0;
  let below = 0;
  while (below + hist[radius]! < kk) below += hist[radius++]!;
  const start = new Int32Array(radius + 1);
  for (let r = 1; r <= radius; r++) start[r] = start[r - 1]! + hist[r - 1]!;
  const indices = new Int32Array(kk);
  const distances = new Int32Array(kk);
  for (let i = 0; i < count; i++) {
    const d = dist[i]!;
    if (d > radius) continue;
    const slot = start[d]!;
    if (slot >= kk) continue; // only the radius's bucket can overflow
    indices[slot] = i;
    distances[slot] = d;
    start[d] = slot + 1;
  }
  return { indices, distances };
}

export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
