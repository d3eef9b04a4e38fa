import test from 'ava';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { tf } from '../../src/backend/tf.js';
import { selectBackend } from '../../src/backend/select.js';
import { loadCheckpointModel } from '../../src/weights/load-model.js';
import { importTorch, type ImportTorchSummary } from '../../src/weights/import-torch.js';
import { readCheckpointConfig } from '../../src/weights/checkpoint.js';
import { readSafetensors, writeSafetensors } from '../../src/weights/safetensors.js';
import { fgh } from '../helpers/cli.js';
import { missingPythonMessage, referencePython, runPython } from '../helpers/python.js';
import { nchwToNhwc, readBundle } from '../helpers/bundle.js';
import { maxAbs, maxAbsDiff } from '../helpers/tensors.js';
import { pyDir, rejection, tempDir } from './fixtures.js';

const python = referencePython('torch', 'torchvision', 'numpy');
const withPython = python ? test.serial : test.skip;
if (!python) test.skip(`python fixtures: ${missingPythonMessage('torch', 'torchvision', 'numpy')}`, () => undefined);

test.before(async () => {
  await selectBackend();
});

/** Runs a reference script of test/python (it writes state_dict.pt and eval/ into `dir`). */
function reference(script: string, dir: string, ...args: string[]): void {
  const r = spawnSync(python!, [path.join(pyDir, script), dir, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${script} failed: ${r.stderr}`);
}

/** Re-saves DIR/state_dict.pt ({'model_state_dict': sd}) as the bare state dict with DataParallel's prefix. */
const SAVE_WITH_PREFIX = `
import sys, torch
src, dst, legacy = sys.argv[1], sys.argv[2], sys.argv[3] == "legacy"
sd = torch.load(src)["model_state_dict"]
torch.save({"module." + k: v for k, v in sd.items()}, dst, _use_new_zipfile_serialization=not legacy)
`;

/** Max abs difference between the checkpoint's eval features and the reference's; `rel` divides it by the largest |feature|. */
async function evalError(ckpt: string, evalDir: string): Promise<{ err: number; scale: number; rel: number }> {
  const loaded = await loadCheckpointModel(ckpt);
  if (loaded.kind !== 'hashing') throw new Error('expected a hashing checkpoint');
  try {
    const ev = readBundle(evalDir);
    const x = nchwToNhwc(ev.get('input')!);
    const f = loaded.model.encode(tf.tensor4d(x.data, x.shape));
    const want = ev.get('features')!.data;
    const err = maxAbsDiff(f.dataSync(), want);
    const scale = maxAbs(want);
    f.dispose();
    return { err, scale, rel: err / scale };
  } finally {
    loaded.model.dispose();
  }
}

function oneLineError(t: { is: (a: unknown, b: unknown, m?: string) => void; regex: (s: string, r: RegExp) => void; log: (...s: string[]) => void }, r: { status: number | null; stderr: string }, pattern: RegExp): void {
  t.log(r.stderr.trim());
  t.is(r.status, 1);
  t.is(r.stderr.split('\n').length, 2, 'one line');
  t.regex(r.stderr, pattern);
}

test('bad arguments: one-line errors', (t) => {
  const method = fgh('import-torch', 'x.pt', '--method', 'dpsh', '--out', 'y');
  t.is(method.status, 1);
  t.is(method.stderr, 'fgh: --method must be srlh or semicon, got "dpsh"\n');
  const bits = fgh('import-torch', 'x.pt', '--method', 'srlh', '--bits', '12.5', '--out', 'y');
  t.is(bits.stderr, 'fgh: --bits must be a positive integer, got "12.5"\n');
  const missing = fgh('import-torch', '/nonexistent/m.pt', '--method', 'srlh', '--out', 'y');
  t.is(missing.stderr, 'fgh: /nonexistent/m.pt: no such file\n');
});

withPython('sRLH MainNet state dicts (wrapped, module. prefix, legacy) -> checkpoint whose eval features match PyTorch; mismatches are one-line errors', async (t) => {
  const dir = tempDir(t, 'import-srlh');
  reference('srlh_reference.py', dir, '64', '2', '3', '48', '10', '0');
  const file = path.join(dir, 'state_dict.pt');
  const out = path.join(dir, 'ck');
  const r = fgh('import-torch', file, '--method', 'srlh', '--bits', '48', '--classes', '10', '--out', out, '--json');
  t.is(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout) as ImportTorchSummary;
  t.like(s, { format: 'zip', method: 'srlh', arch: 'resnet18', bits: 48, classes: 10, unwrappedFrom: 'model_state_dict', strippedPrefix: null });
  t.deepEqual(s.ignored, ['pretrained_model.fc.weight', 'pretrained_model.fc.bias'], "the backbone's unused fc is left out");
  t.is(s.parameters, 11_176_512 + 512 * 10 + 10 + 512 * 48 + 48);
  const config = await readCheckpointConfig(out);
  t.like(config, { method: 'srlh', arch: 'resnet18', bits: 48, classes: 10, transform: 'resize-224' });
  t.deepEqual(config.source, { file: 'state_dict.pt', format: 'zip', sha256: createHash('sha256').update(readFileSync(file)).digest('hex') });
  const { err, scale, rel } = await evalError(out, path.join(dir, 'eval'));
  t.log(`sRLH eval (64 px, batch 2) from the imported checkpoint: features max abs diff ${err.toExponential(2)} (max |feature| ${scale.toFixed(3)}, relative ${rel.toExponential(2)})`);
  // tanh features, max |f| 0.97 here; one run: 9.3e-7 of it.
  t.true(rel <= 1e-5, `eval features: max abs diff ${err} at max |feature| ${scale} (relative ${rel})`);

  // A bare state dict with DataParallel's prefix in the legacy format; bits and classes read from it.
  const legacy = path.join(dir, 'module.pth');
  runPython(python!, SAVE_WITH_PREFIX, [file, legacy, 'legacy']);
  const r2 = fgh('import-torch', legacy, '--method', 'srlh', '--out', path.join(dir, 'ck2'));
  t.is(r2.status, 0, r2.stderr);
  t.regex(r2.stdout, /^read module\.pth \(legacy pickle \.pth, prefix 'module\.' removed\)\n/);
  t.regex(r2.stdout, /: srlh \(resnet18\), 48 bits, 10 classes, \d+ tensors, [\d,]+ parameters, [\d,]+ bytes of weights\n/);
  t.regex(r2.stdout, /note: ignored 2 tensors the model never uses \(pretrained_model\.fc\.weight, pretrained_model\.fc\.bias\)\n$/);
  const weights = readFileSync(path.join(out, 'weights.safetensors'));
  t.true(readFileSync(path.join(dir, 'ck2', 'weights.safetensors')).equals(weights), 'same weights whatever the wrapping');
  // Our own weights.safetensors imports again to the same bytes.
  const s3 = await importTorch(path.join(out, 'weights.safetensors'), { method: 'srlh', out: path.join(dir, 'ck3') });
  t.like(s3, { format: 'safetensors', bits: 48, classes: 10, ignored: [] });
  t.true(readFileSync(path.join(dir, 'ck3', 'weights.safetensors')).equals(weights), 'safetensors -> checkpoint is byte-identical');

  const bad = path.join(dir, 'bad');
  oneLineError(t, fgh('import-torch', file, '--method', 'srlh', '--bits', '32', '--out', bad), /^fgh: state_dict\.pt: --bits 32 does not match the file: hash_layer\.0\.weight has 48 rows \(a 48-bit model\)\n$/);
  // The CLI prints any FghError on one line (above); these check the messages in-process.
  t.is(await rejection(importTorch(file, { method: 'srlh', classes: 200, out: bad })), 'state_dict.pt: --classes 200 does not match the file: rawcls_net.weight has 10 rows');
  t.is(await rejection(importTorch(file, { method: 'semicon', out: bad })), 'state_dict.pt is an sRLH MainNet state dict, not a SEMICON one: use --method srlh');
  const truncated = path.join(dir, 'truncated.pt');
  const bytes = readFileSync(file);
  writeFileSync(truncated, bytes.subarray(0, bytes.length >> 1));
  const cut = await rejection(importTorch(truncated, { method: 'srlh', out: bad }));
  t.log(cut ?? 'no error');
  t.regex(cut ?? '', /^truncated\.pt: [^\n]+$/);
  // A file with a tensor missing, one of another shape and one the model lacks: one line naming all three.
  const { tensors } = await readSafetensors(path.join(out, 'weights.safetensors'));
  tensors.delete('pretrained_model.layer4.1.bn2.running_var');
  tensors.set('hash_layer.0.bias', { ...tensors.get('hash_layer.0.bias')!, shape: [6, 8] });
  tensors.set('pretrained_model.extra.weight', { shape: [2], data: new Float32Array(2), dtype: 'float32' });
  const edited = path.join(dir, 'edited.safetensors');
  await writeSafetensors(edited, tensors);
  t.is(
    await rejection(importTorch(edited, { method: 'srlh', out: bad })),
    'edited.safetensors does not match an sRLH MainNet (resnet18, 48 bits): missing 1 (pretrained_model.layer4.1.bn2.running_var); ' +
      'unexpected 1 (pretrained_model.extra.weight); 1 shape mismatch (hash_layer.0.bias is [6,8], expected [48])',
  );
  t.false(existsSync(bad), 'nothing written on errors');
});

withPython('a SEMICON state dict -> checkpoint whose eval features match PyTorch; mismatches are one-line errors', async (t) => {
  const dir = tempDir(t, 'import-semicon');
  reference('semicon_reference.py', dir, '64', '2', '4', '12', '0');
  // The authors' training script saves the bare state dict; unwrapping and prefixes are the same
  // code for both methods and are covered by the sRLH test.
  const file = path.join(dir, 'state_dict.pt');
  const out = path.join(dir, 'ck');
  const started = Date.now();
  const r = fgh('import-torch', file, '--method', 'semicon', '--classes', '200', '--out', out);
  t.log(`import-torch (SEMICON, ${(readFileSync(file).length / 1e6).toFixed(0)} MB): ${Date.now() - started} ms`);
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /^read state_dict\.pt \(zip \.pth, state dict under 'model_state_dict'\)\nwrote .*: semicon \(resnet50\), 12 bits, 200 classes, \d+ tensors, 42,[\d,]+ parameters, [\d,]+ bytes of weights\n$/);
  const config = await readCheckpointConfig(out);
  t.like(config, { method: 'semicon', arch: 'resnet50', bits: 12, classes: 200, transform: 'resize-256-centercrop-224' });
  t.like(config.source, { file: 'state_dict.pt', format: 'zip' });
  const { err, scale, rel } = await evalError(out, path.join(dir, 'eval'));
  t.log(`SEMICON eval (64 px, batch 2) from the imported checkpoint: features max abs diff ${err.toExponential(2)} (max |feature| ${scale.toFixed(3)}, relative ${rel.toExponential(2)})`);
  // tanh features, max |f| 0.53 here; one run: 6.2e-7 of it.
  t.true(rel <= 5e-6, `eval features: max abs diff ${err} at max |feature| ${scale} (relative ${rel})`);

  const bad = path.join(dir, 'bad');
  oneLineError(t, fgh('import-torch', file, '--method', 'semicon', '--bits', '24', '--out', bad), /^fgh: state_dict\.pt: --bits 24 does not match the file: W_G\+W_L1\+W_L2\+W_L3 have 6\+2\+2\+2 = 12 rows \(a 12-bit model\)\n$/);
  t.is(await rejection(importTorch(file, { method: 'srlh', bits: 12, out: bad })), 'state_dict.pt is a SEMICON state dict, not an sRLH MainNet one: use --method semicon');
  t.false(existsSync(bad), 'nothing written on errors');
});
