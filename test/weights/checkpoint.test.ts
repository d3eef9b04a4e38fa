import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { selectBackend } from '../../src/backend/select.js';
import { ResNet } from '../../src/models/resnet.js';
import { stateDict } from '../../src/models/state-dict.js';
import {
  CHECKPOINT_FORMAT,
  loadModelCheckpoint,
  newCheckpointConfig,
  readCheckpoint,
  readCheckpointConfig,
  saveModelCheckpoint,
  writeCheckpoint,
  type CheckpointConfig,
} from '../../src/weights/checkpoint.js';
import { Rng } from '../../src/util/rng.js';
import { differences, rejection, tempDir } from './fixtures.js';

const tensors = new Map([
  ['conv.weight', { shape: [2, 1, 1, 2], data: Float32Array.from([1, 2, 3, 4]) }],
  ['bn.num_batches_tracked', { shape: [], data: Float32Array.from([9]), dtype: 'int64' as const }],
]);

function config(extra: Partial<CheckpointConfig> = {}): CheckpointConfig {
  return newCheckpointConfig({ method: 'srlh', arch: 'resnet18', bits: 32, classes: 200, dataset: { name: 'cub', root: '/data/CUB_200_2011' }, ...extra });
}

test('write then read: config.json as documented, weights with dtypes, no temporary files left', async (t) => {
  const dir = tempDir(t, 'ckpt');
  const ckpt = path.join(dir, 'ck');
  const training = { epoch: 3, epochs: 90, step: 1200, seed: 7, rngState: [1, 2, 3, 4], complete: false, bestMap: 0.61, hyper: { lr: 0.001, alpha: 0.9 } };
  const written = await writeCheckpoint(ckpt, config({ training }), tensors, { extraFiles: { 'log.txt': 'epoch 3\n' } });
  t.is(written.tensors, 2);
  t.is(written.bytes, readFileSync(path.join(ckpt, 'weights.safetensors')).length);
  t.deepEqual(readdirSync(ckpt).sort(), ['config.json', 'log.txt', 'weights.safetensors']);
  t.deepEqual(readdirSync(dir), ['ck'], 'no temporary directory left behind');
  const json = JSON.parse(readFileSync(path.join(ckpt, 'config.json'), 'utf8')) as Record<string, unknown>;
  t.deepEqual(Object.keys(json), ['format', 'producer', 'method', 'arch', 'bits', 'classes', 'inputSize', 'mean', 'std', 'transform', 'dataset', 'source', 'training']);
  t.is(json.format, CHECKPOINT_FORMAT);
  t.is(json.transform, 'resize-224', 'sRLH evaluates with a 224 squash');
  t.deepEqual(json.mean, [0.485, 0.456, 0.406]);
  const back = await readCheckpoint(ckpt);
  t.deepEqual(back.config, config({ training }));
  t.deepEqual(differences(back.tensors, tensors), []);
  t.is(back.tensors.get('bn.num_batches_tracked')!.dtype, 'int64');
  t.is(back.tensors.get('conv.weight')!.dtype, 'float32');
});

