import test from 'ava';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ortNode from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { tf } from '../../src/backend/tf.js';
import { selectBackend } from '../../src/backend/select.js';
import { createHashingModel } from '../../src/models/factory.js';
import type { HashingModel, HashMethod } from '../../src/models/hashing.js';
import { exportHashingGraph } from '../../src/export/hashing.js';
import { decodeModel } from '../../exporters/onnx-writer.js';
import { modelTensors, newCheckpointConfig, saveModelCheckpoint, writeCheckpoint } from '../../src/weights/checkpoint.js';
import { Rng } from '../../src/util/rng.js';
import { maxAbsDiff } from '../helpers/tensors.js';
import { nchwToNhwc } from '../helpers/bundle.js';
import { perturbBatchNorm } from '../helpers/models.js';
import { fgh } from '../helpers/cli.js';
import { missingPythonMessage, referencePython, runPython } from '../helpers/python.js';

const SIZE = 96;
const BATCH = 3;

function randomModel(method: HashMethod, bits: number, seed: number): HashingModel {
  const model = createHashingModel({ method, bits, classes: 7, seed });
  perturbBatchNorm(model, new Rng(seed + 1));
  return model;
}

function randomImages(seed: number): { nchw: Float32Array; shape: number[] } {
  const rng = new Rng(seed);
  const nchw = new Float32Array(BATCH * 3 * SIZE * SIZE);
  for (let i = 0; i < nchw.length; i++) nchw[i] = rng.normal();
  return { nchw, shape: [BATCH, 3, SIZE, SIZE] };
}

function tfjsFeatures(model: HashingModel, images: { nchw: Float32Array; shape: number[] }): Float32Array {
  const x = nchwToNhwc({ data: images.nchw, shape: images.shape });
  return tf.tidy(() => model.encode(tf.tensor4d(x.data, x.shape)).dataSync() as Float32Array);
}

/** The contract, restated independently of the graph: bit = feature > 0, MSB first, zero padded. */
function packReference(features: Float32Array, bits: number): Uint8Array {
  const bytes = Math.ceil(bits / 8);
  const n = features.length / bits;
  const out = new Uint8Array(n * bytes);
  for (let i = 0; i < n; i++) for (let b = 0; b < bits; b++) if (features[i * bits + b]! > 0) out[i * bytes + (b >> 3)]! |= 0x80 >> (b & 7);
  return out;
}

/** Code bytes that differ, ignoring bits whose reference feature is within `eps` of 0. */
function codeMismatches(codes: Uint8Array, ref: Float32Array, bits: number, eps: number): number {
  const bytes = Math.ceil(bits / 8);
  let bad = 0;
  for (let i = 0; i < ref.length / bits; i++) {
    for (let b = 0; b < bits; b++) {
      const f = ref[i * bits + b]!;
      if (Math.abs(f) < eps) continue;
      const bit = (codes[i * bytes + (b >> 3)]! >> (7 - (b & 7))) & 1;
      if (bit !== (f > 0 ? 1 : 0)) bad++;
    }
  }
  return bad;
}

test.before(async () => {
  await selectBackend();
});

const CASES: Array<[HashMethod, number]> = [
  ['srlh', 12],
  ['srlh', 32],
  ['semicon', 12],
];

for (const [method, bits] of CASES) {
  test.serial(`${method} ${bits} bits: onnxruntime-node and -web match the tfjs eval forward; codes are packed in the graph`, async (t) => {
    const model = randomModel(method, bits, 21 + bits);
    const images = randomImages(bits);
    const ref = tfjsFeatures(model, images);
    for (const keepBatchNorm of [false, true]) {
      const graph = exportHashingGraph(model, { inputSize: SIZE, keepBatchNorm });
      const decoded = decodeModel(graph.bytes) as { graph: { node: Array<{ opType: string }> } };
      const ops = decoded.graph.node.map((n) => n.opType);
      t.false(ops.includes('Dropout'), 'no training-only nodes');
      if (method === 'srlh') t.is(ops.filter((o) => o === 'BatchNormalization').length, keepBatchNorm ? 20 : 0);
      const session = await ortNode.InferenceSession.create(graph.bytes);
      t.deepEqual(session.outputNames, ['features', 'codes']);
      const out = await session.run({ images: new ortNode.Tensor('float32', images.nchw, images.shape) });
      const features = out.features!.data as Float32Array;
      const codes = out.codes!.data as Uint8Array;
      t.deepEqual(out.codes!.dims, [BATCH, Math.ceil(bits / 8)]);
      t.is(out.codes!.type, 'uint8');
      const err = maxAbsDiff(features, ref);
      t.log(`${method} ${bits} bits ${keepBatchNorm ? 'unfolded' : 'folded'}: ${graph.nodes} nodes, ${(graph.bytes.length / 1e6).toFixed(1)} MB, features max abs diff vs tfjs ${err.toExponential(2)}`);
      // Features are tanh outputs, |f| <= 1: one run differed by at most 2.3e-6.
      t.true(err <= 1e-5, `features differ by ${err}`);
      t.deepEqual([...codes], [...packReference(features, bits)], 'codes = packed signs of the graph features');
      t.is(codeMismatches(codes, ref, bits, 1e-5), 0, 'codes = packed signs of the tfjs features');
      await session.release();

      if (!keepBatchNorm) {
        const web = await ortWeb.InferenceSession.create(graph.bytes, { executionProviders: ['wasm'] });
        const wout = await web.run({ images: new ortWeb.Tensor('float32', images.nchw, images.shape) });
        const werr = maxAbsDiff(wout.features!.data as Float32Array, ref);
        t.log(`  onnxruntime-web (wasm): features max abs diff ${werr.toExponential(2)}`);
        t.true(werr <= 1e-5, `onnxruntime-web: features differ by ${werr}`);
        t.is(codeMismatches(wout.codes!.data as Uint8Array, ref, bits, 1e-5), 0);
        await web.release();
      }
    }
    model.dispose();
  });
}

