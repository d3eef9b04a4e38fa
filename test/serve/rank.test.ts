import test from 'ava';
import { hammingTopK, toHex } from '../../web/src/rank.js';
import { Rng } from '../../src/util/rng.js';

/** Brute force: every distance by bit loop, then a stable sort (ties by index). */
function bruteTopK(q: Uint8Array, codes: Uint8Array, stride: number, count: number, k: number): { indices: number[]; distances: number[] } {
  const rows = Array.from({ length: count }, (_, i) => {
    let d = 0;
    for (let b = 0; b < stride * 8; b++) d += ((codes[i * stride + (b >> 3)]! >> (b & 7)) & 1) ^ ((q[b >> 3]! >> (b & 7)) & 1);
    return { i, d };
  });
  rows.sort((a, b) => a.d - b.d || a.i - b.i);
  const top = rows.slice(0, k);
  return { indices: top.map((r) => r.i), distances: top.map((r) => r.d) };
}

test('page ranking = brute force with ties by index, for K below, at and above the gallery size', (t) => {
  const rng = new Rng(4);
  for (const [stride, count, bitsUsed] of [[4, 500, 12], [8, 300, 48], [4, 1, 32], [2, 64, 3]] as const) {
    // Few used bits make many ties; unused bits stay zero as in stored codes.
    const codes = new Uint8Array(stride * count);
    for (let i = 0; i < count; i++) for (let b = 0; b < bitsUsed; b++) if (rng.next() < 0.5) codes[i * stride + (b >> 3)]! |= 0x80 >> (b & 7);
    const q = codes.slice(0, stride);
    q[0]! ^= 0x80;
    for (const k of [1, 7, count, count + 5]) {
      const got = hammingTopK(q, codes, stride, count, k);
      const want = bruteTopK(q, codes, stride, count, k);
      t.deepEqual(Array.from(got.indices), want.indices, `stride ${stride} count ${count} k ${k}`);
      t.deepEqual(Array.from(got.distances), want.distances);
    }
  }
  t.is(toHex(Uint8Array.from([0, 15, 255])), '000fff');
  t.throws(() => hammingTopK(new Uint8Array(4), new Uint8Array(7), 4, 2, 1), { message: /7 bytes/ });
});
