import test from 'ava';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { selectBackend } from '../../src/backend/select.js';
import { createHashingModel } from '../../src/models/factory.js';
import { exportHashingGraph } from '../../src/export/hashing.js';
import { readCodeStore, writeCodeStore } from '../../src/retrieval/code-store.js';
import { allocCodes } from '../../src/retrieval/codes.js';
import { writeSynthDataset } from '../../src/data/synth.js';
import { encode } from '../../src/encode/encoder.js';
import { provenanceOf } from '../../src/encode/shards.js';
import { fgh } from '../helpers/cli.js';

/**
 * `fgh encode --ep cuda|webgpu` and their `!` forms against onnxruntime-node as installed. On this
 * machine neither provider can run (no CUDA provider libraries; Dawn finds no adapter), so these
 * are the fallback and refusal paths, each checked against what onnxruntime itself says when
 * asked for the provider directly in this process.
 */

let work = '';
let root = '';
let model = '';
let cpuCodes: Promise<ReturnType<typeof readCodeStore>> | null = null;

/** The execution providers a store's own metadata records, checked as fgh's reader checks them. */
const executionOf = (file: string) => provenanceOf(readCodeStore(file).metadata, file)?.execution;

// onnxruntime's default logger would print the direct attempts' failures into the test output.
ort.env.logLevel = 'fatal';

/** The reference: the same images encoded with --ep cpu (once for both providers). */
function codesOnCpu(): Promise<ReturnType<typeof readCodeStore>> {
  const out = path.join(work, 'cpu.codes');
  cpuCodes ??= encode({ model, source: { kind: 'images', dir: path.join(root, 'images') }, out, ep: 'cpu', threads: 1, quiet: true, log: () => undefined }).then(() => readCodeStore(out));
  return cpuCodes;
}

test.before(async () => {
  await selectBackend();
  work = mkdtempSync(path.join(os.tmpdir(), 'fgh-ep-'));
  root = path.join(work, 'synth');
  await writeSynthDataset(root, { classes: 3, perClass: 4, size: 64, seed: 9 });
  const m = createHashingModel({ method: 'srlh', bits: 16, classes: 3, seed: 2 });
  model = path.join(work, 'srlh.onnx');
  writeFileSync(model, exportHashingGraph(m, { inputSize: 48, transform: 'resize-224' }).bytes);
  m.dispose();
});

test.after.always(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** onnxruntime's own answer for `ep`, in this process: null if a session opens, else its message. */
async function directAttempt(ep: string): Promise<string | null> {
  try {
    const s = await ort.InferenceSession.create(readFileSync(model), { executionProviders: [ep], logSeverityLevel: 4 });
    await s.release();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/** The last sentence of onnxruntime's message (ORT_ENFORCE prefixes it with source file and condition). */
const lastSentence = (m: string): string => m.trim().split('\n')[0]!.split('. ').pop()!.trim();

const args = (out: string, ep: string): string[] => ['encode', '--model', model, '--images', path.join(root, 'images'), '--out', out, '--ep', ep, '--threads', '1', '--json'];

for (const [ep, label] of [['webgpu', 'WebGPU'], ['cuda', 'CUDA']] as const) {
  test.serial(`--ep ${ep} falls back to cpu, saying so on stderr and in the store's metadata; --ep ${ep}! refuses in one line and touches nothing`, async (t) => {
    const direct = await directAttempt(ep);
    const out = path.join(work, `${ep}.codes`);
    const log: string[] = [];
    const s = await encode({ model, source: { kind: 'images', dir: path.join(root, 'images') }, out, ep, threads: 1, quiet: true, log: (l) => log.push(l) });
    t.is(readCodeStore(out).header.count, 12);
    t.deepEqual(executionOf(out), [{ requested: ep, used: s.ep, fallback: s.fallback }]);
    t.false(existsSync(`${out}.meta.json`), 'no sidecar: the store itself says it');
    if (direct === null) {
      // A machine where the provider works: no fallback.
      t.is(s.ep, ep);
      t.is(s.fallback, null);
      return;
    }
    t.is(s.ep, 'cpu');
    t.truthy(s.fallback);
    t.true(s.fallback!.startsWith(`${label} execution provider not available (`), s.fallback!);
    t.true(s.fallback!.endsWith('); using CPU'));
    t.true(s.fallback!.includes(lastSentence(direct)), `the note carries onnxruntime's own words: ${lastSentence(direct)}`);
    t.deepEqual(log, [`note: ${s.fallback}`], 'said once, on the log (stderr in the CLI)');

    // The fallback computes what --ep cpu computes.
    const [a, b] = [readCodeStore(out), await codesOnCpu()];
    t.deepEqual(a.ids, b.ids);
    t.true(Buffer.from(a.codes.data).equals(Buffer.from(b.codes.data)), 'same codes');
    t.deepEqual(executionOf(path.join(work, 'cpu.codes')), [{ requested: 'cpu', used: 'cpu', fallback: null }]);

    // Strict: one line, before the existing store or any work file is touched.
    const existing = path.join(work, `${ep}-existing.codes`);
    await writeCodeStore(existing, { codes: allocCodes(16, 3) });
    // The sidecar an older fgh wrote next to its stores: a refused run leaves it too.
    writeFileSync(`${existing}.meta.json`, '{"what":"a user\'s earlier encode"}');
    const before = [readFileSync(existing), readFileSync(`${existing}.meta.json`)];
    const strict = fgh(...args(existing, `${ep}!`));
    t.is(strict.status, 1);
    t.is(strict.stdout, '');
    const lines = strict.stderr.trimEnd().split('\n');
    t.is(lines.length, 1, strict.stderr);
    t.true(lines[0]!.startsWith(`fgh: the ${label} execution provider is not available (`), lines[0]);
    t.true(lines[0]!.includes(lastSentence(direct)));
    t.regex(lines[0]!, ep === 'cuda' ? /CUDA 12 and cuDNN 9/ : /Vulkan/);
    t.true(readFileSync(existing).equals(before[0]!), 'the store is unchanged');
    t.true(readFileSync(`${existing}.meta.json`).equals(before[1]!), 'the older sidecar is unchanged');
    t.deepEqual([`${existing}.part`, `${existing}.encode.json`, `${existing}.lock`].filter(existsSync), []);
  });
}
