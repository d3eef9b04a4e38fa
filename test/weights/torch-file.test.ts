import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { readTorchFile, readWeightsFile, stripModulePrefix, unwrapStateDict } from '../../src/weights/torch-file.js';
import { PickleDict } from '../../src/weights/pickle.js';
import { missingPythonMessage, referencePython } from '../helpers/python.js';
import { differences, fixtures, readReference, rejection, tempDir } from './fixtures.js';

const python = referencePython('torch', 'torchvision', 'numpy');
const withPython = python ? test.serial : test.skip;
if (!python) test.skip(`python fixtures: ${missingPythonMessage('torch', 'torchvision', 'numpy')}`, () => undefined);

test('unwrapStateDict finds a nested state dict; stripModulePrefix only strips a prefix every name has', (t) => {
  const inner = new PickleDict();
  const outer = new PickleDict();
  outer.items.set('epoch', 3);
  outer.items.set('model_state_dict', inner);
  t.deepEqual(unwrapStateDict(outer, 'f'), { dict: inner, key: 'model_state_dict' });
  const lightning = new PickleDict();
  lightning.items.set('state_dict', inner);
  t.is(unwrapStateDict(lightning, 'f').key, 'state_dict');
  t.deepEqual(unwrapStateDict(inner, 'f'), { dict: inner, key: null });
  t.throws(() => unwrapStateDict([1], 'f.pth'), { message: 'f.pth: holds a list, not a state dict' });
  const all = new Map([['module.a', 1], ['module.b.c', 2]]);
  t.deepEqual(stripModulePrefix(all), { tensors: new Map([['a', 1], ['b.c', 2]]), prefix: 'module.' });
  const some = new Map([['module.a', 1], ['b', 2]]);
  t.deepEqual(stripModulePrefix(some), { tensors: some, prefix: null });
});

test('files that are not weights: one-line errors naming the file', async (t) => {
  const dir = tempDir(t, 'notweights');
  writeFileSync(path.join(dir, 'notes.txt'), 'hello, not a tensor\n');
  writeFileSync(path.join(dir, 'empty.pth'), '');
  t.is(await rejection(readTorchFile(path.join(dir, 'notes.txt'))), 'notes.txt: not a PyTorch .pth (legacy or zip) or .safetensors file');
  t.is(await rejection(readTorchFile(path.join(dir, 'empty.pth'))), 'empty.pth: empty file');
  t.is(await rejection(readTorchFile(path.join(dir, 'absent.pth'))), `${path.join(dir, 'absent.pth')}: no such file`);
});

withPython('torchvision resnet18, legacy and zip format: every tensor exact, int64 buffers marked', async (t) => {
  const dir = tempDir(t, 'r18');
  fixtures(python!, 'resnet', 'resnet18', dir, '5');
  const ref = readReference(dir);
  for (const [file, format] of [['legacy.pth', 'legacy-pickle'], ['zip.pth', 'zip']] as const) {
    const started = Date.now();
    const w = await readWeightsFile(path.join(dir, file));
    t.log(`${file}: ${w.tensors.size} tensors read in ${Date.now() - started} ms`);
    t.is(w.format, format);
    t.deepEqual([...w.tensors.keys()], [...ref.tensors.keys()], `${file}: names in state_dict order`);
    t.deepEqual(differences(w.tensors, ref.tensors), [], file);
    for (const [name, tensor] of w.tensors) t.is(tensor.dtype as string, ref.dtypes[name], `${file}: ${name} dtype`);
    t.is(w.tensors.get('bn1.num_batches_tracked')!.dtype, 'int64');
    t.is(w.tensors.get('bn1.num_batches_tracked')!.data[0], 5);
    t.is([...w.tensors.values()].filter((x) => x.dtype === 'int64').length, 20);
  }
});