test('replacing a checkpoint: done atomically, and a failed write keeps the old one', async (t) => {
  const dir = tempDir(t, 'ckpt-replace');
  const ckpt = path.join(dir, 'ck');
  await writeCheckpoint(ckpt, config({ bits: 12 }), tensors);
  await writeCheckpoint(ckpt, config({ bits: 48 }), tensors);
  t.is((await readCheckpointConfig(ckpt)).bits, 48);
  t.deepEqual(readdirSync(dir), ['ck']);
  const bad = new Map([...tensors, ['broken', { shape: [3], data: new Float32Array(2) }]]);
  t.is(await rejection(writeCheckpoint(ckpt, config({ bits: 64 }), bad)), `${ckpt}: cannot write checkpoint: broken: 2 values for shape [3]`);
  t.is((await readCheckpointConfig(ckpt)).bits, 48, 'the old checkpoint is intact');
  t.deepEqual(differences((await readCheckpoint(ckpt)).tensors, tensors), []);
  t.deepEqual(readdirSync(dir), ['ck'], 'the temporary directory was removed');
  // An empty directory is fine; a directory that is not a checkpoint is never replaced.
  mkdirSync(path.join(dir, 'empty'));
  await writeCheckpoint(path.join(dir, 'empty'), config(), tensors);
  t.true(existsSync(path.join(dir, 'empty', 'config.json')));
  mkdirSync(path.join(dir, 'photos'));
  writeFileSync(path.join(dir, 'photos', 'cat.jpg'), 'x');
  t.regex((await rejection(writeCheckpoint(path.join(dir, 'photos'), config(), tensors)))!, /photos: exists and is not a checkpoint \(no config\.json\); refusing to replace it$/);
  t.true(existsSync(path.join(dir, 'photos', 'cat.jpg')));
  // Invalid configs are refused before anything is written.
  t.regex((await rejection(writeCheckpoint(path.join(dir, 'x'), config({ bits: null }), tensors)))!, /a srlh checkpoint needs 'bits'$/);
  t.false(existsSync(path.join(dir, 'x')));
});

test('a save killed between moving the old checkpoint aside and the new one in: the next read or write puts the right one in place', async (t) => {
  const dir = tempDir(t, 'ckpt-swap');
  const ckpt = path.join(dir, 'ck');
  await writeCheckpoint(ckpt, config({ bits: 12 }), tensors);
  const writer = (bits: number, env: Record<string, string>): number | null => {
    const script = `import { writeCheckpoint, newCheckpointConfig } from ${JSON.stringify(new URL('../../src/weights/checkpoint.js', import.meta.url).href)};
      const t = new Map([['conv.weight', { shape: [2, 1, 1, 2], data: Float32Array.from([1, 2, 3, 4]) }], ['bn.num_batches_tracked', { shape: [], data: Float32Array.from([9]), dtype: 'int64' }]]);
      await writeCheckpoint(${JSON.stringify(ckpt)}, newCheckpointConfig({ method: 'srlh', arch: 'resnet18', bits: ${bits}, classes: 200, dataset: { name: 'cub', root: '/data/CUB_200_2011' } }), t);`;
    return spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ...env } }).status;
  };
  // Killed after the new checkpoint was complete: the next read finishes the swap (a real SIGKILL).
  t.is(writer(48, { FGH_TEST_KILL_IN_SWAP: '1' }), null, 'the writer was killed');
  t.false(existsSync(ckpt), 'the kill left the directory moved aside');
  t.is((await readCheckpointConfig(ckpt)).bits, 48, 'the completed save is put in place');
  t.deepEqual(readdirSync(dir), ['ck'], 'nothing left over');
  t.deepEqual(differences((await readCheckpoint(ckpt)).tensors, tensors), []);
  // Killed again, then the new one's config.json is missing (as if killed while writing it):
  // the previous checkpoint goes back, and the next write starts from it.
  t.is(writer(64, { FGH_TEST_KILL_IN_SWAP: '1' }), null);
  const tmp = readdirSync(dir).find((n) => n.endsWith('.tmp'))!;
  rmSync(path.join(dir, tmp, 'config.json'));
  await writeCheckpoint(ckpt, config({ bits: 24 }), tensors);
  t.is((await readCheckpointConfig(ckpt)).bits, 24);
  t.deepEqual(readdirSync(dir), ['ck']);
  t.is(writer(32, { FGH_TEST_KILL_IN_SWAP: '1' }), null);
  rmSync(path.join(dir, readdirSync(dir).find((n) => n.endsWith('.tmp'))!, 'config.json'));
  t.is((await readCheckpointConfig(ckpt)).bits, 24, 'the previous checkpoint, not the incomplete one');
  t.deepEqual(readdirSync(dir).filter((n) => !n.endsWith('.tmp')), ['ck'], 'the .old is back in place (the stale .tmp goes at the next write)');
  await writeCheckpoint(ckpt, config({ bits: 16 }), tensors);
  t.deepEqual(readdirSync(dir), ['ck']);
});

