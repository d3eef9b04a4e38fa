import test from 'ava';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeNpy, parseNpy, readNpy, writeNpySync, type NpyArray, type NpyDtype } from '../../src/util/npy.js';
import { FghError } from '../../src/util/errors.js';
import { missingPythonMessage, referencePython, runPython } from '../helpers/python.js';

const python = referencePython('numpy');

function tmpDir(t: { teardown: (f: () => void) => void }): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-npy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Values as strings, so that 64-bit integers compare exactly. */
function asStrings(a: NpyArray): string[] {
  return Array.from(a.data as ArrayLike<number | bigint>, (v) => (typeof v === 'number' && Object.is(v, -0) ? '-0' : String(v)));
}

// numpy writes every dtype in both byte orders, C and Fortran order, format versions 1, 2 and 3.
const WRITE_SCRIPT = String.raw`
import json, sys, numpy as np
from numpy.lib import format as fmt
out = sys.argv[1]
base = {
  'u1': [0, 1, 127, 128, 255, 7], 'i1': [-128, -1, 0, 1, 127, 5], 'b1': [True, False, True, True, False, False],
  'u2': [0, 1, 65535, 256, 4660, 9], 'i2': [-32768, -1, 0, 1, 32767, 300],
  'u4': [0, 1, 4294967295, 65536, 305419896, 11], 'i4': [-2147483648, -1, 0, 1, 2147483647, 70000],
  'u8': [0, 1, 18446744073709551615, 4294967296, 9007199254740993, 13],
  'i8': [-9223372036854775808, -1, 0, 1, 9223372036854775807, -9007199254740993],
  'f4': [0.0, -0.0, 1.5, -2.25, 3.4028234663852886e38, 1.1754943508222875e-38],
  'f8': [0.0, -0.0, 0.1, -1e300, 5e-324, 2.0**53 + 2],
}
manifest = {}
for code, vals in base.items():
  for endian in ('<', '>'):
    for order in ('C', 'F'):
      for version in ((1, 0), (2, 0), (3, 0)):
        dt = np.dtype(('?' if code == 'b1' else code)).newbyteorder(endian)
        a = np.array(vals * 4, dtype=dt).reshape(2, 3, 4)
        if order == 'F':
          a = np.asfortranarray(a)
        name = '%s_%s_%s_v%d.npy' % (code, 'le' if endian == '<' else 'be', order, version[0])
        with open(out + '/' + name, 'wb') as f:
          fmt.write_array(f, a, version=version)
        c = np.ascontiguousarray(a).reshape(-1)
        def s(v):
          if code == 'b1': return '1' if v else '0'
          if code in ('f4', 'f8'):
            v = float(v)
            return '-0' if v == 0 and np.signbit(v) else repr(v).replace('inf', 'Infinity')
          return str(int(v))
        manifest[name] = {'dtype': code, 'shape': list(a.shape), 'values': [s(v) for v in c]}
np.save(out + '/scalar.npy', np.array(3.5, dtype='<f8'))
np.save(out + '/empty.npy', np.zeros((0, 3), dtype='<i4'))
np.save(out + '/unicode.npy', np.array(['ab', 'c']))
np.save(out + '/complex.npy', np.zeros(3, dtype=np.complex64))
np.save(out + '/half.npy', np.zeros(3, dtype=np.float16))
np.save(out + '/structured.npy', np.zeros(2, dtype=[('a', '<i4'), ('b', '<f4')]))
json.dump(manifest, open(out + '/manifest.json', 'w'))
`;

