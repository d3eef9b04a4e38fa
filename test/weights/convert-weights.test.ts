import test from 'ava';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { tf } from '../../src/backend/tf.js';
import { selectBackend } from '../../src/backend/select.js';
import { ResNet } from '../../src/models/resnet.js';
import { EVAL } from '../../src/models/module.js';
import { loadStateDict } from '../../src/models/state-dict.js';
import { Rng } from '../../src/util/rng.js';
import { readCheckpoint } from '../../src/weights/checkpoint.js';
import type { ConvertSummary } from '../../src/weights/convert-weights.js';
import { missingPythonMessage, referencePython } from '../helpers/python.js';
import { nchwToNhwc, readBundle } from '../helpers/bundle.js';
import { maxAbs, maxAbsDiff } from '../helpers/tensors.js';
import { fghBin, fixtures, tempDir } from './fixtures.js';

const python = referencePython('torch', 'torchvision', 'numpy');
const withPython = python ? test.serial : test.skip;
if (!python) test.skip(`python fixtures: ${missingPythonMessage('torch', 'torchvision', 'numpy')}`, () => undefined);

function fgh(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [fghBin, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface SafetensorsReport {
  header_aligned: boolean;
  names_in_order: boolean;
  extra: string[];
  mismatches: string[];
  dtypes: Record<string, string>;
  strict_load?: boolean;
}

function checkInPython(weights: string, reference: string, arch: string): SafetensorsReport {
  return JSON.parse(fixtures(python!, 'check-safetensors', weights, reference, arch)) as SafetensorsReport;
}

test('bad arguments: one-line errors', (t) => {
  const bad = fgh('convert-weights', 'x.pth', '--arch', 'vgg16', '--out', 'y');
  t.is(bad.status, 1);
  t.is(bad.stderr, 'fgh: --arch must be resnet18 or resnet50, got "vgg16"\n');
  const missing = fgh('convert-weights', '/nonexistent/r.pth', '--arch', 'resnet18', '--out', 'y');
  t.is(missing.status, 1);
  t.is(missing.stderr, 'fgh: /nonexistent/r.pth: no such file\n');
});

withPython('legacy resnet18 .pth -> checkpoint: PyTorch loads the same tensors, our eval matches torchvision', async (t) => {
  const dir = tempDir(t, 'convert');
  fixtures(python!, 'resnet', 'resnet18', path.join(dir, 'r18'), '11', '--eval', '64', '--formats', 'legacy', '--no-ref');
  const file = path.join(dir, 'r18', 'legacy.pth');
  const out = path.join(dir, 'ck');
  const started = Date.now();
  const r = fgh('convert-weights', file, '--arch', 'resnet18', '--out', out, '--json');
  t.log(`convert-weights (legacy resnet18, 47 MB): ${Date.now() - started} ms`);
  t.is(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout) as ConvertSummary;
  t.like(s, { format: 'legacy-pickle', arch: 'resnet18', classes: 1000, tensors: 122, parameters: 11_689_512, addedNumBatchesTracked: 0 });
  const weights = path.join(out, 'weights.safetensors');
  t.is(s.bytes, statSync(weights).size);
  const ckpt = await readCheckpoint(out);
  t.like(ckpt.config, { method: 'backbone', arch: 'resnet18', classes: 1000, bits: null, inputSize: 224, transform: 'resize-256-centercrop-224' });
  t.deepEqual(ckpt.config.source, { file: 'legacy.pth', format: 'legacy-pickle', sha256: createHash('sha256').update(readFileSync(file)).digest('hex') });

  const report = checkInPython(weights, file, 'resnet18');
  t.deepEqual(report.mismatches, []);
  t.deepEqual(report.extra, []);
  t.true(report.names_in_order);
  t.true(report.header_aligned);
  t.true(report.strict_load, 'torchvision resnet18 load_state_dict(strict=True) accepts it');
  t.is(report.dtypes['layer1.0.bn1.num_batches_tracked'], 'I64');
  t.is(report.dtypes['conv1.weight'], 'F32');

  // Converting our own weights.safetensors again is the identity.
  const again = fgh('convert-weights', weights, '--arch', 'resnet18', '--out', path.join(dir, 'again'));
  t.is(again.status, 0, again.stderr);
  t.true(readFileSync(path.join(dir, 'again', 'weights.safetensors')).equals(readFileSync(weights)), 'safetensors -> checkpoint is byte-identical');

  await selectBackend();
  const model = new ResNet(new Rng(0), 'resnet18', { numClasses: 1000 }).assignNames();
  try {
    loadStateDict(model, ckpt.tensors, { strict: true });
    const ev = readBundle(path.join(dir, 'r18', 'eval'));
    const x = nchwToNhwc(ev.get('input')!);
    const logits = tf.tidy(() => model.logits(model.features(tf.tensor4d(x.data, x.shape), EVAL).pooled));
    const want = ev.get('logits')!.data;
    const err = maxAbsDiff(logits.dataSync(), want);
    const scale = maxAbs(want);
    logits.dispose();
    t.log(`eval logits at 64 px: max abs diff vs torchvision ${err.toExponential(2)} at max |logit| ${scale.toFixed(3)} (relative ${(err / scale).toExponential(2)})`);
    // Logits of random weights at 64 px, max |logit| 4.1 here; one run: 6.4e-7 of it.
    t.true(err / scale <= 5e-6, `logits: max abs diff ${err} at max |logit| ${scale}`);
  } finally {
    model.dispose();
  }
});

withPython('a pre-0.4 file (like resnet18-5c106cde.pth) converts, with num_batches_tracked added as 0', (t) => {
  const dir = tempDir(t, 'convert-old');
  fixtures(python!, 'resnet', 'resnet18', path.join(dir, 'old'), '12', '--old', '--formats', 'legacy', '--no-ref');
  const file = path.join(dir, 'old', 'legacy.pth');
  const out = path.join(dir, 'ck');
  const r = fgh('convert-weights', file, '--arch', 'resnet18', '--out', out);
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /^read legacy\.pth \(legacy pickle \.pth\)\n/);
  t.regex(r.stdout, /resnet18 with a 1000-class fc, 122 tensors, 11,689,512 parameters, [\d,]+ bytes of weights\n/);
  t.regex(r.stdout, /note: added 20 num_batches_tracked buffers set to 0/);
  const report = checkInPython(path.join(out, 'weights.safetensors'), file, 'resnet18');
  t.deepEqual(report.mismatches, []);
  t.is(report.extra.length, 20);
  t.true(report.extra.every((n) => n.endsWith('.num_batches_tracked')));
  t.true(report.strict_load);
});

withPython('a resnet50 file with --arch resnet18: one-line error naming the mismatch, nothing written', (t) => {
  const dir = tempDir(t, 'convert-wrong');
  fixtures(python!, 'resnet', 'resnet50', path.join(dir, 'r50'), '13', '--formats', 'zip', '--no-ref');
  const out = path.join(dir, 'ck');
  const r = fgh('convert-weights', path.join(dir, 'r50', 'zip.pth'), '--arch', 'resnet18', '--out', out);
  t.is(r.status, 1);
  t.log(r.stderr.trim());
  t.is(r.stderr.split('\n').length, 2, 'one line');
  t.regex(r.stderr, /^fgh: zip\.pth does not match resnet18 \(it looks like resnet50\): unexpected \d+ \([^)]*layer1\.0\.conv3\.weight[^)]*\); \d+ shape mismatches \(layer1\.0\.conv1\.weight is \[64,64,1,1\], expected \[64,64,3,3\]/);
  t.false(existsSync(out));
});
