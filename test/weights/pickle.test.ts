import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { FghError } from '../../src/util/errors.js';
import { PickleDict, StorageRef, TensorRef, unpickle, type PickleValue } from '../../src/weights/pickle.js';
import { readTorchFile } from '../../src/weights/torch-file.js';
import { missingPythonMessage, referencePython, runPython } from '../helpers/python.js';
import { fixtures, rejection, tempDir } from './fixtures.js';

const python = referencePython('torch', 'numpy');

/** Plain-data view of an unpickled value, as Python's json module would print it. */
function toJson(v: PickleValue): unknown {
  if (typeof v === 'bigint') return `bigint:${v}`;
  if (Array.isArray(v)) return v.map(toJson);
  if (v instanceof PickleDict) return Object.fromEntries([...v.items].map(([k, x]) => [String(k), toJson(x)]));
  if (v instanceof Uint8Array) return `bytes:${Buffer.from(v).toString('hex')}`;
  return v;
}

function bytes(...parts: Array<string | number[]>): Uint8Array {
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));
}

function refused(t: import('ava').ExecutionContext, buf: Uint8Array, pattern: RegExp): void {
  const e = t.throws(() => unpickle(buf, 0, { source: 'x.pkl' }), { instanceOf: FghError });
  t.regex(e!.message, pattern);
  t.false(e!.message.includes('\n'), 'one line');
}

test('hand-made pickles: tuples are frozen, memo shares objects, STOP ends where the next pickle starts', (t) => {
  // PROTO 2, EMPTY_LIST, BINPUT 0, BININT1 7, APPEND, BINGET 0, TUPLE2, STOP, then trailing bytes.
  const buf = bytes([0x80, 2, 0x5d, 0x71, 0, 0x4b, 7, 0x61, 0x68, 0, 0x86, 0x2e], 'rest');
  const { value, end } = unpickle(buf, 0, { source: 'x' });
  t.is(end, 12);
  const tuple = value as readonly PickleValue[];
  t.true(Object.isFrozen(tuple));
  t.is(tuple[0], tuple[1], 'the memo returns the same list object');
  t.deepEqual(toJson(value), [[7], [7]]);
  // LONG1 of 10 bytes: the legacy torch.save magic number stays exact as a bigint.
  const magic = bytes([0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]);
  t.is(unpickle(magic, 0, { source: 'x' }).value, 0x1950a86a20f9469cfc6cn);
  // LONG1 negative, BINFLOAT (big-endian), NEWTRUE, NONE in a MARK ... TUPLE.
  const misc = bytes([0x80, 2, 0x28, 0x8a, 2, 0x7f, 0xfe, 0x47, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0x88, 0x4e, 0x74, 0x2e]);
  t.deepEqual(toJson(unpickle(misc, 0, { source: 'x' }).value), [-385, 1.5, true, null]);
});

test('refused opcodes and globals are named, in one line', (t) => {
  // Protocol 0 INST: the classic os.system payload.
  refused(t, bytes('(S\'ls\'\nios\nsystem\n.'), /x\.pkl: refusing to load: pickle opcode STRING at byte 1 is not allowed/);
  refused(t, bytes('(ios\nsystem\n.'), /refusing to load: pickle opcode INST at byte 1 is not allowed; weights files may only contain tensors/);
  refused(t, bytes([0x80, 2], 'cos\nsystem\n', [0x29, 0x52, 0x2e]), /refusing to load: pickle references os\.system; weights files may only contain tensors/);
  refused(t, bytes([0x80, 4, 0x8c, 8], 'builtins', [0x8c, 4], 'eval', [0x93, 0x2e]), /pickle references builtins\.eval/);
  // An allowed name that is not callable, and NEWOBJ.
  refused(t, bytes([0x80, 2], 'ctorch\nFloatStorage\n', [0x29, 0x52, 0x2e]), /refusing to load: pickle calls torch\.FloatStorage/);
  refused(t, bytes([0x80, 2], 'ccollections\nOrderedDict\n', [0x29, 0x81, 0x2e]), /pickle opcode NEWOBJ at byte \d+ is not allowed/);
  // BUILD is only for a dict's attribute dict.
  refused(t, bytes([0x80, 2, 0x5d, 0x7d, 0x62, 0x2e]), /refusing to load: pickle sets the state of list to dict/);
  const ok = unpickle(bytes([0x80, 2, 0x7d, 0x7d, 0x62, 0x2e]), 0, { source: 'x' }).value;
  t.true(ok instanceof PickleDict && ok.attributes instanceof PickleDict);
});

test('malformed pickles fail with one-line errors', (t) => {
  refused(t, bytes([0x80, 2, 0x58, 0xff, 0, 0, 0, 0x61]), /x\.pkl: truncated: pickle ends inside BINUNICODE at byte 2 \(needs 255 more bytes, 1 left\)/);
  refused(t, bytes([0x80, 2, 0x4b, 1]), /truncated: pickle has no STOP/);
  refused(t, bytes([0x80, 2, 0x61, 0x2e]), /stack underflow at APPEND/);
  refused(t, bytes([0x80, 2, 0x68, 3, 0x2e]), /memo 3 is not set/);
  refused(t, bytes([0x80, 2, 0x4b, 1, 0x4b, 2, 0x2e]), /STOP with 2 values/);
  // _rebuild_tensor_v2 needs a storage from a persistent id.
  refused(t, bytes([0x80, 2], 'ctorch._utils\n_rebuild_tensor_v2\n', [0x28, 0x4b, 1, 0x4b, 0, 0x29, 0x29, 0x89, 0x4e, 0x74, 0x52, 0x2e]), /bad pickle at byte \d+: _rebuild_tensor_v2: first argument must be a storage, got int/);
});