(python ? test : test.skip)(`reads every supported dtype written by numpy: both byte orders, C and Fortran order, versions 1-3${python ? '' : ` (${missingPythonMessage('numpy')})`}`, (t) => {
  if (!python) return;
  const dir = tmpDir(t);
  runPython(python, WRITE_SCRIPT, [dir]);
  const manifest = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as Record<string, { dtype: NpyDtype; shape: number[]; values: string[] }>;
  const names = Object.keys(manifest);
  t.is(names.length, 11 * 2 * 2 * 3);
  for (const name of names) {
    const want = manifest[name]!;
    const got = readNpy(path.join(dir, name));
    t.is(got.dtype, want.dtype, name);
    t.deepEqual(got.shape, want.shape, name);
    const isFloat = want.dtype === 'f4' || want.dtype === 'f8';
    const canon = (v: string) => (isFloat && v !== '-0' ? String(Number(v)) : v);
    t.deepEqual(asStrings(got).map(canon), want.values.map(canon), name);
  }
  const scalar = readNpy(path.join(dir, 'scalar.npy'));
  t.deepEqual([scalar.shape, Array.from(scalar.data as Float64Array)], [[], [3.5]]);
  const empty = readNpy(path.join(dir, 'empty.npy'));
  t.deepEqual([empty.dtype, empty.shape, empty.data.length], ['i4', [0, 3], 0]);
  for (const [file, re] of [
    ['unicode.npy', /unicode\.npy: unsupported dtype '<U2'/],
    ['complex.npy', /complex\.npy: unsupported dtype '<c8'/],
    ['half.npy', /half\.npy: unsupported dtype '<f2'/],
    ['structured.npy', /structured\.npy: unsupported dtype .*structured arrays are not supported/],
  ] as const) {
    const e = t.throws(() => readNpy(path.join(dir, file)), { instanceOf: FghError });
    t.regex(e!.message, re);
  }
});

(python ? test : test.skip)(`files we write load in numpy with the same dtype, shape and values${python ? '' : ` (${missingPythonMessage('numpy')})`}`, (t) => {
  if (!python) return;
  const dir = tmpDir(t);
  const arrays: Record<string, NpyArray> = {
    u1: { dtype: 'u1', shape: [2, 3], data: Uint8Array.from([0, 1, 2, 253, 254, 255]) },
    i1: { dtype: 'i1', shape: [3], data: Int8Array.from([-128, 0, 127]) },
    b1: { dtype: 'b1', shape: [4], data: Uint8Array.from([1, 0, 0, 1]) },
    u2: { dtype: 'u2', shape: [1, 2], data: Uint16Array.from([65535, 7]) },
    i2: { dtype: 'i2', shape: [2], data: Int16Array.from([-32768, 32767]) },
    u4: { dtype: 'u4', shape: [2], data: Uint32Array.from([4294967295, 1]) },
    i4: { dtype: 'i4', shape: [2, 2], data: Int32Array.from([-2147483648, -1, 0, 2147483647]) },
    u8: { dtype: 'u8', shape: [2], data: BigUint64Array.from([18446744073709551615n, 3n]) },
    i8: { dtype: 'i8', shape: [2], data: BigInt64Array.from([-9223372036854775808n, 9007199254740993n]) },
    f4: { dtype: 'f4', shape: [3], data: Float32Array.from([1.5, -0, 3.4028234663852886e38]) },
    f8: { dtype: 'f8', shape: [2, 1, 2], data: Float64Array.from([0.1, -1e300, 5e-324, 2 ** 53 + 2]) },
    scalar: { dtype: 'f8', shape: [], data: Float64Array.from([2.5]) },
    empty: { dtype: 'u1', shape: [0, 6], data: new Uint8Array(0) },
  };
  const expected: Record<string, { descr: string; shape: number[]; values: string[] }> = {};
  for (const [name, a] of Object.entries(arrays)) {
    writeNpySync(path.join(dir, `${name}.npy`), a);
    const np = { u1: '|u1', i1: '|i1', b1: '|b1', u2: '<u2', i2: '<i2', u4: '<u4', i4: '<i4', u8: '<u8', i8: '<i8', f4: '<f4', f8: '<f8' }[a.dtype];
    expected[name] = { descr: np, shape: a.shape, values: asStrings(a) };
    const bytes = readFileSync(path.join(dir, `${name}.npy`));
    t.is((10 + bytes.readUInt16LE(8)) % 64, 0, `${name}: data 64-byte aligned`);
  }
  writeFileSync(path.join(dir, 'expected.json'), JSON.stringify(expected));
  const out = runPython(
    python,
    String.raw`
import json, sys, numpy as np
d = sys.argv[1]
exp = json.load(open(d + '/expected.json'))
bad = []
for name, e in exp.items():
  a = np.load(d + '/' + name + '.npy')
  if a.dtype.str != e['descr']: bad.append('%s: dtype %s' % (name, a.dtype.str))
  if list(a.shape) != e['shape']: bad.append('%s: shape %s' % (name, a.shape))
  for v, w in zip(a.reshape(-1).tolist(), e['values']):
    if a.dtype.kind == 'f':
      ok = (v == float(w)) and (np.signbit(v) == (w == '-0' or w.startswith('-')))
    elif a.dtype.kind == 'b':
      ok = int(v) == int(w)
    else:
      ok = int(v) == int(w)
    if not ok: bad.append('%s: %r != %s' % (name, v, w))
print('ok' if not bad else '\n'.join(bad))
`,
    [dir],
  );
  t.is(out.trim(), 'ok');
});

