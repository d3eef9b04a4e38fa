import { tf } from './tf.js';
import { errorMessage, FghError } from '../util/errors.js';
import { registerWasmTrainingKernels } from './wasm/kernels.js';
import { registerFastConv2DBackpropInput } from './wasm/conv-backprop-input.js';
import { ORT_BACKEND, registerOrtBackend, type OrtBackend } from './onnxruntime/backend.js';
import { prepareWasmThreads, unrefPoolThreads, wasmThreadCount } from './wasm-threads.js';
import { applyTfGpuEnv, isInstalled, probeTfGpu, TF_GPU_INSTALL } from './tf-gpu.js';

export type BackendName = 'tensorflow-gpu' | 'tensorflow' | 'onnxruntime' | 'wasm' | 'cpu';

export interface BackendCandidate {
  /** The package that provides it. */
  pkg: string;
  /** The tfjs backend name it registers. */
  backend: string;
  name: BackendName;
  /** Tried only when asked for by name (FGH_BACKEND). */
  onRequestOnly?: boolean;
}

/**
 * Best first. `tensorflow-gpu` is used only when a child process has run a product on a GPU
 * with it (tf-gpu.ts); `onnxruntime` is tfjs's cpu backend with its heavy kernels in
 * onnxruntime-node's native CPU provider (src/backend/onnxruntime), the CPU backend fgh tunes,
 * so tfjs-node's CPU build is used only on request. The pure-JS cpu backend alone is not a
 * candidate: far too slow for convolutions.
 */
export const CANDIDATES: readonly BackendCandidate[] = [
  { name: 'tensorflow-gpu', pkg: '@tensorflow/tfjs-node-gpu', backend: 'tensorflow' },
  { name: 'tensorflow', pkg: '@tensorflow/tfjs-node', backend: 'tensorflow', onRequestOnly: true },
  { name: 'onnxruntime', pkg: 'onnxruntime-node', backend: ORT_BACKEND },
  { name: 'wasm', pkg: '@tensorflow/tfjs-backend-wasm', backend: 'wasm' },
];

export interface BackendAttempt {
  name: BackendName;
  pkg: string;
  ok: boolean;
  /** Why it was skipped, when it was. */
  reason?: string;
}

export interface BackendChoice {
  name: BackendName;
  /** tfjs's own name for it (`tf.getBackend()`). */
  tfName: string;
  /** Threads the backend computes on (wasm: its pthread pool, onnxruntime: its intra-op pool, cpu: 1; 0 for tfjs-node, which sizes its own). */
  threads: number;
  attempts: BackendAttempt[];
}

/** "wasm (2 threads)": the backend as the CLI reports it. */
export function describeBackend(c: BackendChoice): string {
  return c.threads > 0 ? `${c.name} (${c.threads} thread${c.threads > 1 ? 's' : ''})` : c.name;
}

export interface SelectOptions {
  /** Force one backend (also FGH_BACKEND=onnxruntime|wasm|tensorflow|tensorflow-gpu|cpu). */
  prefer?: BackendName;
  /** Allow the pure-JS cpu backend as a last resort (inference and tests only). */
  allowCpu?: boolean;
  /** Where the one-line note goes when the GPU build is installed but unusable (default stderr). */
  note?: (line: string) => void;
}

let current: BackendChoice | null = null;
/** The native TensorFlow addon this process has loaded: both share libtensorflow and the backend name, so never two. */
let loadedTfAddon: string | null = null;

/**
 * Picks and initialises the best TensorFlow.js backend present, once per process:
 * tfjs-node-gpu, then tfjs-node, then onnxruntime, then wasm (with fgh's extra training kernels).
 */
export async function selectBackend(opts: SelectOptions = {}): Promise<BackendChoice> {
  const prefer = opts.prefer ?? (process.env.FGH_BACKEND as BackendName | undefined);
  if (current && (!prefer || prefer === current.name)) return current;
  const attempts: BackendAttempt[] = [];
  const order = prefer ? orderWithPreferred(prefer) : [...CANDIDATES];
  let gpuNote: string | null = null;
  for (const c of order) {
    if (prefer && c.name !== prefer) {
      attempts.push({ name: c.name, pkg: c.pkg, ok: false, reason: `not requested (FGH_BACKEND/--backend is ${prefer})` });
      continue;
    }
    if (!prefer && c.onRequestOnly) {
      const how = isInstalled(c.pkg) ? '' : `; not installed: npm install --no-save ${c.pkg}@4.22.0`;
      attempts.push({ name: c.name, pkg: c.pkg, ok: false, reason: `used only on request (FGH_BACKEND=${c.name})${how}` });
      continue;
    }
    const reason = await tryActivate(c);
    attempts.push(reason === null ? { name: c.name, pkg: c.pkg, ok: true } : { name: c.name, pkg: c.pkg, ok: false, reason });
    if (reason === null) {
      current = { name: c.name, tfName: tf.getBackend(), threads: await backendThreads(c.name), attempts };
      if (gpuNote) (opts.note ?? ((l: string) => process.stderr.write(`${l}\n`)))(`note: ${gpuNote}; using ${c.name}`);
      return current;
    }
    // Installed but unusable: the one thing a GPU user must hear about.
    if (c.name === 'tensorflow-gpu' && isInstalled(c.pkg)) gpuNote = reason;
  }
  if (prefer === 'cpu' || opts.allowCpu) {
    await import('@tensorflow/tfjs-backend-cpu');
    await tf.setBackend('cpu');
    await tf.ready();
    attempts.push({ name: 'cpu', pkg: '@tensorflow/tfjs-backend-cpu', ok: true });
    current = { name: 'cpu', tfName: 'cpu', threads: 1, attempts };
    return current;
  }
  if (prefer) throw new FghError(`FGH_BACKEND=${prefer}: ${attempts.find((a) => a.name === prefer)?.reason ?? 'not usable'}`);
  const why = attempts.map((a) => `${a.name}: ${a.reason}`).join('; ');
  throw new FghError(`no usable TensorFlow.js backend (${why})`);
}

