import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { main } from '../../src/cli/main.js';

/**
 * Child of `fghEach` (cli.ts): runs `fgh` once per argument list, one after another, in this one
 * process, through the same `main` bin/fgh.js calls, and prints what each run wrote, its exit
 * code and the SHA-256 of the watched files after it, as one JSON line.
 */

interface Request {
  runs: string[][];
  watch: string[];
}

const request = JSON.parse(process.env.FGH_BATCH ?? '') as Request;
const realStdout = process.stdout.write.bind(process.stdout);
const results = [];
for (const args of request.runs) {
  let stdout = '';
  let stderr = '';
  const outWrite = process.stdout.write;
  const errWrite = process.stderr.write;
  process.stdout.write = ((chunk: string | Uint8Array) => ((stdout += String(chunk)), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => ((stderr += String(chunk)), true)) as typeof process.stderr.write;
  process.exitCode = undefined;
  let status: number;
  try {
    status = await main(['node', 'fgh', ...args]);
  } catch (e) {
    // As bin/fgh.js reports a rejected main.
    stderr += `fgh: internal error: ${e instanceof Error ? e.message : String(e)}\n`;
    status = 1;
  } finally {
    process.stdout.write = outWrite;
    process.stderr.write = errWrite;
  }
  const files = Object.fromEntries(request.watch.map((f) => [f, existsSync(f) ? createHash('sha256').update(readFileSync(f)).digest('hex') : null]));
  results.push({ status, stdout, stderr, files });
}
process.exitCode = 0;
realStdout(`${JSON.stringify(results)}\n`);
