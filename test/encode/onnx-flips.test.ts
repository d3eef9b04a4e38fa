import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GraphBuilder } from '../../exporters/graph.js';
import { encodeModel } from '../../exporters/onnx-writer.js';
import { IMAGENET_MEAN, IMAGENET_STD, PRODUCER_NAME, metadataProps } from '../../src/export/metadata.js';
import { modelInfoFromBytes, type ModelInfo } from '../../src/encode/model-info.js';
import { FghError } from '../../src/util/errors.js';
import { packageVersion } from '../../src/util/version.js';
import { missingPythonMessage, referencePython, runPython } from '../helpers/python.js';

const python = referencePython('onnx');

/**
 * ONNX has no checksum. Our reader (readModelInfo: the top-level ModelProto fields, the graph
 * skipped by its length, the metadata after it) must never take a damaged model for the one
 * that was written: every single-bit flip of the fields before the graph and of the graph's tag
 * and length is refused in one line, or leaves a model that onnx parses to the same content.
 * "The same content": onnx.load, unknown fields discarded and the descriptive strings cleared
 * (producer name and version, doc string, domain, model version: nothing reads or runs them),
 * serialised deterministically; the graph, opsets, IR version and metadata must be equal.
 */

/** A small model as `fgh export` writes one: its writer, its options and its metadata. */
function smallModel(): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('images', 'float32', ['N', 8]);
  const w = g.floatConst('hash.weight', Array.from({ length: 8 * 12 }, (_, i) => Math.sin(i)), [8, 12]);
  g.rename(g.op('Tanh', [g.op('MatMul', [x, w])]), 'features');
  g.output('features', 'float32', ['N', 12]);
  return encodeModel(g, {
    graphName: 'srlh-12',
    producerName: PRODUCER_NAME,
    producerVersion: packageVersion(),
    docString: 'srlh (resnet18) 12-bit hashing: tanh features and packed codes (MSB first)',
    metadata: metadataProps({ method: 'srlh', arch: 'resnet18', bits: 12, inputSize: 64, mean: IMAGENET_MEAN, std: IMAGENET_STD, transform: 'resize-224' }),
  });
}

/** The byte where the graph's contents start: every field before it, then its tag and length. */
function graphStart(bytes: Uint8Array): number {
  let pos = 0;
  const varint = (): number => {
    let v = 0;
    let shift = 0;
    for (;;) {
      const b = bytes[pos++]!;
      v += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if (b < 0x80) return v;
    }
  };
  for (;;) {
    const tag = varint();
    if (tag >>> 3 === 7) {
      varint();
      return pos;
    }
    if ((tag & 7) === 0) varint();
    else if ((tag & 7) === 2) {
      const length = varint(); // before the +=, which would read pos first
      pos += length;
    }
    else throw new Error(`unexpected wire type in tag ${tag}`);
  }
}

const CANONICAL = String.raw`
import hashlib, json, sys, onnx

def canonical(data):
    try:
        m = onnx.load_from_string(data)
    except Exception as e:
        return {'error': str(e).split('\n')[0]}
    m.DiscardUnknownFields()
    for f in ('producer_name', 'producer_version', 'doc_string', 'domain', 'model_version'):
        m.ClearField(f)
    return {'sha256': hashlib.sha256(m.SerializeToString(deterministic=True)).hexdigest()}

original = open(sys.argv[1], 'rb').read()
onnx.checker.check_model(onnx.load_from_string(original), full_check=True)
out = {'original': canonical(original), 'flips': []}
for bit in json.loads(sys.stdin.read()):
    b = bytearray(original)
    b[bit >> 3] ^= 1 << (bit & 7)
    out['flips'].append(canonical(bytes(b)))
print(json.dumps(out))
`;

(python ? test : test.skip)(`every single-bit flip of an ONNX model's fields before the graph is refused, or onnx reads the same model${python ? '' : ` (${missingPythonMessage('onnx')})`}`, (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-onnx-flips-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bytes = smallModel();
  const file = path.join(dir, 'model.onnx');
  writeFileSync(file, bytes);
  const read = (b: Uint8Array): ModelInfo => modelInfoFromBytes(b, 'x.onnx');
  const original = JSON.stringify(read(bytes));
  const end = graphStart(bytes);

  let refused = 0;
  const accepted: number[] = [];
  for (let bit = 0; bit < end * 8; bit++) {
    const b = Uint8Array.from(bytes);
    b[bit >> 3]! ^= 1 << (bit & 7);
    let info: ModelInfo;
    try {
      info = read(b);
    } catch (e) {
      t.true(e instanceof FghError, `bit ${bit}: ${String(e)}`);
      t.false((e as Error).message.includes('\n'), `bit ${bit}: one line`);
      refused++;
      continue;
    }
    t.is(JSON.stringify(info), original, `bit ${bit}: what we read is what was written`);
    accepted.push(bit);
  }
  // onnx, in one process, on every flip we accept.
  const ref = JSON.parse(runPython(python!, CANONICAL, [file], JSON.stringify(accepted))) as { original: { sha256?: string; error?: string }; flips: Array<{ sha256?: string; error?: string }> };
  t.truthy(ref.original.sha256, ref.original.error);
  const wrong = accepted.flatMap((bit, i) => {
    const r = ref.flips[i]!;
    const at = `bit ${bit} (byte ${bit >> 3}, ${bytes[bit >> 3]!.toString(16)} -> ${(bytes[bit >> 3]! ^ (1 << (bit & 7))).toString(16)})`;
    if (r.error !== undefined) return [`${at}: we read it, onnx refuses it (${r.error})`];
    return r.sha256 === ref.original.sha256 ? [] : [`${at}: we read it, onnx reads a different model`];
  });
  t.deepEqual(wrong, []);
  t.log(`${end * 8} flips of the ${end} bytes before the graph's contents: ${refused} refused, ${accepted.length} accepted (onnx reads the same model)`);
});