test.serial('a single image gives the same sRLH codes as inside a batch (no batch coupling)', async (t) => {
  const model = randomModel('srlh', 32, 5);
  const images = randomImages(9);
  const session = await ortNode.InferenceSession.create(exportHashingGraph(model, { inputSize: SIZE }).bytes);
  const all = await session.run({ images: new ortNode.Tensor('float32', images.nchw, images.shape) });
  const per = 3 * SIZE * SIZE;
  const one = await session.run({ images: new ortNode.Tensor('float32', images.nchw.slice(per, 2 * per), [1, 3, SIZE, SIZE]) });
  t.deepEqual([...(one.codes!.data as Uint8Array)], [...(all.codes!.data as Uint8Array).slice(4, 8)]);
  await session.release();
  model.dispose();
});

const python = referencePython('onnx');
(python ? test.serial : test.skip)('python onnx: check_model(full_check=True) and strict shape inference pass for both methods', (t) => {
  if (!python) {
    t.log(missingPythonMessage('onnx'));
    return;
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-onnx-'));
  try {
    for (const [method, bits] of [['srlh', 32], ['semicon', 24]] as const) {
      const model = randomModel(method, bits, 3);
      const file = path.join(dir, `${method}.onnx`);
      writeFileSync(file, exportHashingGraph(model, { inputSize: SIZE }).bytes);
      model.dispose();
      const out = runPython(
        python,
        `import sys, onnx
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
for o in inferred.graph.output:
    print(o.name, o.type.tensor_type.elem_type, [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim])`,
        [file],
      );
      t.log(`${method}: ${out.trim().replace(/\n/g, '; ')}`);
      t.regex(out, new RegExp(`^features 1 \\['N', ${bits}\\]\\ncodes 2 \\['N', ${Math.ceil(bits / 8)}\\]`));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.serial('fgh export: writes the graph with its metadata; bad checkpoints give one line and leave nothing behind', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-export-'));
  try {
    const model = randomModel('srlh', 24, 8);
    const ckpt = path.join(dir, 'ckpt');
    await saveModelCheckpoint(ckpt, newCheckpointConfig({ method: 'srlh', arch: 'resnet18', bits: 24, classes: 7, inputSize: SIZE }), model);
    const out = path.join(dir, 'out', 'model.onnx');
    const r = fgh('export', '--onnx', '--checkpoint', ckpt, '--out', out, '--json');
    t.is(r.status, 0, r.stderr);
    const summary = JSON.parse(r.stdout) as { nodes: number; bytes: number; bits: number; inputSize: number };
    t.is(summary.bits, 24);
    t.is(summary.inputSize, SIZE);
    t.true(summary.nodes > 40);
    const decoded = decodeModel(readFileSync(out)) as { metadataProps: Array<{ key: string; value: string }> };
    const meta = Object.fromEntries(decoded.metadataProps.map((p) => [p.key, p.value]));
    t.like(meta, { method: 'srlh', arch: 'resnet18', bits: '24', input_size: String(SIZE), transform: 'resize-224', mean: '0.485,0.456,0.406' });
    // The exported graph computes what the checkpoint's model computes.
    const images = randomImages(2);
    const s = await ortNode.InferenceSession.create(out);
    const res = await s.run({ images: new ortNode.Tensor('float32', images.nchw, images.shape) });
    t.true(maxAbsDiff(res.features!.data as Float32Array, tfjsFeatures(model, images)) <= 1e-5);
    await s.release();
    const before = readFileSync(out);

    // A missing tensor, a wrong shape, an unknown method: one line each, the old file untouched.
    const tensors = modelTensors(model);
    const missing = new Map(tensors);
    missing.delete('hash_layer.0.weight');
    const bad1 = path.join(dir, 'missing');
    await writeCheckpoint(bad1, newCheckpointConfig({ method: 'srlh', arch: 'resnet18', bits: 24, classes: 7 }), missing);
    const bad2 = path.join(dir, 'shape');
    await writeCheckpoint(bad2, newCheckpointConfig({ method: 'srlh', arch: 'resnet18', bits: 32, classes: 7 }), tensors);
    const bad3 = path.join(dir, 'method');
    await saveModelCheckpoint(bad3, newCheckpointConfig({ method: 'srlh', arch: 'resnet18', bits: 24, classes: 7 }), model);
    const cfg = JSON.parse(readFileSync(path.join(bad3, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(path.join(bad3, 'config.json'), JSON.stringify({ ...cfg, method: 'dsh' }));
    const expectations: Array<[string, RegExp]> = [
      [bad1, /missing .*hash_layer\.0\.weight/],
      [bad2, /hash_layer\.0\.weight is \[24,512\], expected \[32,512\]/],
      [bad3, /method/],
      [path.join(dir, 'nowhere'), /nowhere/],
    ];
    for (const [bad, message] of expectations) {
      const e = fgh('export', '--onnx', '--checkpoint', bad, '--out', out);
      t.is(e.status, 1);
      t.regex(e.stderr, message);
      t.is(e.stderr.trim().split('\n').length, 1, e.stderr);
      t.true(readFileSync(out).equals(before), 'the previous output is intact');
    }
    t.deepEqual(readdirSync(path.dirname(out)), ['model.onnx'], 'no temporary files left');
    const e = fgh('export', '--onnx', '--checkpoint', ckpt, '--out', path.join(dir, 'x.onnx'), '--opset', '12');
    t.regex(e.stderr, /--opset must be an integer in 13\.\.21/);
    t.false(existsSync(path.join(dir, 'x.onnx')));
    model.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