test('persistent ids become storages and _rebuild_tensor_v2 a strided view', (t) => {
  // MARK, GLOBAL torch._utils._rebuild_tensor_v2, then args (BINPERSID storage, 3, (2,2), (1,2), False, OrderedDict()).
  const buf = bytes(
    [0x80, 2],
    'ctorch._utils\n_rebuild_tensor_v2\n',
    [0x28],
    [0x28, 0x58, 7, 0, 0, 0],
    'storage',
    'ctorch\nHalfStorage\n',
    [0x58, 1, 0, 0, 0],
    '0',
    [0x58, 3, 0, 0, 0],
    'cpu',
    [0x4b, 9, 0x4e, 0x74, 0x51],
    [0x4b, 3, 0x4b, 2, 0x4b, 2, 0x86, 0x4b, 1, 0x4b, 2, 0x86, 0x89],
    'ccollections\nOrderedDict\n',
    [0x29, 0x52, 0x74, 0x52, 0x2e],
  );
  const pids: PickleValue[] = [];
  const { value } = unpickle(buf, 0, {
    source: 'x',
    persistentLoad: (pid) => {
      pids.push(pid);
      return new StorageRef('0', 'float16', 0, 9);
    },
  });
  t.is(pids.length, 1);
  t.deepEqual((pids[0] as PickleValue[]).slice(0, 1), ['storage']);
  t.true(value instanceof TensorRef);
  const ref = value as TensorRef;
  t.deepEqual([ref.offset, ref.shape, ref.stride], [3, [2, 2], [1, 2]]);
  t.is(ref.storage.dtype, 'float16');
});

const withPython = python ? test : test.skip;
if (!python) test.skip(`python fixtures: ${missingPythonMessage('torch', 'numpy')}`, () => undefined);

withPython('plain data pickled by Python (protocols 2 to 5) reads back as Python sees it', (t) => {
  const script = `
import collections, json, pickle, sys
shared = [1, 2]
obj = {"a": 1, "neg": -129, "i32": -2**31, "big": 2**70, "nbig": -2**70, "f": -1.25, "t": (1, "x", None, True, False),
       "e": (), "u": "\\u00fcn\\u00ef \\u2603", "l": shared, "l2": shared, "d": collections.OrderedDict([("k", [0.5])]), "n": {3: "int key"}}
out = {}
for p in (2, 3, 4, 5):
    out[p] = pickle.dumps(obj, protocol=p).hex()
def js(v):
    if isinstance(v, bool) or v is None or isinstance(v, (float, str)): return v
    if isinstance(v, int): return v if abs(v) <= 2**53 - 1 else "bigint:%d" % v
    if isinstance(v, (list, tuple)): return [js(x) for x in v]
    return {str(k): js(x) for k, x in v.items()}
print(json.dumps({"pickles": out, "expected": js(obj)}))
`;
  const r = JSON.parse(runPython(python!, script)) as { pickles: Record<string, string>; expected: unknown };
  for (const [proto, hex] of Object.entries(r.pickles)) {
    const { value, end } = unpickle(Buffer.from(hex, 'hex'), 0, { source: `p${proto}` });
    t.is(end, hex.length / 2, `protocol ${proto}: STOP at the end`);
    t.deepEqual(toJson(value), r.expected, `protocol ${proto}`);
  }
});

withPython('malicious pickles are refused by name and nothing runs', async (t) => {
  const dir = tempDir(t, 'evil');
  const marker = path.join(dir, 'PWNED');
  fixtures(python!, 'evil', dir, marker);
  const cases: Array<[string, RegExp]> = [
    ['system_p2.pkl', /^system_p2\.pkl: refusing to load: pickle references posix\.system; weights files may only contain tensors$/],
    ['eval_p4.pkl', /^eval_p4\.pkl: refusing to load: pickle references builtins\.eval; /],
    ['system_legacy.pth', /^system_legacy\.pth: refusing to load: pickle references posix\.system; /],
    ['system_zip.pth', /^system_zip\.pth: refusing to load: pickle references posix\.system; /],
    ['module.pth', /^module\.pth: refusing to load: pickle references torch\.nn\.modules\.linear\.Linear; /],
  ];
  for (const [file, pattern] of cases) {
    const msg = await rejection(readTorchFile(path.join(dir, file)));
    t.truthy(msg, `${file} is refused`);
    t.regex(msg!, pattern);
  }
  // The .pkl files are bare pickles: the payload is refused by the unpickler itself too.
  const e = t.throws(() => unpickle(readFileSync(path.join(dir, 'system_p2.pkl')), 0, { source: 's' }));
  t.regex(e!.message, /posix\.system/);
  t.false(existsSync(marker), 'the payload never ran');
});
