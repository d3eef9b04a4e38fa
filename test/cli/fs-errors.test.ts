import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeNpySync } from '../../src/util/npy.js';
import { fgh, type CliResult } from '../helpers/cli.js';
import { mountTmpfs, remountReadOnly, tmpfsUnavailable } from '../helpers/tmpfs.js';

/**
 * File-system failures (a directory where a file belongs, an output under a file, a read-only or
 * full disk) are one line naming the path, never "internal error", and the previous output stays.
 */

function work(t: ExecutionContext): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-fs-errors-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Packed uint8 codes, `n` items of `bytes` bytes (a pattern, so two imports differ). */
function codesNpy(file: string, n: number, bytes: number, seed = 1): string {
  writeNpySync(file, { dtype: 'u1', shape: [n, bytes], data: Uint8Array.from({ length: n * bytes }, (_, i) => (i * 31 + seed) & 255) });
  return file;
}

/** Exit code 1 and exactly `fgh: <line>` on stderr. */
function oneLine(t: ExecutionContext, r: CliResult, line: string): void {
  t.is(r.status, 1, r.stderr);
  t.false(r.stderr.includes('internal error'), r.stderr);
  t.is(r.stderr, `fgh: ${line}\n`);
}

/** The temporaries a writer left next to `file`. */
function temporaries(file: string): string[] {
  return readdirSync(path.dirname(file)).filter((n) => n.startsWith(`.${path.basename(file)}.`));
}

test('a directory given as a code store: fgh codes info, eval and search name it in one line', (t) => {
  const dir = work(t);
  const notStore = path.join(dir, 'db.codes');
  mkdirSync(notStore);
  const good = path.join(dir, 'good.codes');
  t.is(fgh('codes', 'import', '--codes', codesNpy(path.join(dir, 'q.npy'), 4, 2), '--out', good).status, 0);
  oneLine(t, fgh('codes', 'info', notStore), `${notStore}: is a directory, expected a file`);
  oneLine(t, fgh('eval', '--query', good, '--db', notStore), `${notStore}: is a directory, expected a file`);
  oneLine(t, fgh('search', '--db', notStore, '--query-codes', good, '--topk', '2'), `${notStore}: is a directory, expected a file`);
});

test('a directory at a writer\'s output: one line naming it, the directory untouched, no temporaries left', (t) => {
  const dir = work(t);
  const out = path.join(dir, 'out.codes');
  mkdirSync(out);
  writeFileSync(path.join(out, 'keep'), 'x');
  const codes = codesNpy(path.join(dir, 'c.npy'), 4, 2);
  oneLine(t, fgh('codes', 'import', '--codes', codes, '--out', out), `${out}: is a directory, expected a file`);
  t.deepEqual(readdirSync(out), ['keep']);
  t.deepEqual(temporaries(out), []);

  // fgh codes export writes .npy files through the other atomic writer.
  const store = path.join(dir, 'ok.codes');
  t.is(fgh('codes', 'import', '--codes', codes, '--out', store).status, 0);
  mkdirSync(path.join(dir, 'x.codes.npy'));
  oneLine(t, fgh('codes', 'export', store, '--npy', path.join(dir, 'x')), `${path.join(dir, 'x.codes.npy')}: is a directory, expected a file`);
  t.deepEqual(temporaries(path.join(dir, 'x.codes.npy')), []);
});

test('--out under an existing file (ENOTDIR): one line naming the file in the way', (t) => {
  const dir = work(t);
  const file = path.join(dir, 'plain');
  writeFileSync(file, 'unchanged');
  const store = path.join(dir, 'ok.codes');
  t.is(fgh('codes', 'import', '--codes', codesNpy(path.join(dir, 'c.npy'), 4, 2), '--out', store).status, 0);
  for (const prefix of [path.join(file, 'x'), path.join(file, 'sub', 'x')]) {
    oneLine(t, fgh('codes', 'export', store, '--npy', prefix), `${prefix}.codes.npy: a parent is a file (${file})`);
  }
  t.is(readFileSync(file, 'utf8'), 'unchanged');
});

/** Root ignores permission bits: a read-only tmpfs then; others get a read-only directory (EACCES). */
const asRoot = process.getuid?.() === 0;
const noReadOnly = asRoot ? tmpfsUnavailable() : null;

