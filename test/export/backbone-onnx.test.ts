import test from 'ava';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ortNode from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { tf } from '../../src/backend/tf.js';
import { selectBackend } from '../../src/backend/select.js';
import { ResNet } from '../../src/models/resnet.js';
import { EVAL } from '../../src/models/module.js';
import { exportBackbone } from '../../src/export/backbone.js';
import { decodeModel, irVersionFor } from '../../exporters/onnx-writer.js';
import { Rng } from '../../src/util/rng.js';
import { maxAbs, maxAbsDiff } from '../helpers/tensors.js';
import { missingPythonMessage, referencePython, runPython } from '../helpers/python.js';
import { nchwToNhwc } from '../helpers/bundle.js';
import { fgh } from '../helpers/cli.js';
import { newCheckpointConfig, saveModelCheckpoint } from '../../src/weights/checkpoint.js';

const SIZE = 96;
const BATCH = 2;

/** A ResNet with random weights and non-trivial batch-norm statistics, as after training. */
function randomResNet(arch: 'resnet18' | 'resnet50', seed: number): ResNet {
  const rng = new Rng(seed);
  const model = new ResNet(rng, arch).assignNames();
  for (const p of model.parameters()) {
    const n = p.variable.size;
    const v = new Float32Array(n);
    if (p.name.endsWith('running_mean')) for (let i = 0; i < n; i++) v[i] = rng.normal() * 0.2;
    else if (p.name.endsWith('running_var')) for (let i = 0; i < n; i++) v[i] = rng.uniform(0.5, 2);
    else if (p.name.endsWith('bn1.weight') || /bn\d\.weight$|downsample\.1\.weight$/.test(p.name)) for (let i = 0; i < n; i++) v[i] = rng.uniform(0.5, 1.5);
    else if (/bn\d\.bias$|downsample\.1\.bias$/.test(p.name)) for (let i = 0; i < n; i++) v[i] = rng.normal() * 0.2;
    else continue;
    p.variable.assign(tf.tensor(v, p.variable.shape));
  }
  return model;
}

function randomImages(seed: number): { nchw: Float32Array; shape: number[] } {
  const rng = new Rng(seed);
  const nchw = new Float32Array(BATCH * 3 * SIZE * SIZE);
  for (let i = 0; i < nchw.length; i++) nchw[i] = rng.normal();
  return { nchw, shape: [BATCH, 3, SIZE, SIZE] };
}

function tfjsFeatures(model: ResNet, images: { nchw: Float32Array; shape: number[] }): Float32Array {
  const x = nchwToNhwc({ data: images.nchw, shape: images.shape });
  return tf.tidy(() => model.features(tf.tensor4d(x.data, x.shape as [number, number, number, number]), EVAL).pooled.dataSync() as Float32Array);
}

test.before(async () => {
  await selectBackend();
});

for (const arch of ['resnet18', 'resnet50'] as const) {
  test.serial(`${arch} backbone graph: onnxruntime-node and -web match the tfjs eval forward, folded and not`, async (t) => {
    const model = randomResNet(arch, 11);
    const images = randomImages(5);
    const ref = tfjsFeatures(model, images);
    const scale = maxAbs(ref);
    for (const keepBatchNorm of [false, true]) {
      const bytes = exportBackbone(model, { inputSize: SIZE, keepBatchNorm });
      const decoded = decodeModel(bytes) as { graph: { node: Array<{ opType: string }> } };
      const bnNodes = decoded.graph.node.filter((n) => n.opType === 'BatchNormalization').length;
      if (keepBatchNorm) t.true(bnNodes > 0);
      else t.is(bnNodes, 0, 'every batch norm is folded');

      const session = await ortNode.InferenceSession.create(bytes);
      const out = await session.run({ images: new ortNode.Tensor('float32', images.nchw, images.shape) });
      const features = out.features!.data as Float32Array;
      t.deepEqual(out.features!.dims, [BATCH, model.outChannels]);
      const err = maxAbsDiff(features, ref);
      t.log(`${arch} ${keepBatchNorm ? 'unfolded' : 'folded'}: ${decoded.graph.node.length} nodes, ${(bytes.length / 1e6).toFixed(1)} MB, max abs diff vs tfjs ${err.toExponential(2)} (scale ${scale.toFixed(2)}, relative ${(err / scale).toExponential(2)})`);
      // Pooled ResNet features are unbounded (max 9.5 for ResNet-18 here, 121 for ResNet-50): relative
      // to the largest; one run: at most 5.7e-7 (ResNet-50 on onnxruntime-web).
      const bound = 5e-6;
      t.true(err / scale <= bound, `onnxruntime-node vs tfjs: max abs diff ${err} at scale ${scale}`);

      if (!keepBatchNorm) {
        const web = await ortWeb.InferenceSession.create(bytes, { executionProviders: ['wasm'] });
        const wout = await web.run({ images: new ortWeb.Tensor('float32', images.nchw, images.shape) });
        const werr = maxAbsDiff(wout.features!.data as Float32Array, ref);
        t.log(`${arch} onnxruntime-web (wasm): max abs diff vs tfjs ${werr.toExponential(2)} (relative ${(werr / scale).toExponential(2)})`);
        t.true(werr / scale <= bound, `onnxruntime-web vs tfjs: max abs diff ${werr} at scale ${scale}`);
        await web.release();
      }
      await session.release();
    }
    model.dispose();
  });
}