test('malformed files are refused with messages that say what is wrong', (t) => {
  const good = encodeNpy({ dtype: 'i4', shape: [2, 2], data: Int32Array.from([1, 2, 3, 4]) });
  t.deepEqual(Array.from(parseNpy(good).data as Int32Array), [1, 2, 3, 4]);
  const header = (text: string, major = 1) => {
    const pre = major === 1 ? 10 : 12;
    const pad = Math.ceil((pre + text.length + 1) / 64) * 64 - pre - 1;
    const h = text.padEnd(pad, ' ') + '\n';
    const b = new Uint8Array(pre + h.length);
    b.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]);
    if (major === 1) new DataView(b.buffer).setUint16(8, h.length, true);
    else new DataView(b.buffer).setUint32(8, h.length, true);
    for (let i = 0; i < h.length; i++) b[pre + i] = h.charCodeAt(i);
    return b;
  };
  const cases: Array<[Uint8Array, RegExp]> = [
    [new TextEncoder().encode('hello world, not numpy'), /^x\.npy: not a NumPy \.npy file/],
    [Uint8Array.from([...good.subarray(0, 6), 4, 0, ...good.subarray(8)]), /unsupported \.npy format version 4\.0/],
    [good.subarray(0, good.length - 3), /truncated \.npy data \(shape \(2, 2\) of int32 needs 16 bytes, file has 13\)/],
    [Uint8Array.from([...good, 0]), /1 unexpected bytes after the \.npy data/],
    [good.subarray(0, 30), /truncated \.npy header/],
    [header("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), "), /malformed \.npy header/],
    [header("{'descr': '<i4', 'shape': (2,), }"), /fortran_order missing/],
    [header("{'descr': '<i4', 'fortran_order': False, 'shape': (-2,), }"), /malformed \.npy header \(shape/],
    [header("{'descr': 'O', 'fortran_order': False, 'shape': (2,), }"), /unsupported dtype 'O'/],
    [Uint8Array.from([...header("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }"), 1, 2]), /bool array holds the byte 2 at item 1/],
  ];
  for (const [bytes, re] of cases) {
    const e = t.throws(() => parseNpy(bytes, 'x.npy'), { instanceOf: FghError });
    t.regex(e!.message, re);
    t.false(e!.message.includes('\n'), 'one line');
  }
  // Version 2 headers (4-byte length) parse too.
  const v2 = Uint8Array.from([...header("{'descr': '>u2', 'fortran_order': True, 'shape': (2, 2), }", 2), 0, 1, 0, 2, 0, 3, 0, 4]);
  const a = parseNpy(v2);
  t.deepEqual([a.dtype, a.shape, Array.from(a.data as Uint16Array)], ['u2', [2, 2], [1, 3, 2, 4]]);
});

