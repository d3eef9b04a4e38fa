import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const bin = path.join(projectRoot, 'bin', 'fgh.js');

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real `fgh` binary in a child process. */
export function fgh(...args: string[]): CliResult {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', maxBuffer: 1 << 28 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export interface BatchResult extends CliResult {
  /** SHA-256 of each watched file after the run (null: absent). */
  files: Record<string, string | null>;
}

/**
 * Runs `fgh` once per argument list in one child process (the same `main` as bin/fgh.js, one run
 * after another, output and exit code captured per run): for tests that check many cases of one
 * command, each start of the CLI costs a few hundred ms. `watch`: files hashed after every run.
 */
export function fghEach(runs: string[][], opts: { watch?: string[] } = {}): BatchResult[] {
  const child = path.join(projectRoot, 'dist', 'test', 'helpers', 'cli-batch-child.js');
  const r = spawnSync(process.execPath, [child], {
    encoding: 'utf8',
    maxBuffer: 1 << 28,
    env: { ...process.env, FGH_BATCH: JSON.stringify({ runs, watch: opts.watch ?? [] }) },
  });
  if (r.status !== 0 || !r.stdout) throw new Error(`fghEach: the child ended (${r.status}) without its report (a run called process.exit?): ${r.stderr}`);
  const results = JSON.parse(r.stdout) as BatchResult[];
  if (results.length !== runs.length) throw new Error(`fghEach: ${results.length} results for ${runs.length} runs`);
  return results;
}
