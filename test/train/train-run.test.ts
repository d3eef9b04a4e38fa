import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { tf } from '../../src/backend/tf.js';
import { selectBackend } from '../../src/backend/select.js';
import { writeSynthDataset } from '../../src/data/synth.js';
import { loadDataset, split } from '../../src/data/datasets/index.js';
import { trainSrlh } from '../../src/train/srlh.js';
import { trainSemicon } from '../../src/train/semicon.js';
import { readCheckpointConfig } from '../../src/weights/checkpoint.js';
import { parseSafetensors } from '../../src/weights/safetensors.js';
import { DATABASE_CODES_FILE, STATE_FILE } from '../../src/train/run.js';
import { readCodeStore } from '../../src/retrieval/code-store.js';
import { fgh, projectRoot } from '../helpers/cli.js';

/** Real training runs on a tiny synthetic set: resumable after SIGKILL and Ctrl-C, logged, leak-free. */
let work = '';
let root = '';
const SIZE = 112; // sRLM needs a 4 x 4 map at least for 3 parts

test.before(async () => {
  await selectBackend();
  work = mkdtempSync(path.join(os.tmpdir(), 'fgh-train-'));
  root = path.join(work, 'synth');
  await writeSynthDataset(root, { classes: 3, perClass: 6, size: 112, seed: 2 });
});

