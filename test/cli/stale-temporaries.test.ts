import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeNpySync } from '../../src/util/npy.js';
import { newCheckpointConfig, writeCheckpoint } from '../../src/weights/checkpoint.js';
import { fgh } from '../helpers/cli.js';

/**
 * A writer killed midway leaves its temporary `.NAME.PID.*.tmp` beside NAME; the next writer of
 * NAME removes those of processes that no longer run, and leaves a live writer's alone.
 */

function work(t: ExecutionContext): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-stale-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The pid of a process that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '']);
  if (typeof r.pid !== 'number') throw new Error('no child process');
  return r.pid;
}

/** Fake temporaries of `target`: one of a dead process, one of this (live) process; files or folders. */
function temporaries(target: string, kind: 'file' | 'dir'): { stale: string; live: string; other: string } {
  const dir = path.dirname(target);
  const base = path.basename(target);
  const dead = deadPid();
  const make = (p: string): string => {
    if (kind === 'file') writeFileSync(p, 'half written');
    else {
      mkdirSync(p);
      writeFileSync(path.join(p, 'part'), 'half written');
    }
    return p;
  };
  return {
    stale: make(path.join(dir, `.${base}.${dead}.0badf00d.tmp`)),
    live: make(path.join(dir, `.${base}.${process.pid}.0badf00d.tmp`)),
    // A dead writer's temporary of another output is that output's business.
    other: make(path.join(dir, `.${base}x.${dead}.0badf00d.tmp`)),
  };
}

test('fgh codes import removes a killed import\'s temporary and keeps a running one\'s', (t) => {
  const dir = work(t);
  const out = path.join(dir, 'db.codes');
  const tmp = temporaries(out, 'file');
  const codes = path.join(dir, 'c.npy');
  writeNpySync(codes, { dtype: 'u1', shape: [4, 2], data: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8) });
  const r = fgh('codes', 'import', '--codes', codes, '--out', out);
  t.is(r.status, 0, r.stderr);
  t.false(existsSync(tmp.stale), 'the dead process\'s temporary is removed');
  t.true(existsSync(tmp.live), 'a live process\'s temporary stays');
  t.true(existsSync(tmp.other));
});

test('fgh synth removes a killed run\'s temporary dataset folder and keeps a running one\'s', (t) => {
  const dir = work(t);
  const out = path.join(dir, 'ds');
  const tmp = temporaries(out, 'dir');
  const r = fgh('synth', '--out', out, '--classes', '2', '--per-class', '2', '--size', '32');
  t.is(r.status, 0, r.stderr);
  t.false(existsSync(tmp.stale));
  t.true(existsSync(tmp.live));
  t.true(existsSync(tmp.other));
  // Its own temporary is gone too: only the dataset and the fakes that stay.
  t.deepEqual(readdirSync(dir).sort(), [path.basename(tmp.live), path.basename(tmp.other), 'ds'].sort());
});

test('a checkpoint write removes a killed save\'s temporary folder and keeps a running one\'s', async (t) => {
  const dir = work(t);
  const out = path.join(dir, 'ckpt');
  const tmp = temporaries(out, 'dir');
  await writeCheckpoint(out, newCheckpointConfig({ method: 'backbone', arch: 'resnet18' }), new Map([['w', { shape: [1], data: Float32Array.of(1) }]]));
  t.false(existsSync(tmp.stale));
  t.true(existsSync(tmp.live));
  t.true(existsSync(tmp.other));
});
