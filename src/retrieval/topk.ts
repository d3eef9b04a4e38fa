/**
 * Exact top-K selection by (distance, index) for one query, fed with candidates in increasing
 * index order. Distances are small integers (0..bits), so instead of a heap it keeps a count per
 * distance and a threshold T = the smallest distance at which K items have been seen: an item
 * with d >= T can never enter the top K (K items with d <= T and smaller indices are ahead of it),
 * so the scan kernel only reports items with d < T. The final order is a stable counting sort.
 */
export class TopK {
  /** Report only distances below this (exclusive): bits + 1 until K items have been seen. */
  threshold: number;
  private below = 0;
  private readonly cnt: Int32Array;
  private idx: Int32Array;
  private dist: Int32Array;
  private len = 0;

  constructor(
    readonly k: number,
    readonly bits: number,
  ) {
    this.threshold = bits + 1;
    this.cnt = new Int32Array(bits + 2);
    const cap = Math.max(16, Math.min(4 * k, 1 << 16));
    this.idx = new Int32Array(cap);
    this.dist = new Int32Array(cap);
  }

  /** Resets for another query, keeping the buffers. */
  reset(): void {
    this.threshold = this.bits + 1;
    this.below = 0;
    this.len = 0;
    this.cnt.fill(0);
  }

  /** `pairs` holds n (index, distance) int32 pairs in increasing index order. */
  pushPairs(pairs: Int32Array, offset: number, n: number): void {
    const k = this.k;
    const cnt = this.cnt;
    let T = this.threshold;
    let below = this.below;
    for (let p = offset, e = offset + 2 * n; p < e; p += 2) {
      const d = pairs[p + 1]!;
      if (d >= T) continue;
      if (this.len === this.idx.length) this.makeRoom(T);
      this.idx[this.len] = pairs[p]!;
      this.dist[this.len++] = d;
      cnt[d]!++;
      below++;
      while (below >= k) {
        T--;
        below -= cnt[T]!;
      }
    }
    this.threshold = T;
    this.below = below;
  }

  /** Drops items beyond the threshold (never in the result), or grows the buffers. */
  private makeRoom(T: number): void {
    let w = 0;
    for (let r = 0; r < this.len; r++) {
      if (this.dist[r]! <= T) {
        this.idx[w] = this.idx[r]!;
        this.dist[w++] = this.dist[r]!;
      }
    }
    this.len = w;
    if (w > this.idx.length / 2) {
      const idx = new Int32Array(this.idx.length * 2);
      const dist = new Int32Array(this.idx.length * 2);
      idx.set(this.idx.subarray(0, w));
      dist.set(this.dist.subarray(0, w));
      this.idx = idx;
      this.dist = dist;
    }
  }

  /** Writes the first min(K, seen) items by (distance, index); returns how many. */
  emit(outIdx: Int32Array, outDist: Int32Array, at: number): number {
    return stableSortByDistance(this.idx, this.dist, this.len, this.bits, this.k, outIdx, outDist, at);
  }
}

/**
 * Counting sort of `n` (index, distance) items, already in index order, by distance; writes the
 * first `limit` to out[at...]. Returns the number written.
 */
export function stableSortByDistance(
  idx: Int32Array,
  dist: Int32Array,
  n: number,
  bits: number,
  limit: number,
  outIdx: Int32Array,
  outDist: Int32Array,
  at: number,
): number {
  const m = Math.min(limit, n);
  const start = new Int32Array(bits + 2);
  for (let r = 0; r < n; r++) start[dist[r]! + 1]!++;
  for (let d = 1; d <= bits + 1; d++) start[d]! += start[d - 1]!;
  for (let r = 0; r < n; r++) {
    const d = dist[r]!;
    const pos = start[d]!++;
    if (pos < m) {
      outIdx[at + pos] = idx[r]!;
      outDist[at + pos] = d;
    }
  }
  return m;
}