function orderWithPreferred(prefer: BackendName): BackendCandidate[] {
  if (prefer === 'cpu') return [];
  const known = CANDIDATES.find((c) => c.name === prefer);
  if (!known) throw new FghError(`unknown backend '${prefer}' (choose tensorflow-gpu, tensorflow, onnxruntime, wasm or cpu)`);
  return [...CANDIDATES];
}

/** Returns null when the backend is active, or the reason it could not be. */
async function tryActivate(c: BackendCandidate): Promise<string | null> {
  if (c.backend === 'tensorflow') {
    if (!isInstalled(c.pkg)) return c.name === 'tensorflow-gpu' ? `not installed (opt-in: ${TF_GPU_INSTALL}; see README "GPU")` : `not installed (opt-in: npm install --no-save ${c.pkg}@4.22.0)`;
    if (loadedTfAddon !== null && loadedTfAddon !== c.pkg) return `not loaded: ${loadedTfAddon} is already loaded in this process (two TensorFlow addons cannot share one)`;
    if (c.name === 'tensorflow-gpu') {
      // Decided in a child process, so that this one loads libtensorflow only to use it.
      const probe = await probeTfGpu();
      if (probe.status !== 'gpu') return probe.message;
      applyTfGpuEnv();
    }
    loadedTfAddon = c.pkg;
  }
  try {
    await import(c.pkg);
  } catch (e) {
    return isNotInstalled(e, c.pkg) ? 'not installed (see README "Backends")' : `failed to load: ${firstLine(e)}`;
  }
  try {
    if (c.name === 'onnxruntime') {
      registerOrtBackend();
      if (!(await tf.setBackend(ORT_BACKEND))) return 'registered but failed to initialise';
      await tf.ready();
      return null;
    }
    if (c.name === 'wasm') {
      registerWasmTrainingKernels();
      registerFastConv2DBackpropInput();
      return await activateWasm();
    }
    const ok = await tf.setBackend(c.backend);
    if (!ok) return 'registered but failed to initialise';
    await tf.ready();
    if (c.name === 'tensorflow-gpu' && !(await hasGpuDevice())) {
      return 'loaded, but TensorFlow sees no GPU device in this process (it did in the probe)';
    }
    return null;
  } catch (e) {
    return `failed to initialise: ${firstLine(e)}`;
  }
}

interface WasmModule {
  setThreadsCount(n: number): void;
  getThreadsCount(): number;
}

const WASM_THREADS_FLAG = 'WASM_HAS_MULTITHREAD_SUPPORT';

/** wasm on a pthread pool when more than one thread is wanted, else (or if that fails) single-threaded. */
async function activateWasm(): Promise<string | null> {
  const threads = wasmThreadCount();
  if (threads > 1) {
    const wasm = (await import('@tensorflow/tfjs-backend-wasm')) as unknown as WasmModule;
    let hooks: { restore(): void } | null = null;
    try {
      hooks = prepareWasmThreads(threads, (n) => wasm.setThreadsCount(n), (on) => tf.env().set(WASM_THREADS_FLAG, on));
      if (await tf.setBackend('wasm')) {
        await tf.ready();
        unrefPoolThreads(tf.backend());
        return null;
      }
    } catch (e) {
      process.stderr.write(`warning: wasm with ${threads} threads failed (${firstLine(e)}); using one thread\n`);
    } finally {
      hooks?.restore();
    }
    // A failed initialisation leaves the factory registered: retry with the single-threaded build.
    tf.env().set(WASM_THREADS_FLAG, false);
    wasm.setThreadsCount(1);
  }
  const ok = await tf.setBackend('wasm');
  if (!ok) return 'registered but failed to initialise';
  await tf.ready();
  return null;
}

async function backendThreads(name: BackendName): Promise<number> {
  if (name === 'onnxruntime') return (tf.backend() as unknown as OrtBackend).engine.threads;
  if (name !== 'wasm') return 0;
  const wasm = (await import('@tensorflow/tfjs-backend-wasm')) as unknown as WasmModule;
  return wasm.getThreadsCount();
}

async function hasGpuDevice(): Promise<boolean> {
  // tfjs-node-gpu runs on CPU silently when CUDA is missing; we want to say so.
  try {
    const probe = tf.backend() as unknown as { binding?: { isUsingGpuDevice?: () => boolean } };
    if (probe.binding?.isUsingGpuDevice) return probe.binding.isUsingGpuDevice();
  } catch {
    /* older bindings */
  }
  return true;
}

function isNotInstalled(e: unknown, pkg: string): boolean {
  const err = e as { code?: string; message?: string };
  return (err.code === 'ERR_MODULE_NOT_FOUND' || err.code === 'MODULE_NOT_FOUND') && (err.message ?? '').includes(pkg);
}

function firstLine(e: unknown): string {
  return errorMessage(e).split('\n')[0] ?? '';
}

/** For tests: forget the choice so the next call selects again. */
export function resetBackendChoice(): void {
  current = null;
}
