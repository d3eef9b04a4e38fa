import test from 'ava';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseSafetensors, type SafetensorsContents } from '../../src/weights/safetensors.js';
import { FghError } from '../../src/util/errors.js';
import { missingPythonMessage, referencePython, runPython } from '../helpers/python.js';

const python = referencePython('numpy');

/**
 * safetensors has no checksum: a flipped bit in the header can make another valid file (a tensor
 * name one letter off). What must hold is that our reader never invents a reading: every
 * single-bit flip of the 8-byte length and the JSON header is refused in one line, reads back
 * the same tensors, or reads exactly as an independent reader (json + struct + numpy, following
 * the format's specification) reads the same bytes. The file itself is written by that
 * independent writer, not by ours.
 */

// Writes the file with json + struct (the format: u64 LE header length, JSON header, raw LE
// data; entries cover the data without holes) and reads any list of files back the same way.
const SCRIPT = String.raw`
import json, struct, sys, numpy as np

DT = {'F64': '<f8', 'F32': '<f4', 'F16': '<f2', 'I64': '<i8', 'I32': '<i4', 'I16': '<i2', 'I8': 'i1', 'U8': 'u1', 'BOOL': '?', 'BF16': None}
SIZE = {'F64': 8, 'F32': 4, 'F16': 2, 'BF16': 2, 'I64': 8, 'I32': 4, 'I16': 2, 'I8': 1, 'U8': 1, 'BOOL': 1}

def write(path):
    tensors = [
        ('conv.weight', 'F32', [2, 3], np.array([[0.5, -1.25, 3.0], [1e-3, -0.0, 7.5]], '<f4').tobytes()),
        ('bn.running_mean', 'F16', [3], np.array([0.25, -2.0, 1024.0], '<f2').tobytes()),
        ('bn.num_batches_tracked', 'I64', [], np.array(7, '<i8').tobytes()),
        ('fc.bias', 'F64', [2], np.array([1.5, -0.125], '<f8').tobytes()),
        ('mask', 'U8', [4], bytes([0, 1, 200, 255])),
        ('bf', 'BF16', [2], (np.array([1.5, -3.0], '<f4').view('<u4') >> 16).astype('<u2').tobytes()),
    ]
    header, data = {'__metadata__': {'format': 'pt'}}, b''
    for name, dtype, shape, raw in tensors:
        header[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(',', ':')).encode()
    text += b' ' * (-len(text) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)) + text + data)

def read(path):
    buf = open(path, 'rb').read()
    try:
        (n,) = struct.unpack('<Q', buf[:8])
        if n > 100_000_000 or 8 + n > len(buf):
            raise ValueError('bad header length')
        header = json.loads(buf[8:8 + n].decode('utf-8'))
        if not isinstance(header, dict):
            raise ValueError('not an object')
        data = buf[8 + n:]
        meta = header.pop('__metadata__', {})
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise ValueError('bad metadata')
        out, spans = {}, []
        for name, e in header.items():
            if not isinstance(e, dict) or e.get('dtype') not in SIZE:
                raise ValueError('bad entry')
            shape, off = e.get('shape'), e.get('data_offsets')
            ok_int = lambda v: type(v) is int and v >= 0
            if not isinstance(shape, list) or not all(ok_int(d) for d in shape):
                raise ValueError('bad shape')
            if not isinstance(off, list) or len(off) != 2 or not all(ok_int(v) for v in off) or off[0] > off[1]:
                raise ValueError('bad offsets')
            count = int(np.prod(shape, dtype=np.int64))
            if off[1] - off[0] != count * SIZE[e['dtype']] or off[1] > len(data):
                raise ValueError('size mismatch')
            raw = data[off[0]:off[1]]
            if e['dtype'] == 'BF16':
                values = (np.frombuffer(raw, '<u2').astype('<u4') << 16).view('<f4')
            else:
                values = np.frombuffer(raw, DT[e['dtype']])
            out[name] = {'dtype': e['dtype'], 'shape': shape, 'values': [repr(float(v)) for v in values.astype('<f4')]}
            spans.append(tuple(off))
        spans.sort()
        end = 0
        for b, e in spans:
            if b != end:
                raise ValueError('holes or overlaps in the data')
            end = e
        if end != len(data):
            raise ValueError('data not fully indexed')
        return {'metadata': meta, 'tensors': out}
    except Exception as e:
        return {'error': str(e)}

if sys.argv[1] == 'write':
    write(sys.argv[2])
    print(json.dumps(read(sys.argv[2])))
else:
    print(json.dumps([read(f) for f in json.loads(sys.stdin.read())]))
`;