(noReadOnly ? test.skip : test.serial)(
  `a read-only output location: one line naming the output, the previous output unchanged${noReadOnly ? ` (skipped: running as root, where permissions do not stop writes, and ${noReadOnly})` : ''}`,
  async (t) => {
    const dir = work(t);
    const ro = path.join(dir, 'ro');
    mkdirSync(ro);
    if (asRoot) t.teardown(mountTmpfs(ro, '4m'));
    const store = path.join(dir, 'db.codes');
    t.is(fgh('codes', 'import', '--codes', codesNpy(path.join(dir, 'a.npy'), 4, 2), '--out', store).status, 0);
    const prefix = path.join(ro, 'db');
    const out = `${prefix}.codes.npy`;
    t.is(fgh('codes', 'export', store, '--npy', prefix).status, 0);
    const synthOut = path.join(ro, 'synth');
    t.is(fgh('synth', '--out', synthOut, '--classes', '2', '--per-class', '2', '--size', '32').status, 0);
    const before = readFileSync(out);
    const synthBefore = readdirSync(synthOut).sort();
    if (asRoot) remountReadOnly(ro);
    else spawnSync('chmod', ['a-w', ro]);
    t.teardown(() => void spawnSync('chmod', ['u+w', ro]));
    const problem = asRoot ? 'read-only file system' : 'permission denied';

    t.is(fgh('codes', 'import', '--codes', codesNpy(path.join(dir, 'b.npy'), 8, 2, 7), '--out', store).status, 0);
    oneLine(t, fgh('codes', 'export', store, '--npy', prefix), `${out}: ${problem}`);
    t.deepEqual(readFileSync(out), before);
    const s = fgh('synth', '--out', synthOut, '--classes', '2', '--per-class', '2', '--size', '32');
    t.is(s.status, 1, s.stderr);
    t.false(s.stderr.includes('internal error'), s.stderr);
    t.is(s.stderr.trim().split('\n').length, 1, s.stderr);
    t.regex(s.stderr, new RegExp(`^fgh: ${escape(synthOut)}: ${problem}\\n$`));
    t.deepEqual(readdirSync(synthOut).sort(), synthBefore);
  },
);

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

const noTmpfs = tmpfsUnavailable();

(noTmpfs ? test.skip : test.serial)(`a full disk (ENOSPC): one line naming the output, the previous output unchanged, no temporary left${noTmpfs ? ` (skipped: ${noTmpfs})` : ''}`, (t) => {
  const dir = work(t);
  const small = path.join(dir, 'small');
  mkdirSync(small);
  t.teardown(mountTmpfs(small, '1m'));
  const out = path.join(small, 'db.codes');
  t.is(fgh('codes', 'import', '--codes', codesNpy(path.join(dir, 'a.npy'), 100, 4), '--out', out).status, 0);
  const before = readFileSync(out);
  // 40,000 codes of 32 bytes: 1.28 MB, more than the 1 MiB the file system holds.
  oneLine(t, fgh('codes', 'import', '--codes', codesNpy(path.join(dir, 'big.npy'), 40_000, 32), '--out', out), `${out}: no space left on the device (ENOSPC)`);
  t.deepEqual(readFileSync(out), before);
  t.deepEqual(temporaries(out), []);
});

(noTmpfs ? test.skip : test.serial)(`a full disk during --append: one line, the store keeps its items and gives the partial write back${noTmpfs ? ` (skipped: ${noTmpfs})` : ''}`, (t) => {
  const dir = work(t);
  const small = path.join(dir, 'small');
  mkdirSync(small);
  t.teardown(mountTmpfs(small, '1m'));
  const out = path.join(small, 'db.codes');
  t.is(fgh('codes', 'import', '--codes', codesNpy(path.join(dir, 'a.npy'), 100, 8), '--out', out).status, 0);
  const before = readFileSync(out);
  // 150,000 codes of 8 bytes: 1.2 MB of chunks, more than the 1 MiB the file system holds.
  oneLine(t, fgh('codes', 'import', '--codes', codesNpy(path.join(dir, 'big.npy'), 150_000, 8), '--out', out, '--append'),
    `${out}: the append failed (no space left on the device); the store still holds its 100 items`);
  t.deepEqual(readFileSync(out), before, 'truncated back to the committed end');
  t.deepEqual(temporaries(out), []);
  // The space is there again: a small append lands.
  t.is(fgh('codes', 'import', '--codes', codesNpy(path.join(dir, 'c.npy'), 10, 8), '--out', out, '--append').status, 0);
});
