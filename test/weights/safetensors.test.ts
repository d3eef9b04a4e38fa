import test from 'ava';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { encodeSafetensors, parseSafetensors, readSafetensors, writeSafetensors } from '../../src/weights/safetensors.js';
import { readTorchFile } from '../../src/weights/torch-file.js';
import { FghError } from '../../src/util/errors.js';
import { missingPythonMessage, referencePython } from '../helpers/python.js';
import { differences, fixtures, readReference, tempDir } from './fixtures.js';

const python = referencePython('torch', 'numpy');
const withPython = python ? test : test.skip;
if (!python) test.skip(`python fixtures: ${missingPythonMessage('torch', 'numpy')}`, () => undefined);

function header(buf: Uint8Array): { len: number; json: Record<string, { dtype: string; shape: number[]; data_offsets: number[] }> } {
  const len = Number(Buffer.from(buf).readBigUInt64LE(0));
  return { len, json: JSON.parse(Buffer.from(buf.subarray(8, 8 + len)).toString('utf8')) };
}

test('round trip in memory: F32 and I64, 0-d and empty tensors, aligned header, file order kept', (t) => {
  const tensors = new Map([
    ['z.weight', { shape: [2, 3], data: Float32Array.from([1, -2, 3.5, 0, -0, 1e-30]) }],
    ['a.count', { shape: [], data: Float32Array.from([12]), dtype: 'int64' as const }],
    ['empty', { shape: [0, 4], data: new Float32Array(0) }],
    ['big', { shape: [1], data: Float32Array.from([2 ** 40]), dtype: 'int64' as const }],
  ]);
  const buf = encodeSafetensors(tensors);
  const h = header(buf);
  t.is(h.len % 8, 0, 'data starts 8-byte aligned');
  t.deepEqual(Object.keys(h.json), ['__metadata__', 'z.weight', 'a.count', 'empty', 'big']);
  t.deepEqual(h.json['a.count'], { dtype: 'I64', shape: [], data_offsets: [24, 32] });
  t.is(h.json['z.weight']!.dtype, 'F32');
  const back = parseSafetensors(buf, 'mem');
  t.deepEqual(back.metadata, { format: 'pt' });
  t.deepEqual([...back.tensors.keys()], [...tensors.keys()]);
  t.deepEqual(differences(back.tensors, tensors), []);
  t.is(back.tensors.get('a.count')!.dtype, 'int64');
  t.is(back.tensors.get('z.weight')!.dtype, 'float32');
  t.throws(() => encodeSafetensors(new Map([['x', { shape: [1], data: Float32Array.from([0.5]), dtype: 'int64' as const }]])), { message: 'x: int64 tensor holds non-integer 0.5' });
  t.throws(() => encodeSafetensors(new Map([['x', { shape: [2, 2], data: new Float32Array(3) }]])), { message: 'x: 3 values for shape [2,2]' });
});

test('damaged safetensors files: one-line errors', (t) => {
  const good = encodeSafetensors(new Map([['w', { shape: [4], data: Float32Array.from([1, 2, 3, 4]) }]]));
  const withHeader = (json: unknown, data = new Uint8Array(16)): Uint8Array => {
    const text = Buffer.from(JSON.stringify(json));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(text.length));
    return Buffer.concat([len, text, data]);
  };
  const cases: Array<[Uint8Array, RegExp]> = [
    [good.subarray(0, 5), /^f: truncated: 5 bytes, not even a safetensors header length$/],
    [good.subarray(0, 20), /^f: truncated: safetensors header needs \d+ bytes, 12 left$/],
    [good.subarray(0, good.length - 1), /^f: truncated: tensor w ends at byte 16 of the data, which has 15$/],
    [withHeader({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 12] } }), /^f: w: F32 \[4\] needs 16 bytes, data_offsets give 12$/],
    [withHeader({ w: { dtype: 'C64', shape: [2], data_offsets: [0, 16] } }), /^f: w: unsupported dtype "C64"$/],
    [withHeader({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }), /^f: w: bad shape \[-1\]$/],
    [withHeader({ w: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }), /^f: w: bad data_offsets \[8,0\]$/],
    [withHeader([1, 2]), /^f: bad safetensors header: not a JSON object$/],
  ];
  const broken = Buffer.from(good);
  broken[9] = 0x7d; // '}' right after '{': invalid JSON
  cases.push([broken, /^f: bad safetensors header: /]);
  for (const [buf, pattern] of cases) {
    const e = t.throws(() => parseSafetensors(buf, 'f'), { instanceOf: FghError });
    t.regex(e!.message, pattern);
    t.false(e!.message.includes('\n'));
  }
});

withPython('a file written by numpy (F64/F32/F16/BF16/I64/I32/U8/BOOL, unaligned data) reads exactly', async (t) => {
  const dir = tempDir(t, 'st-read');
  fixtures(python!, 'write-safetensors', dir);
  const ref = readReference(dir);
  const file = path.join(dir, 'st.safetensors');
  t.not(header(readFileSync(file)).len % 8, 0, 'the fixture really is unaligned');
  const st = await readSafetensors(file);
  t.deepEqual(st.metadata, { format: 'pt', note: 'numpy writer' });
  t.deepEqual(differences(st.tensors, ref.tensors), []);
  t.deepEqual(Object.fromEntries([...st.tensors].map(([n, x]) => [n, x.dtype])), ref.dtypes);
  // readTorchFile recognises safetensors by content.
  t.deepEqual(differences(await readTorchFile(file), ref.tensors), []);
});

withPython('our writer: the file passes the reference layout rules and holds the same tensors as the .pth', async (t) => {
  const dir = tempDir(t, 'st-write');
  fixtures(python!, 'small', dir);
  const tensors = await readTorchFile(path.join(dir, 'zip.pth'));
  const out = path.join(dir, 'ours.safetensors');
  const size = await writeSafetensors(out, tensors);
  t.is(size, readFileSync(out).length);
  const report = JSON.parse(fixtures(python!, 'check-safetensors', out, path.join(dir, 'zip.pth'))) as {
    header_aligned: boolean;
    metadata: Record<string, string>;
    names_in_order: boolean;
    extra: string[];
    mismatches: string[];
    dtypes: Record<string, string>;
  };
  t.true(report.header_aligned);
  t.deepEqual(report.metadata, { format: 'pt' });
  t.true(report.names_in_order);
  t.deepEqual(report.extra, []);
  t.deepEqual(report.mismatches, []);
  t.is(report.dtypes['bn.num_batches_tracked'], 'I64');
  t.is(report.dtypes['i64'], 'I64');
  t.is(report.dtypes['f64'], 'F32');
});
