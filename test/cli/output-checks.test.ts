import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fgh, type CliResult } from '../helpers/cli.js';
import { mountTmpfs, remountReadOnly, tmpfsUnavailable } from '../helpers/tmpfs.js';

/**
 * Every long-running writer checks its output location first: an unwritable --out fails at once,
 * in one line, before the data, weights or checkpoint are even read (here they do not exist, so a
 * late check would complain about them instead), rather than after an epoch of training.
 */

function work(t: ExecutionContext): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-output-checks-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function failsAtOnce(t: ExecutionContext, r: CliResult, line: string): void {
  t.is(r.status, 1, r.stderr);
  // Nothing else: not even the backend line `fgh train` prints before loading the dataset.
  t.is(r.stderr, `fgh: ${line}\n`);
}

function timed(...args: string[]): CliResult & { ms: number } {
  const t0 = performance.now();
  const r = fgh(...args);
  return { ...r, ms: performance.now() - t0 };
}

test('fgh train --out under an existing file fails before loading the dataset, and creates nothing', (t) => {
  const dir = work(t);
  const file = path.join(dir, 'plain');
  writeFileSync(file, 'x');
  const missingRoot = path.join(dir, 'no-such-dataset');
  for (const out of [path.join(file, 'run'), file]) {
    const r = timed('train', '--method', 'srlh', '--dataset', 'cub', '--root', missingRoot, '--bits', '12', '--out', out, '--size', '64', '--quiet');
    failsAtOnce(t, r, out === file ? `${file}: is a file, expected a directory` : `${out}: a parent is a file (${file})`);
    t.log(`${path.relative(dir, out)}: failed after ${r.ms.toFixed(0)} ms (the whole process, start-up included)`);
  }
  t.deepEqual(readdirSync(dir), ['plain']);
});

test('every writer checks --out before reading its inputs: export, convert-weights, import-torch, finetune, synth', (t) => {
  const dir = work(t);
  const file = path.join(dir, 'plain');
  writeFileSync(file, 'x');
  const missing = path.join(dir, 'missing');
  const under = (name: string) => path.join(file, name);
  const cases: Array<[string[], string]> = [
    [['export', '--onnx', '--checkpoint', missing, '--out', under('m.onnx')], under('m.onnx')],
    [['convert-weights', `${missing}.pth`, '--arch', 'resnet18', '--out', under('ckpt')], under('ckpt')],
    [['import-torch', `${missing}.pth`, '--method', 'srlh', '--out', under('ckpt')], under('ckpt')],
    [['finetune', '--dataset', 'cub', '--root', missing, '--arch', 'resnet18', '--out', under('ft'), '--epochs', '1', '--quiet'], under('ft')],
    [['synth', '--out', under('ds'), '--classes', '2', '--per-class', '2', '--size', '32'], under('ds')],
  ];
  for (const [args, out] of cases) failsAtOnce(t, fgh(...args), `${out}: a parent is a file (${file})`);

  // A directory where the output file goes is refused before the export too, not at its final rename.
  const outDir = path.join(dir, 'm.onnx');
  mkdirSync(outDir);
  failsAtOnce(t, fgh('export', '--onnx', '--checkpoint', missing, '--out', outDir), `${outDir}: is a directory, expected a file`);
  t.deepEqual(readdirSync(dir).sort(), ['m.onnx', 'plain']);
});

const asRoot = process.getuid?.() === 0;
const noReadOnly = asRoot ? tmpfsUnavailable() : null;

(noReadOnly ? test.skip : test.serial)(
  `fgh train --out on a read-only location fails at once, not after an epoch${noReadOnly ? ` (skipped: running as root, where permissions do not stop writes, and ${noReadOnly})` : ''}`,
  (t) => {
    const dir = work(t);
    const ro = path.join(dir, 'ro');
    mkdirSync(ro);
    if (asRoot) {
      t.teardown(mountTmpfs(ro, '1m'));
      remountReadOnly(ro);
    } else {
      rmSync(ro, { recursive: true });
      mkdirSync(ro, { mode: 0o555 });
    }
    const out = path.join(ro, 'run');
    const r = timed('train', '--method', 'srlh', '--dataset', 'cub', '--root', path.join(dir, 'no-such-dataset'), '--bits', '12', '--out', out, '--size', '64', '--quiet');
    failsAtOnce(t, r, `${out}: ${asRoot ? 'read-only file system' : 'permission denied'}`);
    t.false(existsSync(out));
    t.log(`failed after ${r.ms.toFixed(0)} ms (the whole process, start-up included)`);
  },
);

test('a second fgh train or finetune into the same --out is refused before any work, naming the running one', async (t) => {
  const dir = work(t);
  const holder = spawn('sleep', ['60']);
  t.teardown(() => holder.kill());
  const lockFor = (out: string) => writeFileSync(`${out}.lock`, JSON.stringify({ pid: holder.pid, host: os.hostname(), since: 'then', what: 'fgh train', token: 'x' }));
  const missingRoot = path.join(dir, 'no-such-dataset');
  const run = path.join(dir, 'run');
  lockFor(run);
  failsAtOnce(t, fgh('train', '--method', 'srlh', '--dataset', 'cub', '--root', missingRoot, '--bits', '12', '--out', run, '--size', '64', '--quiet'),
    `${run} is in use by fgh train (pid ${holder.pid}, since then): one writer at a time; if no such process runs, delete ${run}.lock`);
  const ft = path.join(dir, 'ft');
  lockFor(ft);
  failsAtOnce(t, fgh('finetune', '--dataset', 'cub', '--root', missingRoot, '--arch', 'resnet18', '--out', ft, '--epochs', '1', '--quiet'),
    `${ft} is in use by fgh train (pid ${holder.pid}, since then): one writer at a time; if no such process runs, delete ${ft}.lock`);
  holder.kill();
  await new Promise((resolve) => holder.once('exit', resolve));
  // The holder is gone: its lock is taken over, and the run gets as far as the missing dataset.
  const after = fgh('train', '--method', 'srlh', '--dataset', 'cub', '--root', missingRoot, '--bits', '12', '--out', run, '--size', '64', '--quiet');
  t.is(after.status, 1);
  t.regex(after.stderr, /no-such-dataset/);
  t.false(existsSync(`${run}.lock`), 'released when the run ends');
});
