/**
 * Run by ep-probe.ts in a child process: opens an onnxruntime-node session on the tiny probe
 * graph with one execution provider, runs it and prints one JSON line. A child, because a
 * provider's native code logs its real error to stderr (which the parent reads) and can abort
 * the whole process.
 */
import { writeSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { PROBE_INPUT, probeExpected, probeGraph } from './ep-probe-graph.js';

const ep = process.argv[2] ?? 'cpu';
const started = performance.now();
let result: { ok: boolean; ms: number; error: string | null };
try {
  const session = await ort.InferenceSession.create(probeGraph(), { executionProviders: [ep] });
  const out = await session.run({ x: new ort.Tensor('float32', Float32Array.from(PROBE_INPUT), [2, 2]) });
  const got = Array.from(out.y!.data as Float32Array);
  const want = probeExpected();
  await session.release();
  const wrong = got.length !== want.length || got.some((v, i) => Math.abs(v - want[i]!) > 1e-4);
  result = { ok: !wrong, ms: performance.now() - started, error: wrong ? `computed [${got.join(', ')}] instead of [${want.join(', ')}]` : null };
} catch (e) {
  result = { ok: false, ms: performance.now() - started, error: e instanceof Error ? e.message : String(e) };
}
writeSync(1, `${JSON.stringify(result)}\n`);
process.exit(0);
