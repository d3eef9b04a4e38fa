import test from 'ava';
import { codeStride, codesFromNpy, fromPackedBytes, packSigns, toPackedBytes, unpackBits, type Codes } from '../../src/retrieval/codes.js';
import { labelsFromNpy, toMultiHot } from '../../src/retrieval/labels.js';
import { FghError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { missingPythonMessage, referencePython, runPython } from '../helpers/python.js';

/** Bit b of code i, read the slow way from the packed bytes (MSB first). */
function bitAt(c: Codes, i: number, b: number): number {
  const byte = c.data[i * c.stride + Math.floor(b / 8)]!;
  return (byte >> (7 - (b % 8))) & 1;
}

function randomFeatures(rng: Rng, n: number, bits: number): Float32Array {
  const v = new Float32Array(n * bits);
  for (let k = 0; k < v.length; k++) v[k] = rng.normal();
  v[0] = 0; // exactly zero packs as 0
  return v;
}

test('stride: one 32-bit word up to 32 bits, whole 64-bit words beyond', (t) => {
  t.deepEqual([1, 8, 12, 32, 33, 48, 64, 65, 128, 129].map(codeStride), [4, 4, 4, 4, 8, 8, 8, 16, 16, 24]);
  t.throws(() => codeStride(0), { instanceOf: FghError });
  t.throws(() => codeStride(65536), { instanceOf: FghError });
});

test('features pack MSB first, bit = 1 iff value > 0, padding zero; unpack and the packed layout round-trip', (t) => {
  const rng = new Rng(5);
  for (const bits of [1, 7, 12, 32, 48, 64, 65, 100]) {
    const n = 9;
    const f = randomFeatures(rng, n, bits);
    const c = packSigns(f, n, bits);
    t.is(c.stride, codeStride(bits));
    let ok = true;
    for (let i = 0; i < n; i++) {
      for (let b = 0; b < bits; b++) if (bitAt(c, i, b) !== (f[i * bits + b]! > 0 ? 1 : 0)) ok = false;
      for (let b = bits; b < c.stride * 8; b++) if (bitAt(c, i, b) !== 0) ok = false;
    }
    t.true(ok, `${bits} bits`);
    const u = unpackBits(c);
    t.deepEqual(Array.from(u), Array.from(f, (v) => (v > 0 ? 1 : 0)), `${bits} bits unpack`);
    const packed = toPackedBytes(c);
    t.is(packed.length, n * Math.ceil(bits / 8));
    t.deepEqual(fromPackedBytes(packed, n, Math.ceil(bits / 8), bits).data, c.data);
  }
});

test('packed input: bits beyond --bits are dropped, not counted', (t) => {
  const bytes = Uint8Array.from([0xff, 0xff, 0xab, 0xcd]);
  const c = fromPackedBytes(bytes, 2, 2, 12);
  t.deepEqual(Array.from(c.data), [0xff, 0xf0, 0, 0, 0xab, 0xc0, 0, 0]);
  t.throws(() => fromPackedBytes(bytes, 2, 2, 17), { message: /17 bits need 3 bytes per code, the rows have 2/ });
});

const numpy = referencePython('numpy');

(numpy ? test : test.skip)(`packing matches numpy: packbits(x > 0, axis=1)${numpy ? '' : ` (${missingPythonMessage('numpy')})`}`, (t) => {
  const py = numpy!;
  const rng = new Rng(11);
  const n = 6;
  const bits = 12;
  const f = randomFeatures(rng, n, bits);
  const out = runPython(py, 'import sys, json, numpy as np\nx = np.array(json.load(sys.stdin), dtype=np.float32).reshape(6, 12)\nprint(json.dumps(np.packbits(x > 0, axis=1).reshape(-1).tolist()))', [], JSON.stringify(Array.from(f)));
  t.deepEqual(Array.from(toPackedBytes(packSigns(f, n, bits))), JSON.parse(out) as number[]);
});

test('.npy codes: float signs, {0,1} and {-1,1} integers, bool, packed uint8 with --bits, and clear errors', (t) => {
  const signs = [1, -1, -1, 1, 1, 1, -1, -1, 1, -1, 1, 1];
  const bits01 = signs.map((s) => (s > 0 ? 1 : 0));
  const want = packSigns(signs, 1, 12);
  t.deepEqual(codesFromNpy({ dtype: 'f4', shape: [1, 12], data: Float32Array.from(signs) }, 'a').data, want.data);
  t.deepEqual(codesFromNpy({ dtype: 'i1', shape: [1, 12], data: Int8Array.from(signs) }, 'a').data, want.data);
  t.deepEqual(codesFromNpy({ dtype: 'i8', shape: [1, 12], data: BigInt64Array.from(bits01.map(BigInt)) }, 'a').data, want.data);
  t.deepEqual(codesFromNpy({ dtype: 'b1', shape: [1, 12], data: Uint8Array.from(bits01) }, 'a').data, want.data);
  // uint8 is packed by default; [N, bits] of 0/1 when the expected length says so, or --layout bits.
  const packed = toPackedBytes(want);
  const p = codesFromNpy({ dtype: 'u1', shape: [1, 2], data: packed }, 'a', { bits: 12 });
  t.deepEqual([p.bits, Array.from(p.data)], [12, Array.from(want.data)]);
  t.is(codesFromNpy({ dtype: 'u1', shape: [1, 2], data: packed }, 'a').bits, 16);
  t.deepEqual(codesFromNpy({ dtype: 'u1', shape: [1, 12], data: Uint8Array.from(bits01) }, 'a', { bits: 12 }).data, want.data);
  t.deepEqual(codesFromNpy({ dtype: 'u1', shape: [1, 12], data: Uint8Array.from(bits01) }, 'a', { layout: 'bits' }).data, want.data);
  const errors: Array<[Parameters<typeof codesFromNpy>, RegExp]> = [
    [[{ dtype: 'i4', shape: [1, 3], data: Int32Array.from([0, -1, 1]) }, 'c.npy'], /^c\.npy: integer codes mix 0 and -1/],
    [[{ dtype: 'i4', shape: [2, 2], data: Int32Array.from([0, 1, 1, 2]) }, 'c.npy'], /^c\.npy: row 1 column 1 holds 2; integer codes must be \{0,1\} or \{-1,1\}/],
    [[{ dtype: 'f4', shape: [4], data: new Float32Array(4) }, 'c.npy'], /must be a 2-D array/],
    [[{ dtype: 'f4', shape: [1, 4], data: new Float32Array(4) }, 'c.npy', { bits: 8 }], /expected 8 columns \(one per bit\), the array has 4/],
    [[{ dtype: 'u1', shape: [1, 2], data: new Uint8Array(2) }, 'c.npy', { bits: 24 }], /24-bit packed codes have 3 bytes per row, the array has 2/],
    [[{ dtype: 'f4', shape: [1, 2], data: new Float32Array(2) }, 'c.npy', { layout: 'packed' }], /packed codes must be uint8/],
  ];
  for (const [args, re] of errors) t.throws(() => codesFromNpy(...args), { instanceOf: FghError, message: re });
});

test('.npy labels: class ids, one-hot (kept as ids), multi-hot bitsets and unlabelled rows', (t) => {
  const ids = labelsFromNpy({ dtype: 'i8', shape: [3], data: BigInt64Array.from([2n, 0n, -1n]) }, 'l');
  t.deepEqual(ids.kind === 'single' && [Array.from(ids.ids), ids.numClasses], [[2, 0, -1], 3]);
  const oneHot = labelsFromNpy({ dtype: 'f4', shape: [2, 4], data: Float32Array.from([0, 0, 1, 0, 1, 0, 0, 0]) }, 'l');
  t.deepEqual(oneHot.kind === 'single' && [Array.from(oneHot.ids), oneHot.numClasses], [[2, 0], 4]);
  const multi = labelsFromNpy({ dtype: 'u1', shape: [2, 40], data: Uint8Array.from({ length: 80 }, (_, k) => (k === 3 || k === 35 || k === 39 ? 1 : 0)) }, 'l');
  t.is(multi.kind, 'multi');
  t.deepEqual(Array.from(toMultiHot(multi)).flatMap((v, k) => (v ? [k] : [])), [3, 35, 39]);
  t.throws(() => labelsFromNpy({ dtype: 'f4', shape: [2], data: Float32Array.from([1, 0.5]) }, 'l.npy'), { message: /^l\.npy: item 1 has class id 0\.5/ });
  t.throws(() => labelsFromNpy({ dtype: 'i4', shape: [1], data: Int32Array.from([-3]) }, 'l.npy'), { message: /^l\.npy: item 0 has class id -3/ });
});