test('reading: one-line errors for missing files, bad JSON, missing or wrong fields, newer formats', async (t) => {
  const dir = tempDir(t, 'ckpt-bad');
  const good = path.join(dir, 'good');
  await writeCheckpoint(good, config(), tensors);
  const goodJson = JSON.parse(readFileSync(path.join(good, 'config.json'), 'utf8')) as Record<string, unknown>;
  const make = (name: string, configText: string | null, weights = true): string => {
    const d = path.join(dir, name);
    mkdirSync(d);
    if (configText !== null) writeFileSync(path.join(d, 'config.json'), configText);
    if (weights) writeFileSync(path.join(d, 'weights.safetensors'), readFileSync(path.join(good, 'weights.safetensors')));
    return d;
  };
  const without = (key: string) => JSON.stringify(Object.fromEntries(Object.entries(goodJson).filter(([k]) => k !== key)));
  writeFileSync(path.join(dir, 'file.pth'), 'x');
  const cases: Array<[string, RegExp]> = [
    [path.join(dir, 'absent'), /absent: no such checkpoint directory$/],
    [path.join(dir, 'file.pth'), /file\.pth: not a checkpoint directory but a file \(convert PyTorch weights with fgh convert-weights\)$/],
    [make('noconfig', null), /noconfig: not a checkpoint \(no config\.json\)$/],
    [make('badjson', '{"format": 1,'), /badjson\/config\.json: bad JSON: /],
    [make('noarch', without('arch')), /noarch\/config\.json: missing field 'arch'$/],
    [make('badbits', JSON.stringify({ ...goodJson, bits: 'many' })), /badbits\/config\.json: field 'bits' must be a positive integer or null, got "many"$/],
    [make('badarch', JSON.stringify({ ...goodJson, arch: 'vgg16' })), /field 'arch' must be resnet18\|resnet50, got "vgg16"$/],
    [make('badtrain', JSON.stringify({ ...goodJson, training: { epoch: 1 } })), /badtrain\/config\.json: missing field 'training\.epochs'$/],
    [make('newer', JSON.stringify({ ...goodJson, format: CHECKPOINT_FORMAT + 1 })), /checkpoint format 2 is newer than this fgh reads \(1\); upgrade fgh$/],
    [make('noweights', JSON.stringify(goodJson), false), /noweights: not a complete checkpoint \(no weights\.safetensors\)$/],
  ];
  for (const [d, pattern] of cases) {
    const msg = await rejection(readCheckpoint(d));
    t.truthy(msg, `${path.basename(d)} is rejected`);
    t.regex(msg!, pattern);
    t.false(msg!.includes('\n'));
  }
});

test('a model round-trips through a checkpoint: same parameters in a freshly built model', async (t) => {
  await selectBackend();
  const dir = tempDir(t, 'ckpt-model');
  const a = new ResNet(new Rng(1), 'resnet18', { numClasses: 10 }).assignNames();
  const b = new ResNet(new Rng(2), 'resnet18', { numClasses: 10 }).assignNames();
  try {
    const cfg = newCheckpointConfig({ method: 'backbone', arch: 'resnet18', classes: 10 });
    await saveModelCheckpoint(path.join(dir, 'ck'), cfg, a);
    const before = differences(stateDict(b), stateDict(a)).length;
    t.true(before > 0, 'the two models start different');
    const { config: back, report } = await loadModelCheckpoint(path.join(dir, 'ck'), b);
    t.deepEqual(back, cfg);
    t.deepEqual(report.missing, []);
    t.deepEqual(report.unexpected, []);
    t.deepEqual(differences(stateDict(b), stateDict(a)), []);
    // A checkpoint of another architecture is refused with the checkpoint named.
    const c = new ResNet(new Rng(3), 'resnet18', { numClasses: 5 }).assignNames();
    const msg = await rejection(loadModelCheckpoint(path.join(dir, 'ck'), c));
    c.dispose();
    t.regex(msg!, /ck: shape mismatch: fc\.weight is \[10,512\], expected \[5,512\]; fc\.bias is \[10\], expected \[5\]$/);
  } finally {
    a.dispose();
    b.dispose();
  }
});
