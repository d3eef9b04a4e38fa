import { createHash } from 'node:crypto';
import { existsSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

/**
 * tfjs-backend-wasm's multi-threaded build (XNNPACK on a pthread pool) in Node.
 *
 * tfjs switches it off in Node (tfjs issue 3830) for two reasons that are ours to fix:
 * - its pthread workers start from Blob URLs, which Node's worker_threads cannot load; we give
 *   them a file instead: the worker script the package ships (wasm-out/*.worker.js), told to
 *   load the Emscripten module from the package's own wasm-out/*-threaded-simd.js;
 * - it uses half the logical CPUs (it assumes two hyper-threads per core), so a 2-vCPU machine
 *   gets one thread; we let it count the threads we ask for.
 * Training at 224 px on 2 vCPUs: a step 1.46x faster. Opt-in (FGH_WASM_THREADS=N), because when
 * the 4 GiB of wasm memory run out, the single-threaded build fails with an error but the
 * threaded one hangs (the main thread waits on the pool forever).
 */

const PKG = '@tensorflow/tfjs-backend-wasm';
const WORKER_MODULE = `${PKG}/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js`;
const MAIN_SCRIPT = `${PKG}/wasm-out/tfjs-backend-wasm-threaded-simd.js`;
/** tfjs pre-creates 8 pthread workers, its maximum. */
export const MAX_WASM_THREADS = 8;

/** Threads for wasm: FGH_WASM_THREADS if set (at most 8), else 1. */
export function wasmThreadCount(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.FGH_WASM_THREADS;
  if (raw !== undefined && raw !== '') {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1) throw new Error(`FGH_WASM_THREADS must be a positive integer, got "${raw}"`);
    return Math.min(n, MAX_WASM_THREADS);
  }
  return 1;
}

/** Writes the pthread worker script to a content-addressed file (atomically: test processes share it). */
function workerFile(): string {
  const require = createRequire(import.meta.url);
  const mainScript = require.resolve(MAIN_SCRIPT);
  const { wasmWorkerContents } = require(WORKER_MODULE) as { wasmWorkerContents?: unknown };
  if (typeof wasmWorkerContents !== 'string') throw new Error(`${WORKER_MODULE} exports no worker script`);
  // As tfjs does before making its Blob: the template literal turned "\n" escapes into newlines.
  const body = wasmWorkerContents.replace(/\n/g, '\\n');
  const strict = '"use strict";';
  // The worker asks for an object URL of the main script's Blob, then reads it as a file: answer with the file.
  const redirect = `URL.createObjectURL=function(){return ${JSON.stringify(mainScript)}};URL.revokeObjectURL=function(){};`;
  const text = body.startsWith(strict) ? strict + redirect + body.slice(strict.length) : redirect + body;
  const file = path.join(os.tmpdir(), `fgh-wasm-worker-${createHash('sha256').update(text).digest('hex').slice(0, 16)}.cjs`);
  if (!existsSync(file)) {
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, text);
    renameSync(tmp, file);
  }
  return file;
}

export interface WasmThreadsHooks {
  /** Undoes the temporary patches; call once the backend is initialised (or failed). */
  restore(): void;
}

interface PooledBackend {
  wasm?: { PThread?: { runningWorkers?: Array<{ unref?: () => void }> } };
}

/**
 * Emscripten refs the Node worker of every running pthread, and XNNPACK's pool threads run for
 * the life of the backend, so the process would never exit. They wait on shared memory, not on
 * messages: unref them.
 */
export function unrefPoolThreads(backend: unknown): number {
  const workers = (backend as PooledBackend).wasm?.PThread?.runningWorkers ?? [];
  for (const w of workers) w.unref?.();
  return workers.length;
}

/**
 * Prepares the next wasm backend initialisation to run `threads` threads. The worker Blob URL
 * and the CPU count are patched only until restore(): the pool is made during initialisation.
 */
export function prepareWasmThreads(threads: number, setThreadsCount: (n: number) => void, setFlag: (on: boolean) => void): WasmThreadsHooks {
  const file = workerFile();
  const createObjectURL = URL.createObjectURL;
  const cpus = os.cpus;
  URL.createObjectURL = (obj: Blob): string => (obj instanceof Blob && obj.type === 'application/javascript' ? file : createObjectURL(obj));
  // tfjs takes half the logical CPUs as its cap; report twice the threads wanted.
  os.cpus = (): os.CpuInfo[] => {
    const real = cpus();
    return Array.from({ length: 2 * threads }, (_, i) => real[i % real.length]!);
  };
  setFlag(true);
  setThreadsCount(threads);
  return {
    restore(): void {
      URL.createObjectURL = createObjectURL;
      os.cpus = cpus;
    },
  };
}
