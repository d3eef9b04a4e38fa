import test from 'ava';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { MALLOC_TUNABLES, mallocTuned } from '../../src/backend/malloc-tunables.js';
import { projectRoot } from '../helpers/cli.js';

/**
 * fgh's glibc malloc settings (src/backend/malloc-tunables.ts) are what bin/fgh and the npm
 * scripts set, and under them a kernel called again and again on the same shapes reuses the
 * memory it freed instead of growing the heap.
 */

const MiB = 2 ** 20;

test('bin/fgh and every npm script that sets GLIBC_TUNABLES set exactly fgh\'s malloc settings', (t) => {
  const shebang = readFileSync(path.join(projectRoot, 'bin', 'fgh.js'), 'utf8').split('\n')[0]!;
  t.is(shebang, `#!/usr/bin/env -S GLIBC_TUNABLES=${MALLOC_TUNABLES} node`);
  t.true(shebang.length < 256, 'Linux reads at most 256 bytes of a shebang');
  const scripts = (JSON.parse(readFileSync(path.join(projectRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
  const setting = Object.entries(scripts).filter(([, s]) => s.includes('GLIBC_TUNABLES='));
  t.true(setting.some(([name]) => name === 'test') && setting.some(([name]) => name === 'bench:train'));
  for (const [name, s] of setting) t.regex(s, new RegExp(`GLIBC_TUNABLES=${MALLOC_TUNABLES.replace(/\./g, '\\.')} `), name);
  t.true(mallocTuned({ GLIBC_TUNABLES: MALLOC_TUNABLES }));
  // One setting missing (the old two, say) is not tuned.
  t.is(mallocTuned({ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=68719476736' }), process.platform !== 'linux');
});

function rssAfterEachCall(tunables: string, calls: number): number[] {
  const child = path.join(projectRoot, 'dist', 'test', 'helpers', 'kernel-loop-child.js');
  const r = spawnSync(process.execPath, [child, String(calls)], { encoding: 'utf8', env: { ...process.env, GLIBC_TUNABLES: tunables }, maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`kernel loop failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as number[];
}

test('under fgh\'s malloc settings, 60 more calls of a batch-norm kernel on 12.8 MB activations leave the RSS where 20 calls took it', (t) => {
  if (process.platform !== 'linux') return t.pass('glibc only');
  const rss = rssAfterEachCall(MALLOC_TUNABLES, 80);
  const growth = (rss[79]! - rss[19]!) / MiB;
  t.log(`RSS after 20 calls ${(rss[19]! / MiB).toFixed(0)} MiB, after 80 ${(rss[79]! / MiB).toFixed(0)} MiB`);
  // Each call allocates and frees several 12.8 MB intermediates; a heap that does not reuse them
  // grows by one of them every few calls (hundreds of MiB over 60 calls).
  t.true(growth < 40, `the heap grew by ${growth.toFixed(0)} MiB`);
});