test.after.always(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

function data() {
  const d = loadDataset('cub', { root });
  return { train: split(d, 'train'), test: split(d, 'test'), classes: d.classes.length, info: { name: 'synth', root } };
}

const quiet = { quiet: true, log: () => undefined };

test.serial('an sRLH run and a SEMICON iteration leave no tfjs tensors behind and write their state', async (t) => {
  const before = tf.memory().numTensors;
  const out = path.join(work, 'leak', '32');
  const r = await trainSrlh({ data: data(), bits: 32, out, size: SIZE, ...quiet }, { epochs: 3, batch: 4, warmup: 1, evalEvery: 3 });
  t.true(r.complete);
  t.is(typeof r.lastMap, 'number');
  t.is(tf.memory().numTensors, before, 'sRLH: no leaked tensors');
  const cfg = await readCheckpointConfig(out);
  t.is(cfg.training?.epoch, 3);
  t.true(cfg.training?.complete);
  const lines = readFileSync(path.join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { epoch: number; loss: number; hash: number; map: number | null });
  t.deepEqual(lines.map((l) => l.epoch), [1, 2, 3]);
  t.is(lines[0]!.hash, 0, 'warm-up epoch: classification only');
  t.true(lines[1]!.hash > 0);
  t.true(lines.every((l) => Number.isFinite(l.loss)));
  t.is(typeof lines[2]!.map, 'number');

  const sem = path.join(work, 'semicon', '12');
  const s = await trainSemicon({ data: data(), bits: 12, out: sem, size: 64, ...quiet }, { maxIter: 1, maxEpoch: 1, numSamples: 6, batch: 3 });
  t.true(s.complete);
  t.is(tf.memory().numTensors, before, 'SEMICON: no leaked tensors');
  const scfg = await readCheckpointConfig(sem);
  t.true(scfg.training?.complete);
  t.true(existsSync(path.join(sem, 'train-state.safetensors')));

  // The learned database codes: the signs of the saved B, with the training items' ids and labels,
  // and `fgh eval` against them gives the mAP the run logged (query codes through the exported model).
  const store = readCodeStore(path.join(sem, DATABASE_CODES_FILE));
  const train = data().train;
  t.is(store.header.count, train.length);
  t.is(store.header.bits, 12);
  t.deepEqual(store.ids, train.map((x) => x.id));
  t.deepEqual(Array.from(store.labels!.kind === 'single' ? store.labels!.ids : []), train.map((x) => x.labels[0]!));
  const B = parseSafetensors(readFileSync(path.join(sem, STATE_FILE)), sem).tensors.get('database_codes')!;
  t.deepEqual(B.shape, [train.length, 12]);
  for (let i = 0; i < train.length; i++) {
    for (let k = 0; k < 12; k++) {
      const bit = (store.codes.data[i * store.codes.stride + (k >> 3)]! >> (7 - (k & 7))) & 1;
      t.is(bit, B.data[i * 12 + k]! > 0 ? 1 : 0, `item ${i} bit ${k}`);
    }
  }
  const logged = readFileSync(path.join(sem, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { map?: number | null }).find((l) => typeof l.map === 'number')!.map!;
  const onnx = path.join(work, 'semicon-12.onnx');
  const q = path.join(work, 'semicon-12.query');
  t.is(fgh('export', '--onnx', '--checkpoint', sem, '--out', onnx).status, 0);
  t.is(fgh('encode', '--model', onnx, '--dataset', 'cub', '--root', root, '--split', 'test', '--out', q, '--quiet').status, 0);
  const ev = fgh('eval', '--query', q, '--db', path.join(sem, DATABASE_CODES_FILE), '--json');
  t.is(ev.status, 0, ev.stderr);
  const scored = JSON.parse(ev.stdout) as { map: number; num_db: number };
  t.is(scored.num_db, train.length);
  t.true(Math.abs(scored.map - logged) < 1e-9, `fgh eval ${scored.map} against the run's own ${logged}`);
});

test.serial('sRLH centres: the reference moves them after each hash epoch; --fixed-centres keeps the Hadamard targets', async (t) => {
  const centresAfter = async (updateCentres: boolean): Promise<Float32Array[]> => {
    const out = path.join(work, `centres-${updateCentres}`, '32');
    const seen: Float32Array[] = [];
    // Read synchronously in onSave: the next epoch's save replaces the file.
    const read = (): void => void seen.push(Float32Array.from(parseSafetensors(readFileSync(path.join(out, STATE_FILE)), out).tensors.get('centres')!.data));
    await trainSrlh({ data: data(), bits: 32, out, size: SIZE, ...quiet, onSave: read }, { epochs: 2, batch: 4, warmup: 1, evalEvery: 0, updateCentres });
    return seen;
  };
  const moved = await centresAfter(true);
  const fixed = await centresAfter(false);
  t.is(moved.length, 2);
  t.deepEqual(fixed[0], moved[0], 'the same targets after the warm-up epoch');
  t.notDeepEqual(moved[1], moved[0], 'after a hash epoch the reference rule moves the centres');
  t.deepEqual(fixed[1], fixed[0], '--fixed-centres keeps them');
});

/** log.jsonl without its wall-clock fields: what must repeat exactly. */
function logWithoutTimes(dir: string): unknown[] {
  return readFileSync(path.join(dir, 'log.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => {
      const { seconds: _seconds, images_per_s: _rate, ...rest } = JSON.parse(l) as Record<string, unknown>;
      return rest;
    });
}

function readLog(dir: string): number[] {
  return readFileSync(path.join(dir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { epoch: number }).epoch);
}

test.serial('fgh train survives SIGKILL and Ctrl-C: --resume finishes the run and the log continues', async (t) => {
  const out = path.join(work, 'runs');
  const args = ['train', '--method', 'srlh', '--dataset', 'cub', '--root', root, '--bits', '16', '--out', out, '--size', String(SIZE), '--epochs', '4', '--batch', '4', '--eval-every', '4', '--quiet'];
  const ckpt = path.join(out, '16');
  const spawnFgh = (extra: string[] = []) => spawn(process.execPath, [path.join(projectRoot, 'bin', 'fgh.js'), ...args, ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });

  // Killed (SIGKILL) by the test hook right after the first save, the end of epoch 1.
  const first = spawnSync(process.execPath, [path.join(projectRoot, 'bin', 'fgh.js'), ...args], { env: { ...process.env, FGH_TEST_KILL_AFTER_SAVE: '1' }, encoding: 'utf8' });
  t.is(first.signal, 'SIGKILL', first.stderr);
  const killedAt = (await readCheckpointConfig(ckpt)).training!.epoch;
  t.is(killedAt, 1, 'killed after epoch 1');

  // Ctrl-C in the middle of the next epoch: saves mid-epoch and exits with 130.
  // Sent when the resumed run says it resumes (its Ctrl-C handler is in place by then), not
  // after a fixed delay: a fast machine would finish the run first.
  const second = spawnFgh(['--resume']);
  await new Promise<void>((resolve) => {
    let said = '';
    second.stderr!.on('data', (chunk: Buffer) => {
      said += chunk.toString();
      if (/resuming/.test(said)) resolve();
    });
  });
  second.kill('SIGINT');
  const code = await new Promise<number | null>((r) => second.on('exit', (c) => r(c)));
  const mid = await readCheckpointConfig(ckpt);
  t.log(`killed after epoch ${killedAt}; Ctrl-C exit ${code} at epoch ${mid.training?.epoch}, position ${JSON.stringify(mid.training?.hyper.position)}`);
  // The signal came at the start of the resumed epoch, with the handler in place: the run stops at
  // the next batch boundary and saves there, inside the epoch.
  t.is(code, 130, 'Ctrl-C exit code');
  const pos = mid.training?.hyper.position as { epoch: number; batch: number };
  t.is(pos.epoch, killedAt, 'stopped in the epoch after the one killed');
  t.true(pos.batch >= 1, `saved mid-epoch (batch ${pos.batch})`);

  // The folder alone is enough to continue: train-config.json holds the rest.
  const r = fgh('train', '--resume', '--out', out, '--json');
  t.is(r.status, 0, r.stderr);
  t.regex(r.stderr, new RegExp(`resuming .* at epoch ${pos.epoch + 1}, batch ${pos.batch + 1}`), 'continued from the mid-epoch save');
  const summary = JSON.parse(r.stdout) as { runs: Array<{ complete: boolean; epochs: number; lastMap: number }> };
  t.true(summary.runs[0]!.complete);
  t.is(summary.runs[0]!.epochs, 4);
  t.deepEqual(readLog(ckpt), [1, 2, 3, 4], 'each epoch logged once, in order');
  const final = await readCheckpointConfig(ckpt);
  t.true(final.training?.complete);
  // A finished run resumes as "already complete".
  const again = fgh(...args, '--resume', '--json');
  t.is(again.status, 0);
  t.regex(again.stderr, /already complete/);

  // Killed, stopped mid-epoch and resumed twice, the run ends with the weights of one that never stopped.
  const straight = path.join(work, 'runs-straight');
  const whole = fgh(...args.map((a) => (a === out ? straight : a)));
  t.is(whole.status, 0, whole.stderr);
  t.true(readFileSync(path.join(ckpt, 'weights.safetensors')).equals(readFileSync(path.join(straight, '16', 'weights.safetensors'))), 'weights equal an uninterrupted run, byte for byte');
  t.true(readFileSync(path.join(ckpt, STATE_FILE)).equals(readFileSync(path.join(straight, '16', STATE_FILE))), 'optimiser state and centres too');
  t.deepEqual(logWithoutTimes(ckpt), logWithoutTimes(path.join(straight, '16')), 'the same log (timings aside)');
});

test.serial('SEMICON killed mid-iteration (SIGKILL) and resumed ends exactly as an uninterrupted run: weights, state, learned codes', async (t) => {
  const args = (out: string): string[] => ['train', '--method', 'semicon', '--dataset', 'cub', '--root', root, '--bits', '12', '--out', out, '--size', '64', '--max-iter', '2', '--max-epoch', '2', '--num-samples', '6', '--batch', '3', '--quiet'];
  const out = path.join(work, 'semicon-kill');
  const ckpt = path.join(out, '12');
  // Killed (SIGKILL) by the test hook right after the first save: epoch 1 of iteration 1, before its bitwise update.
  const first = spawnSync(process.execPath, [path.join(projectRoot, 'bin', 'fgh.js'), ...args(out)], { env: { ...process.env, FGH_TEST_KILL_AFTER_SAVE: '1' }, encoding: 'utf8' });
  t.is(first.signal, 'SIGKILL', first.stderr);
  const killedAt = (await readCheckpointConfig(ckpt)).training!.epoch;
  t.is(killedAt, 1);
  const resumed = fgh('train', '--resume', '--out', out);
  t.is(resumed.status, 0, resumed.stderr);
  // It continued from the save (a restart from scratch would also end equal: runs are deterministic).
  t.regex(resumed.stderr, new RegExp(`resuming .* at iteration ${Math.floor(killedAt / 2) + 1}, epoch ${(killedAt % 2) + 1}`));
  const straight = path.join(work, 'semicon-straight');
  const whole = fgh(...args(straight));
  t.is(whole.status, 0, whole.stderr);
  for (const file of ['weights.safetensors', STATE_FILE, DATABASE_CODES_FILE]) {
    t.true(readFileSync(path.join(ckpt, file)).equals(readFileSync(path.join(straight, '12', file))), `${file}: equal to the uninterrupted run's`);
  }
  t.deepEqual(logWithoutTimes(ckpt), logWithoutTimes(path.join(straight, '12')), 'the same log, line for line (timings aside)');
});

test.serial('fgh finetune killed (SIGKILL) and resumed ends exactly as an uninterrupted run', async (t) => {
  const args = (out: string): string[] => ['finetune', '--dataset', 'cub', '--root', root, '--arch', 'resnet18', '--out', out, '--epochs', '3', '--batch', '4', '--size', '64', '--quiet'];
  const out = path.join(work, 'ft-kill');
  // Killed (SIGKILL) by the test hook right after its second save, the end of epoch 2.
  const first = spawnSync(process.execPath, [path.join(projectRoot, 'bin', 'fgh.js'), ...args(out)], { env: { ...process.env, FGH_TEST_KILL_AFTER_SAVE: '2' }, encoding: 'utf8' });
  t.is(first.signal, 'SIGKILL', first.stderr);
  const killedAt = (await readCheckpointConfig(`${out}.run`)).training!.epoch;
  t.is(killedAt, 2);
  const resumed = fgh(...args(out), '--resume');
  t.is(resumed.status, 0, resumed.stderr);
  t.regex(resumed.stderr, new RegExp(`resuming .* at epoch ${killedAt + 1}`), 'continued from the save');
  const straight = path.join(work, 'ft-straight');
  const whole = fgh(...args(straight));
  t.is(whole.status, 0, whole.stderr);
  for (const [dir, other] of [[`${out}.run`, `${straight}.run`], [out, straight]]) {
    t.true(readFileSync(path.join(dir!, 'weights.safetensors')).equals(readFileSync(path.join(other!, 'weights.safetensors'))), `${path.basename(dir!)}: weights equal the uninterrupted run's`);
  }
  t.true(readFileSync(path.join(`${out}.run`, STATE_FILE)).equals(readFileSync(path.join(`${straight}.run`, STATE_FILE))), 'optimiser state too');
  t.deepEqual(logWithoutTimes(`${out}.run`), logWithoutTimes(`${straight}.run`), 'the same log (timings aside)');
});

test.serial('fgh finetune keeps the lowest-loss epoch and feeds fgh train --init', (t) => {
  const ft = path.join(work, 'ft');
  const r = fgh('finetune', '--dataset', 'cub', '--root', root, '--arch', 'resnet18', '--out', ft, '--epochs', '3', '--batch', '4', '--size', '64', '--quiet', '--json');
  t.is(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout) as { complete: boolean; bestEpoch: number; bestLoss: number };
  t.true(s.complete);
  const lines = readFileSync(path.join(`${ft}.run`, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { epoch: number; loss: number });
  const lowest = lines.reduce((a, b) => (b.loss < a.loss ? b : a));
  t.is(s.bestEpoch, lowest.epoch, 'the kept epoch is the one with the lowest loss');
  t.is(s.bestLoss, lowest.loss);
  const tr = fgh('train', '--method', 'srlh', '--dataset', 'cub', '--root', root, '--bits', '12', '--out', path.join(work, 'from-ft'), '--init', ft, '--size', String(SIZE), '--epochs', '1', '--batch', '4', '--eval-every', '1', '--quiet');
  t.is(tr.status, 0, tr.stderr);
  t.regex(tr.stderr, /initialised from .*ft: \d+ tensors loaded \(\d+ backbone\)/);
});

test.serial('fgh train --method semicon at its default batch of 16 (64 px) trains on the CPU', async (t) => {
  // 20 training images: a full batch of 16 and a partial one (wasm32 used to abort here).
  const big = path.join(work, 'synth-20');
  await writeSynthDataset(big, { classes: 4, perClass: 10, size: 64, seed: 5 });
  const out = path.join(work, 'semicon-16');
  const r = fgh('train', '--method', 'semicon', '--dataset', 'cub', '--root', big, '--bits', '12', '--out', out, '--size', '64', '--max-iter', '1', '--max-epoch', '1', '--quiet');
  t.is(r.status, 0, r.stderr);
  const cfg = await readCheckpointConfig(path.join(out, '12'));
  t.is((cfg.training?.hyper as { batch?: number } | undefined)?.batch, 16, 'the default batch');
  t.true(cfg.training?.complete);
  const lines = readFileSync(path.join(out, '12', 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { loss?: number; map?: number });
  const epochs = lines.filter((l) => l.loss !== undefined);
  t.true(epochs.length === 1 && Number.isFinite(epochs[0]!.loss), 'one epoch with a finite loss');
  t.true(lines.some((l) => typeof l.map === 'number'), 'evaluated after the iteration');
});

test.serial('fgh train: running out of memory is one line naming --batch and --size', (t) => {
  // FGH_MEMORY_LIMIT_MB below what the process already holds: the first large kernel is refused.
  const r = spawnSync(process.execPath, [path.join(projectRoot, 'bin', 'fgh.js'), 'train', '--method', 'semicon', '--dataset', 'cub', '--root', root, '--bits', '12', '--out', path.join(work, 'oom'), '--size', '64', '--max-iter', '1', '--max-epoch', '1', '--quiet'], {
    encoding: 'utf8',
    env: { ...process.env, FGH_MEMORY_LIMIT_MB: '100' },
  });
  t.is(r.status, 1, r.stderr);
  const last = r.stderr.trim().split('\n').pop()!;
  t.regex(last, /^fgh: out of memory training with --batch 16 at --size 64 on the onnxruntime .*limit of 100 MiB.*: lower --batch or --size$/);
  t.notRegex(r.stderr, /internal error|FATAL|Aborted/);
});

test.serial('fgh train: --config, train-config.json and --resume; a run is reproducible from its folder alone', async (t) => {
  const cfgFile = path.join(work, 'run.json');
  const wanted = { method: 'srlh', dataset: 'cub', root, bits: [12], size: 64, hyper: { epochs: 2, batch: 4, warmup: 1, hashWeight: 0.5, samplesPerEpoch: 8, lrSteps: [1] } };
  writeFileSync(cfgFile, JSON.stringify(wanted));
  const out = path.join(work, 'configured');
  // Flags win over the file.
  const r = fgh('train', '--config', cfgFile, '--out', out, '--lr', '0.003', '--quiet', '--json');
  t.is(r.status, 0, r.stderr);
  const saved = JSON.parse(readFileSync(path.join(out, 'train-config.json'), 'utf8')) as { recipe: string; size: number; hyper: Record<string, unknown> };
  t.is(saved.recipe, 'scratch', 'no --init: the scratch recipe');
  t.is(saved.size, 64);
  t.like(saved.hyper, { ...wanted.hyper, lr: 0.003, numParts: 0, dropout: false });
  const ckpt = await readCheckpointConfig(path.join(out, '12'));
  t.like(ckpt.training?.hyper ?? {}, { ...wanted.hyper, lr: 0.003 }, 'the loop ran with the resolved values');
  const lrs = readFileSync(path.join(out, '12', 'log.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { lr: number }).lr);
  t.deepEqual(lrs, [0.003, 0.003 * 0.1], 'lrSteps [1] reached the schedule');

  // --print-config of the folder's file shows the same run.
  const shown = fgh('train', '--config', path.join(out, 'train-config.json'), '--print-config');
  t.is(shown.status, 0, shown.stderr);
  t.deepEqual(JSON.parse(shown.stdout), JSON.parse(readFileSync(path.join(out, 'train-config.json'), 'utf8')));
  // The folder's file reproduces the run bit for bit.
  const again = path.join(work, 'configured-again');
  t.is(fgh('train', '--config', path.join(out, 'train-config.json'), '--out', again, '--quiet').status, 0);
  t.true(readFileSync(path.join(again, '12', 'weights.safetensors')).equals(readFileSync(path.join(out, '12', 'weights.safetensors'))), 'the same weights, byte for byte');

  const done = fgh('train', '--resume', '--out', out);
  t.is(done.status, 0, done.stderr);
  t.regex(done.stderr, /already complete/);
  const clash = fgh('train', '--resume', '--out', out, '--lr', '0.1');
  t.is(clash.status, 1);
  t.regex(clash.stderr, /--resume continues the saved configuration, but the command asks for lr: 0\.003 -> 0\.1/);
  const reuse = fgh('train', '--config', cfgFile, '--out', out);
  t.is(reuse.status, 1);
  t.regex(reuse.stderr, /already holds a training run/);
  const typo = path.join(work, 'typo.json');
  writeFileSync(typo, JSON.stringify({ method: 'srlh', hyper: { learningRate: 0.1 } }));
  const bad = fgh('train', '--config', typo, '--print-config');
  t.is(bad.status, 1);
  t.regex(bad.stderr, /unknown hyper-parameter "learningRate"/);
});

test.serial('fgh train --print-config: the reference recipe is the authors\' hyper-parameters, the default with --init', (t) => {
  const show = (...args: string[]) => JSON.parse(fgh('train', '--print-config', ...args).stdout) as { recipe: string; hyper: Record<string, unknown> };
  // cub_train.py's get_config and loop; run.py's defaults with the README's CUB command (--momen 0.91).
  t.like(show('--method', 'srlh', '--init', 'ckpt').hyper, { epochs: 300, batch: 64, lr: 0.001, lrSteps: [200, 400], momentum: 0.9, weightDecay: 1e-4, alpha: 0.9, numParts: 3, margin: 0.5, samplesPerEpoch: 3000, dropout: true, updateCentres: true, warmup: 2 });
  t.like(show('--method', 'semicon', '--init', 'ckpt').hyper, { maxIter: 40, maxEpoch: 30, batch: 16, lr: 2.5e-4, lrSteps: [40], momentum: 0.91, nesterov: true, weightDecay: 1e-4, numSamples: 2000, gamma: 200, cropScale: 0.08, evalTransform: 'resize-256-centercrop-224', alpha: 0.15 });
  t.is(show('--method', 'srlh').recipe, 'scratch');
  t.is(show('--method', 'srlh', '--init', 'ckpt').recipe, 'reference');
  t.is(show('--method', 'srlh', '--init', 'ckpt', '--recipe', 'scratch').recipe, 'scratch');
  const all = JSON.parse(fgh('train', '--print-config').stdout) as Record<string, Record<string, unknown>>;
  t.deepEqual(Object.keys(all).sort(), ['semicon', 'srlh']);
  t.deepEqual(Object.keys(all.srlh!).sort(), ['reference', 'scratch']);
});

test.serial('fgh train: every hyper-parameter flag lands in the resolved configuration', (t) => {
  const cases: Array<[string, string[], Record<string, unknown>]> = [
    ['srlh', ['--epochs', '7', '--batch', '9', '--lr', '0.02', '--warmup-lr', '0.05', '--lr-steps', '3,5', '--momentum', '0.8', '--weight-decay', '0.001', '--alpha', '0.7', '--gamma', '0.3', '--hash-weight', '0.25', '--hash-classes', '100', '--margin', '0.4', '--parts', '2', '--dropout', '--no-update-centres', '--warmup-epochs', '4', '--samples-per-epoch', '500', '--eval-every', '2', '--seed', '9'],
      { epochs: 7, batch: 9, lr: 0.02, warmupLr: 0.05, lrSteps: [3, 5], momentum: 0.8, weightDecay: 0.001, alpha: 0.7, gamma: 0.3, hashWeight: 0.25, hashClasses: 100, margin: 0.4, numParts: 2, dropout: true, updateCentres: false, warmup: 4, samplesPerEpoch: 500, evalEvery: 2, seed: 9 }],
    ['semicon', ['--max-iter', '5', '--max-epoch', '6', '--batch', '7', '--lr', '0.01', '--lr-steps', '2', '--optim', 'adam', '--momentum', '0.8', '--no-nesterov', '--weight-decay', '0.002', '--num-samples', '300', '--gamma', '50', '--eval-every', '2', '--topk', '100', '--crop-scale', '0.5', '--eval-transform', 'resize-224', '--alpha', '0.3', '--seed', '3'],
      { maxIter: 5, maxEpoch: 6, batch: 7, lr: 0.01, lrSteps: [2], optim: 'adam', momentum: 0.8, nesterov: false, weightDecay: 0.002, numSamples: 300, gamma: 50, evalEvery: 2, topk: 100, cropScale: 0.5, evalTransform: 'resize-224', alpha: 0.3, seed: 3 }],
  ];
  for (const [method, flags, expected] of cases) {
    const r = fgh('train', '--print-config', '--method', method, ...flags);
    t.is(r.status, 0, r.stderr);
    const hyper = (JSON.parse(r.stdout) as { hyper: Record<string, unknown> }).hyper;
    t.deepEqual(hyper, expected, `${method}: every field set by its flag`);
  }
  t.true(/--fixed-centres/.test(fgh('train', '--help').stdout));
  const legacy = JSON.parse(fgh('train', '--print-config', '--method', 'srlh', '--fixed-centres').stdout) as { hyper: { updateCentres: boolean } };
  t.false(legacy.hyper.updateCentres);
});

test.serial('fgh train: bad options give one line', (t) => {
  for (const [args, message] of [
    [['--method', 'dsh'], /--method must be srlh or semicon/],
    [['--method', 'semicon', '--bits', '16'], /16/],
    [['--method', 'srlh', '--bits', '16', '--max-iter', '3'], /--max-iter is a SEMICON option/],
    [['--method', 'semicon', '--bits', '12', '--epochs', '3'], /--epochs is an sRLH option/],
    [['--method', 'srlh', '--size', '64', '--parts', '3'], /--size 64: ResNet-18's last map is 2x2, .* use --size 97 or more/],
    [['--method', 'srlh', '--size', '64', '--recipe', 'reference'], /--size 64: ResNet-18's last map is 2x2, .* use --size 97 or more/],
    [['--method', 'srlh', '--lr', '-1'], /lr must be positive, got "-1"/],
    [['--method', 'semicon', '--crop-scale', '1.5'], /cropScale must be <= 1, got "1.5"/],
    [['--method', 'srlh', '--lr-steps', '2,x'], /lrSteps must be an integer/],
    [['--method', 'semicon', '--bits', '12', '--optim', 'rmsprop'], /optim must be one of sgd, adam, got "rmsprop"/],
    [['--method', 'srlh', '--recipe', 'fast'], /--recipe must be reference or scratch, got "fast"/],
    [['--method', 'srlh', '--config', path.join(work, 'missing.json')], /missing\.json: no such file/],
    [['--method', 'semicon', '--bits', '12', '--no-dropout'], /--no-dropout is an sRLH option/],
    [['--method', 'semicon', '--bits', '12', '--fixed-centres'], /--fixed-centres is an sRLH option/],
  ] as Array<[string[], RegExp]>) {
    const r = fgh('train', '--dataset', 'cub', '--root', root, '--out', path.join(work, 'x'), '--bits', '12', ...args);
    t.is(r.status, 1, args.join(' '));
    t.regex(r.stderr, message);
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
});
