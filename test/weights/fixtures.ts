/** Shared helpers of the weights tests: Python-made fixtures and exact comparisons. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TorchTensor } from '../../src/models/state-dict.js';
import { readBundle } from '../helpers/bundle.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** Compiled tests run from dist/test/weights; the Python scripts stay in test/python. */
export const pyDir = path.resolve(here, '../../../test/python');
export const projectRoot = path.resolve(here, '../../..');
export const fghBin = path.join(projectRoot, 'bin', 'fgh.js');

export function tempDir(t: { teardown: (f: () => void) => void }, label: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `fgh-${label}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs test/python/weights_fixtures.py; returns stdout, throws with stderr on failure. */
export function fixtures(python: string, ...args: string[]): string {
  const r = spawnSync(python, [path.join(pyDir, 'weights_fixtures.py'), ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`weights_fixtures.py ${args[0]} failed: ${r.stderr}`);
  return r.stdout;
}

export interface Reference {
  tensors: Map<string, TorchTensor>;
  dtypes: Record<string, string>;
}

/** The reference bundle and dtypes a fixture command wrote into `dir`. */
export function readReference(dir: string): Reference {
  const tensors = readBundle(path.join(dir, 'ref'));
  const meta = JSON.parse(readFileSync(path.join(dir, 'dtypes.json'), 'utf8')) as Record<string, { dtype: string; shape: number[] }>;
  const dtypes: Record<string, string> = {};
  for (const [name, m] of Object.entries(meta)) {
    dtypes[name] = m.dtype;
    // The bundle keeps 0-d tensors as [1]; PyTorch's shape is the truth.
    tensors.get(name)!.shape = m.shape;
  }
  return { tensors, dtypes };
}

/** Index of the first element that differs (NaN equals NaN, -0 differs from 0), or -1. */
export function firstDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
}

/** Names whose shape or values differ between `got` and `want` (exactly), plus missing/extra. */
export function differences(got: ReadonlyMap<string, TorchTensor>, want: ReadonlyMap<string, TorchTensor>): string[] {
  const out: string[] = [];
  for (const [name, w] of want) {
    const g = got.get(name);
    if (!g) {
      out.push(`${name}: missing`);
      continue;
    }
    if (g.shape.join() !== w.shape.join()) out.push(`${name}: shape [${g.shape}] vs [${w.shape}]`);
    else {
      const i = firstDifference(g.data, w.data);
      if (i >= 0) out.push(`${name}: element ${i} is ${g.data[i]}, expected ${w.data[i]}`);
    }
  }
  for (const name of got.keys()) if (!want.has(name)) out.push(`${name}: unexpected`);
  return out;
}

/** The error message of a rejected promise, or null if it resolved. */
export async function rejection(p: Promise<unknown>): Promise<string | null> {
  try {
    await p;
    return null;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}