withPython('pre-0.4 layout (torch._utils._rebuild_tensor, no num_batches_tracked), as in resnet18-5c106cde.pth', async (t) => {
  const dir = tempDir(t, 'old');
  fixtures(python!, 'resnet', 'resnet18', dir, '6', '--old', '--formats', 'legacy');
  const raw = readFileSync(path.join(dir, 'legacy.pth'));
  t.true(raw.includes(Buffer.from('_rebuild_tensor\n')), 'the fixture uses the old rebuild function');
  const ref = readReference(dir);
  const tensors = await readTorchFile(path.join(dir, 'legacy.pth'));
  t.is(tensors.size, 102);
  t.deepEqual(differences(tensors, ref.tensors), []);
});

withPython('dtypes, views, shared storages with offsets, 0-d and empty tensors; wrapped + DataParallel', async (t) => {
  const dir = tempDir(t, 'small');
  fixtures(python!, 'small', dir);
  const ref = readReference(dir);
  for (const file of ['legacy.pth', 'zip.pth', 'wrapped_legacy.pth', 'wrapped_zip.pth']) {
    const w = await readWeightsFile(path.join(dir, file));
    t.deepEqual(differences(w.tensors, ref.tensors), [], file);
    t.deepEqual(
      Object.fromEntries([...w.tensors].map(([n, x]) => [n, x.dtype])),
      ref.dtypes,
      `${file}: dtypes`,
    );
    const wrapped = file.startsWith('wrapped');
    t.is(w.unwrappedFrom, wrapped ? 'model_state_dict' : null, file);
    t.is(w.strippedPrefix, wrapped ? 'module.' : null, file);
  }
  const tensors = await readTorchFile(path.join(dir, 'legacy.pth'));
  // Spot checks that do not go through the reference reader.
  t.deepEqual(tensors.get('scalar')!.shape, []);
  t.deepEqual([...tensors.get('scalar')!.data], [3.5]);
  t.deepEqual(tensors.get('empty')!.shape, [0, 3]);
  t.deepEqual([...tensors.get('i64')!.data], [-3, 0, 5, 2 ** 40]);
  t.deepEqual([...tensors.get('bool')!.data], [1, 0, 1]);
  t.deepEqual(tensors.get('transposed')!.shape, [6, 4]);
});

withPython('truncated and corrupt files: one-line errors that say what is wrong', async (t) => {
  const dir = tempDir(t, 'broken');
  fixtures(python!, 'resnet', 'resnet18', dir, '7', '--no-ref');
  const legacy = readFileSync(path.join(dir, 'legacy.pth'));
  const zip = readFileSync(path.join(dir, 'zip.pth'));
  const write = (name: string, data: Uint8Array) => {
    writeFileSync(path.join(dir, name), data);
    return path.join(dir, name);
  };
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['half.pth', legacy.subarray(0, legacy.length >> 1), /^half\.pth: truncated: storage \d+ needs \d+ bytes, \d+ left$/],
    ['head.pth', legacy.subarray(0, 3000), /^head\.pth: truncated: pickle (ends inside \w+ at byte \d+|has no STOP)/],
    ['zip-half.pth', zip.subarray(0, zip.length >> 1), /^zip-half\.pth: corrupt zip: no end-of-central-directory record \(truncated file\?\)$/],
  ];
  // A flipped byte inside the data of a zip entry, and a damaged central directory.
  const flipped = Buffer.from(zip);
  flipped[flipped.length >> 1] ^= 0xff;
  cases.push(['zip-flipped.pth', flipped, /^zip-flipped\.pth: corrupt zip: \S+\/data\/\d+: CRC-32 mismatch \(the file is damaged\)$/]);
  const damagedDir = Buffer.from(zip);
  const cd = damagedDir.lastIndexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
  damagedDir[cd] = 0;
  cases.push(['zip-dir.pth', damagedDir, /^zip-dir\.pth: corrupt zip: central directory entry \d+ at byte \d+ is damaged$/]);
  for (const [name, data, pattern] of cases) {
    const msg = await rejection(readTorchFile(write(name, data)));
    t.truthy(msg, `${name} is rejected`);
    t.regex(msg!, pattern, name);
    t.false(msg!.includes('\n'), `${name}: one line`);
  }
});
