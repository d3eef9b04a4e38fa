import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readCodeStore } from '../../src/retrieval/code-store.js';
import { writeNpySync } from '../../src/util/npy.js';
import { Rng } from '../../src/util/rng.js';
import { fgh, projectRoot } from '../helpers/cli.js';

function tmp(t: { teardown: (f: () => void) => void }): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-faults-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function randomPacked(rng: Rng, n: number, bytes: number): Uint8Array {
  const data = new Uint8Array(n * bytes);
  for (let i = 0; i < data.length; i++) data[i] = rng.int(256);
  return data;
}

function oneLine(t: import('ava').ExecutionContext, stderr: string, re: RegExp): void {
  t.is(stderr.trim().split('\n').length, 1, stderr);
  t.regex(stderr, re);
  t.notRegex(stderr, /internal error/);
}

test('a flipped byte in the active superblock: info, eval and --append refuse in one line, nothing is truncated, and codes recover gets every item back', (t) => {
  const dir = tmp(t);
  const rng = new Rng(1);
  const store = path.join(dir, 'g.codes');
  const part = (n: number, name: string) => {
    const f = path.join(dir, `${name}.npy`);
    writeNpySync(f, { dtype: 'u1', shape: [n, 2], data: randomPacked(rng, n, 2) });
    return f;
  };
  t.is(fgh('codes', 'import', '--codes', part(10, 'a'), '--out', store).status, 0);
  t.is(fgh('codes', 'import', '--codes', part(5, 'b'), '--out', store, '--append').status, 0);
  const bytes = readFileSync(store);
  bytes[64 + 33]! ^= 0x01; // slot B (generation 2, in charge): its count
  writeFileSync(store, bytes);

  const info = fgh('codes', 'info', store);
  t.is(info.status, 1);
  oneLine(t, info.stderr, /^fgh: .*g\.codes: superblock slot B is damaged \(checksum mismatch\) and \d+ bytes follow the end that slot A records \(10 items\)/);
  const ev = fgh('eval', '--query', store, '--db', store);
  t.is(ev.status, 1);
  oneLine(t, ev.stderr, /superblock slot B is damaged/);
  const app = fgh('codes', 'import', '--codes', part(3, 'c'), '--out', store, '--append');
  t.is(app.status, 1);
  oneLine(t, app.stderr, /superblock slot B is damaged/);
  t.true(readFileSync(store).equals(bytes), 'the refused append truncated nothing');

  const rescued = path.join(dir, 'r.codes');
  const rec = fgh('codes', 'recover', store, '--out', rescued, '--json');
  t.is(rec.status, 0, rec.stderr);
  t.like(JSON.parse(rec.stdout) as object, { items: 15, recorded: 10, dropped_bytes: 0 });
  t.is(readCodeStore(rescued).header.count, 15);
  const again = fgh('codes', 'recover', store, '--out', store);
  t.is(again.status, 1);
  oneLine(t, again.stderr, /recover into a new file/);
});

test('two concurrent --append writers: each lands whole or is refused in one line naming the other, and the store holds exactly what landed', async (t) => {
  const dir = tmp(t);
  const rng = new Rng(2);
  const store = path.join(dir, 'g.codes');
  const n = 200_000; // 1.6 MB a batch: an append takes long enough for the two to overlap often
  const files = ['a', 'b'].map((name) => {
    const f = path.join(dir, `${name}.npy`);
    writeNpySync(f, { dtype: 'u1', shape: [n, 8], data: randomPacked(rng, n, 8) });
    return f;
  });
  t.is(fgh('codes', 'import', '--codes', files[0]!, '--out', store).status, 0);
  const bin = path.join(projectRoot, 'bin', 'fgh.js');
  const run = (f: string) =>
    new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const p = spawn(process.execPath, [bin, 'codes', 'import', '--codes', f, '--out', store, '--append'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('exit', (code) => resolve({ code, stderr }));
    });
  let refusals = 0;
  // A few rounds: the two may or may not overlap in time; whatever the interleaving, no append is lost or torn.
  let expected = n;
  for (let round = 0; round < 2; round++) {
    const results = await Promise.all(files.map(run));
    for (const r of results) {
      if (r.code === 0) expected += n;
      else {
        t.is(r.code, 1);
        oneLine(t, r.stderr, /g\.codes is in use by an append to this code store \(pid \d+, since [^)]+\): one writer at a time/);
        refusals++;
      }
    }
    t.is(readCodeStore(store).header.count, expected, `round ${round}`);
  }
  t.log(`${refusals} of 4 appends refused because the other was running`);
});

test('codes import into folders that do not exist yet makes them (the writer\'s lock sits beside the store)', (t) => {
  const dir = tmp(t);
  const codes = path.join(dir, 'c.npy');
  writeNpySync(codes, { dtype: 'u1', shape: [4, 2], data: randomPacked(new Rng(3), 4, 2) });
  const out = path.join(dir, 'new', 'deeper', 'x.codes');
  const r = fgh('codes', 'import', '--codes', codes, '--out', out);
  t.is(r.status, 0, r.stderr);
  t.is(readCodeStore(out).header.count, 4);
  t.false(existsSync(`${out}.lock`));
});