// .npy has no checksum: a flipped bit can make another valid file ('<f4' -> '>f4' is one bit).
// What must hold is that our reader never invents a reading: each flip of the header is refused,
// reads back identical, or reads exactly as numpy (the format's reference) reads the same bytes.
(python ? test : test.skip)(`every single-bit flip of a .npy header is refused, harmless, or read exactly as numpy reads it${python ? '' : ` (${missingPythonMessage('numpy')})`}`, (t) => {
  const dir = tmpDir(t);
  const original: NpyArray = { dtype: 'f4', shape: [3, 4], data: Float32Array.from({ length: 12 }, (_, i) => i * 1.25 - 4) };
  const bytes = encodeNpy(original);
  const headerEnd = 10 + new DataView(bytes.buffer, bytes.byteOffset).getUint16(8, true);
  let refused = 0;
  let identical = 0;
  const differing: Array<{ file: string; got: NpyArray }> = [];
  for (let bit = 0; bit < headerEnd * 8; bit++) {
    const b = Uint8Array.from(bytes);
    b[bit >> 3]! ^= 1 << (bit & 7);
    let got: NpyArray;
    try {
      got = parseNpy(b, 'x.npy');
    } catch (e) {
      t.true(e instanceof FghError, `bit ${bit}: ${String(e)}`);
      refused++;
      continue;
    }
    if (got.dtype === original.dtype && got.shape.join() === original.shape.join() && asStrings(got).join() === asStrings(original).join()) {
      identical++;
      continue;
    }
    const file = path.join(dir, `flip${bit}.npy`);
    writeFileSync(file, b);
    differing.push({ file, got });
  }
  // numpy on every file we read differently: it must agree on dtype, shape and every value.
  const script = String.raw`
import json, sys, numpy as np
out = []
for f in json.loads(sys.stdin.read()):
  try:
    a = np.load(f, allow_pickle=False)
    out.append({'dtype': a.dtype.str[1:], 'shape': list(a.shape), 'values': [repr(float(v)) if a.dtype.kind == 'f' else str(v) for v in a.reshape(-1).tolist()]})
  except Exception as e:
    out.append({'error': str(e)})
print(json.dumps(out))`;
  const numpy = differing.length ? (JSON.parse(runPython(python!, script, [], JSON.stringify(differing.map((d) => d.file)))) as Array<{ dtype?: string; shape?: number[]; values?: string[]; error?: string }>) : [];
  differing.forEach((d, i) => {
    const ref = numpy[i]!;
    t.is(ref.error, undefined, `${path.basename(d.file)}: we read it, numpy refuses it (${ref.error ?? ''})`);
    t.is(d.got.dtype as string, ref.dtype ?? '', path.basename(d.file));
    t.deepEqual(d.got.shape, ref.shape, path.basename(d.file));
    const ours = Array.from(d.got.data as ArrayLike<number>, (v) => (d.got.dtype.startsWith('f') ? pyRepr(v) : String(v)));
    t.deepEqual(ours, ref.values, path.basename(d.file));
  });
  t.log(`${headerEnd * 8} flips: ${refused} refused, ${identical} identical, ${differing.length} read as numpy reads them`);
  t.true(refused > headerEnd * 4, 'most flips are refused');
});

/** Python's repr of a float (shortest round-trip), for comparing with numpy's values. */
function pyRepr(v: number): string {
  if (Number.isNaN(v)) return 'nan';
  if (!Number.isFinite(v)) return v > 0 ? 'inf' : '-inf';
  if (Number.isInteger(v) && Math.abs(v) < 1e16) return `${v.toFixed(1)}`.replace(/^-0\.0$/, Object.is(v, -0) ? '-0.0' : '0.0');
  const s = String(v);
  // JS writes 1e+21 / 1.5e-7; Python 1e+21 / 1.5e-07.
  return s.replace(/e([+-])(\d)$/, 'e$10$2');
}