test.serial('the ModelProto carries opset, IR version, a dynamic batch and the metadata', async (t) => {
  const model = randomResNet('resnet18', 3);
  for (const opset of [13, 17, 21]) {
    const m = decodeModel(exportBackbone(model, { inputSize: SIZE, opset })) as {
      irVersion: number;
      opsetImport: Array<{ version: number }>;
      metadataProps: Array<{ key: string; value: string }>;
      graph: { input: Array<{ name: string; type: { tensorType: { shape: { dim: Array<{ dimParam?: string; dimValue?: number }> } } } }> };
    };
    t.is(m.irVersion, irVersionFor(opset));
    t.is(m.opsetImport[0]!.version, opset);
    t.is(m.graph.input[0]!.name, 'images');
    t.is(m.graph.input[0]!.type.tensorType.shape.dim[0]!.dimParam, 'N');
    const meta = Object.fromEntries(m.metadataProps.map((p) => [p.key, p.value]));
    t.is(meta.arch, 'resnet18');
    t.is(meta.input_size, String(SIZE));
    t.is(meta.mean, '0.485,0.456,0.406');
    t.is(meta.transform, 'resize-256-centercrop-224');
    t.regex(meta.producer ?? '', /^fgh /);
    // Every opset in range loads and runs in onnxruntime.
    const s = await ortNode.InferenceSession.create(exportBackbone(model, { inputSize: SIZE, opset }));
    const out = await s.run({ images: new ortNode.Tensor('float32', new Float32Array(3 * 3 * SIZE * SIZE), [3, 3, SIZE, SIZE]) });
    t.deepEqual(out.features!.dims, [3, 512]);
    await s.release();
  }
  t.throws(() => exportBackbone(model, { opset: 12 }), { message: /opset 12 is not supported/ });
  model.dispose();
});

test.serial('fgh export --backbone: the CLI writes the extractor with its metadata; mismatched flags give one line and no file', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-export-backbone-'));
  try {
    const model = randomResNet('resnet18', 21);
    const ckpt = path.join(dir, 'r18');
    await saveModelCheckpoint(ckpt, newCheckpointConfig({ method: 'backbone', arch: 'resnet18', inputSize: SIZE }), model);
    const out = path.join(dir, 'out', 'r18.onnx');
    const r = fgh('export', '--onnx', '--backbone', 'resnet18', '--weights', ckpt, '--out', out, '--json');
    t.is(r.status, 0, r.stderr);
    const summary = JSON.parse(r.stdout) as { method: string; arch: string; nodes: number; bytes: number; inputSize: number; batchNormFolded: boolean };
    t.like(summary, { method: 'backbone', arch: 'resnet18', inputSize: SIZE, batchNormFolded: true });
    t.is(summary.bytes, readFileSync(out).length);
    const decoded = decodeModel(readFileSync(out)) as { metadataProps: Array<{ key: string; value: string }>; graph: { node: unknown[] } };
    t.is(summary.nodes, decoded.graph.node.length);
    const meta = Object.fromEntries(decoded.metadataProps.map((p) => [p.key, p.value]));
    t.like(meta, { method: 'backbone', arch: 'resnet18', input_size: String(SIZE) });
    const images = randomImages(8);
    const s = await ortNode.InferenceSession.create(out);
    const res = await s.run({ images: new ortNode.Tensor('float32', images.nchw, images.shape) });
    const ref = tfjsFeatures(model, images);
    const err = maxAbsDiff(res.features!.data as Float32Array, ref);
    const scale = maxAbs(ref);
    t.log(`CLI-exported resnet18: max abs diff vs tfjs ${err.toExponential(2)} at scale ${scale.toFixed(2)} (relative ${(err / scale).toExponential(2)})`);
    // Pooled features, max 7.1 here; one run: 4.4e-7 of it.
    t.true(err / scale <= 5e-6, `CLI-exported graph vs tfjs: max abs diff ${err} at scale ${scale}`);
    await s.release();
    model.dispose();
    // The human summary names what was written.
    const human = fgh('export', '--onnx', '--backbone', 'resnet18', '--weights', ckpt, '--out', path.join(dir, 'h.onnx'));
    t.regex(human.stdout, /resnet18 feature extractor, 96 px, opset 17, \d+ nodes, .* MB, batch norm folded/);

    const bad = path.join(dir, 'bad.onnx');
    const cases: Array<[string[], RegExp]> = [
      [['--backbone', 'resnet50', '--weights', ckpt], /holds resnet18, not resnet50/],
      [['--backbone', 'resnet18'], /--backbone needs --weights/],
      [['--weights', ckpt], /--weights goes with --backbone/],
      [['--backbone', 'vgg16', '--weights', ckpt], /--backbone must be resnet18 or resnet50/],
      [['--checkpoint', ckpt], /plain resnet18 backbone: export it with --backbone resnet18/],
    ];
    for (const [args, message] of cases) {
      const e = fgh('export', '--onnx', ...args, '--out', bad);
      t.is(e.status, 1, args.join(' '));
      t.regex(e.stderr, message);
      t.is(e.stderr.trim().split('\n').length, 1, e.stderr);
      t.false(existsSync(bad));
    }
    t.deepEqual(readdirSync(path.join(dir, 'out')), ['r18.onnx'], 'no temporary files left');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const python = referencePython('onnx');
(python ? test.serial : test.skip)('python onnx: check_model(full_check=True) and shape inference pass', (t) => {
  if (!python) {
    t.log(missingPythonMessage('onnx'));
    return;
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-onnx-'));
  try {
    const model = randomResNet('resnet18', 4);
    const file = path.join(dir, 'r18.onnx');
    writeFileSync(file, exportBackbone(model, { inputSize: SIZE }));
    model.dispose();
    const out = runPython(
      python,
      `import sys, onnx
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
o = inferred.graph.output[0]
print(o.name, [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim], len(inferred.graph.value_info))`,
      [file],
    );
    t.log(`onnx checker: ${out.trim()}`);
    t.regex(out, /^features \['N', 512\] \d+/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

if (!python) console.warn(`onnx checker test: ${missingPythonMessage('onnx')}`);