const TORCH_TO_SAFETENSORS: Record<string, string> = { float64: 'F64', float32: 'F32', float16: 'F16', bfloat16: 'BF16', int64: 'I64', int32: 'I32', int16: 'I16', int8: 'I8', uint8: 'U8', bool: 'BOOL' };

interface Reading {
  metadata: Record<string, string>;
  tensors: Record<string, { dtype: string; shape: number[]; values: string[] }>;
}

/** Python's repr of a float32 value held as a double (shortest round-trip of the double). */
function pyRepr(v: number): string {
  if (Number.isNaN(v)) return 'nan';
  if (!Number.isFinite(v)) return v > 0 ? 'inf' : '-inf';
  if (Number.isInteger(v) && Math.abs(v) < 1e16) return Object.is(v, -0) ? '-0.0' : `${v.toFixed(1)}`;
  return String(v).replace(/e([+-])(\d)$/, 'e$10$2');
}

/** Ours, in the reference's terms: dtype names of the file, values as Python prints float32s. */
function reading(c: SafetensorsContents): Reading {
  const tensors: Reading['tensors'] = {};
  for (const [name, t] of c.tensors) tensors[name] = { dtype: TORCH_TO_SAFETENSORS[t.dtype]!, shape: [...t.shape], values: Array.from(t.data, pyRepr) };
  return { metadata: { ...c.metadata }, tensors };
}

(python ? test : test.skip)(`every single-bit flip of a safetensors header is refused, harmless, or read exactly as an independent reader reads it${python ? '' : ` (${missingPythonMessage('numpy')})`}`, (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-st-flips-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'model.safetensors');
  const reference = JSON.parse(runPython(python!, SCRIPT, ['write', file])) as Reading;
  const bytes = new Uint8Array(readFileSync(file));
  const original = reading(parseSafetensors(bytes, 'model.safetensors'));
  // The unflipped file: our decoding is numpy's, tensor by tensor (F32, F16, I64, F64, U8, BF16).
  t.deepEqual(original, reference);

  const headerEnd = 8 + Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  let refused = 0;
  let identical = 0;
  const differing: Array<{ bit: number; file: string; got: Reading }> = [];
  const same = JSON.stringify(original);
  for (let bit = 0; bit < headerEnd * 8; bit++) {
    const b = Uint8Array.from(bytes);
    b[bit >> 3]! ^= 1 << (bit & 7);
    let got: Reading;
    try {
      got = reading(parseSafetensors(b, 'x.safetensors'));
    } catch (e) {
      t.true(e instanceof FghError, `bit ${bit}: ${String(e)}`);
      t.false((e as Error).message.includes('\n'), `bit ${bit}: one line`);
      refused++;
      continue;
    }
    if (JSON.stringify(got) === same) {
      identical++;
      continue;
    }
    const flipped = path.join(dir, `flip${bit}.safetensors`);
    writeFileSync(flipped, b);
    differing.push({ bit, file: flipped, got });
  }
  // The independent reader on every file we read differently: it must read the same.
  const refs = differing.length ? (JSON.parse(runPython(python!, SCRIPT, ['read'], JSON.stringify(differing.map((d) => d.file)))) as Array<Reading & { error?: string }>) : [];
  differing.forEach((d, i) => {
    const ref = refs[i]!;
    t.is(ref.error, undefined, `bit ${d.bit}: we read it, the reference refuses it (${ref.error ?? ''})`);
    t.deepEqual(d.got, ref, `bit ${d.bit}`);
  });
  t.log(`${headerEnd * 8} flips of the length and the ${headerEnd - 8}-byte header: ${refused} refused, ${identical} identical, ${differing.length} read as the reference reads them (a renamed tensor or metadata value)`);
  t.true(refused > headerEnd * 4, 'most flips are refused');
  // What may differ at all: names and metadata strings, never a dtype, shape or value.
  for (const d of differing) {
    const ours = Object.values(d.got.tensors).map((x) => JSON.stringify(x)).sort();
    const before = Object.values(original.tensors).map((x) => JSON.stringify(x)).sort();
    t.deepEqual(ours, before, `bit ${d.bit}: only a name or a metadata value changed`);
  }
});
