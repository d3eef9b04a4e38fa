import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { writeNpySync } from '../../src/util/npy.js';
import { fgh, projectRoot } from '../helpers/cli.js';

/**
 * Commands that need neither TensorFlow.js, onnxruntime, sharp, protobufjs nor the ClickHouse client do not load them:
 * each costs CPU at every start (about 1.3 s in all), and the test suite starts the CLI hundreds
 * of times. Each case runs the command through `main` in a fresh node and lists the heavy
 * packages in node's module cache afterwards (ES imports of these CommonJS packages land there).
 */

const HEAVY = /node_modules\/(@tensorflow\/[^/]+|@clickhouse\/[^/]+|onnxruntime-node|sharp|protobufjs)\//;

const PROBE = `
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { main } = await import(process.env.FGH_MAIN);
const code = await main(['node', 'fgh', ...JSON.parse(process.env.FGH_ARGS)]);
const heavy = new Set(Object.keys(require.cache).map((k) => (${HEAVY.toString()}.exec(k) ?? [])[1]).filter(Boolean));
process.stderr.write('\\nHEAVY ' + JSON.stringify({ code, heavy: [...heavy].sort() }) + '\\n');
`;

function heavyLoadedBy(args: string[]): { code: number; heavy: string[] } {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', PROBE], {
    encoding: 'utf8',
    env: { ...process.env, FGH_MAIN: pathToFileURL(path.join(projectRoot, 'dist/src/cli/main.js')).href, FGH_ARGS: JSON.stringify(args) },
  });
  const line = r.stderr.split('\n').find((l) => l.startsWith('HEAVY '));
  if (!line) throw new Error(`probe of fgh ${args.join(' ')} failed: ${r.stderr}`);
  return JSON.parse(line.slice(6)) as { code: number; heavy: string[] };
}

test('help, codes, eval and search on stored codes load no heavy package; a TensorFlow.js command does', (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-lazy-'));
  try {
    const codes = path.join(dir, 'codes.npy');
    const labels = path.join(dir, 'labels.npy');
    writeNpySync(codes, { dtype: 'u1', shape: [6, 2], data: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]) });
    writeNpySync(labels, { dtype: 'i4', shape: [6], data: Int32Array.from([0, 1, 0, 1, 0, 1]) });
    const store = path.join(dir, 'db.fghc');
    const made = fgh('codes', 'import', '--codes', codes, '--labels', labels, '--out', store);
    t.is(made.status, 0, made.stderr);

    const light: string[][] = [
      ['--help'],
      ['codes', 'info', store],
      ['eval', '--query', store, '--db', store],
      ['search', '--db', store, '--query-codes', codes, '--topk', '2'],
      ['train', '--print-config', '--method', 'srlh'],
    ];
    for (const args of light) {
      const r = heavyLoadedBy(args);
      t.is(r.code, 0, args.join(' '));
      t.deepEqual(r.heavy, [], `fgh ${args.join(' ')} loaded ${r.heavy.join(', ')}`);
    }
    // The control: the probe sees a package a command does load (convert-weights fails on the
    // missing file after loading its implementation, which uses TensorFlow.js).
    const control = heavyLoadedBy(['convert-weights', path.join(dir, 'missing.pth'), '--arch', 'resnet18', '--out', path.join(dir, 'ckpt')]);
    t.is(control.code, 1);
    t.true(control.heavy.includes('@tensorflow/tfjs-core'), control.heavy.join(', '));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
