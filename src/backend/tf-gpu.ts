import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * The GPU training backend, @tensorflow/tfjs-node-gpu 4.22.0: an opt-in install (`npm run
 * gpu:train`) whose libtensorflow 2.9.1 is built for CUDA 11.2 and cuDNN 8.1. On a machine
 * with other CUDA versions it loads, finds no GPU and would train on its CPU kernels in silence;
 * fgh probes it in a child process first and says which library was missing.
 */
export const TF_GPU_PKG = '@tensorflow/tfjs-node-gpu';
export const TF_GPU_VERSION = '4.22.0';
export const TF_GPU_CUDA = 'CUDA 11.2 and cuDNN 8.1';
export const TF_GPU_NEEDS =
  `libtensorflow 2.9.1 (downloaded by ${TF_GPU_PKG} ${TF_GPU_VERSION}), built for ${TF_GPU_CUDA}, an NVIDIA driver, ` +
  'a GPU of compute capability 3.5 to 8.0 (newer ones only through the driver\'s PTX JIT, unverified)';
export const TF_GPU_INSTALL = 'npm run gpu:train';

/** TensorFlow takes nearly all GPU memory at start unless told to grow: grow, unless the user chose. */
export function applyTfGpuEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  if (env.TF_FORCE_GPU_ALLOW_GROWTH === undefined) env.TF_FORCE_GPU_ALLOW_GROWTH = 'true';
  return env;
}

/** Whether a package resolves from fgh's node_modules, without loading it. */
export function isInstalled(pkg: string): boolean {
  try {
    createRequire(import.meta.url).resolve(pkg);
    return true;
  } catch {
    return false;
  }
}

/** The libraries TensorFlow's loader (dso_loader.cc) reports as not loadable, in order, once each. */
export function missingLibraries(log: string): string[] {
  const libs: string[] = [];
  for (const m of log.matchAll(/Could not load dynamic library '([^']+)'/g)) if (!libs.includes(m[1]!)) libs.push(m[1]!);
  return libs;
}

/** One line saying why the GPU build runs without a GPU, from libtensorflow's log. */
export function tfGpuFailure(log: string): string {
  const libs = missingLibraries(log);
  let what: string;
  const capability = /Ignoring visible gpu device \(([^)]*)\) with Cuda compute capability (\d+(?:\.\d+)?)\. The minimum required Cuda capability is (\d+(?:\.\d+)?)/.exec(log);
  const cuInit = /failed call to cuInit: (\w+)/.exec(log);
  if (libs.length) what = `could not load ${libs.join(', ')}`;
  else if (capability) what = `its GPU has compute capability ${capability[2]}, below the ${capability[3]} it needs`;
  else if (cuInit) what = `the NVIDIA driver reported ${cuInit[1]}`;
  else what = 'TensorFlow sees no GPU device';
  return `${TF_GPU_PKG} found no usable GPU (${what}); it needs ${TF_GPU_CUDA}`;
}

export interface TfGpuProbe {
  /** absent: not installed; gpu: a matrix product ran with a GPU device; no-gpu: loaded, no GPU; failed: did not load or compute. */
  status: 'absent' | 'gpu' | 'no-gpu' | 'failed';
  /** One line for the user. */
  message: string;
  ms: number;
}

const CHILD = fileURLToPath(new URL('./tf-gpu-probe-child.js', import.meta.url));
const EXPECTED = [-2, -2, 6.5, 9]; // [[1, -1], [0.5, 2]] · [[1, 2], [3, 4]]

let probed: Promise<TfGpuProbe> | null = null;

/** Loads the GPU build in a child process and runs one matrix product there (once per process). */
export function probeTfGpu(opts: { timeoutMs?: number } = {}): Promise<TfGpuProbe> {
  probed ??= runProbe(opts.timeoutMs ?? 180_000);
  return probed;
}

function runProbe(timeoutMs: number): Promise<TfGpuProbe> {
  const started = Date.now();
  if (!isInstalled(TF_GPU_PKG)) {
    return Promise.resolve({ status: 'absent', message: `not installed (opt-in: ${TF_GPU_INSTALL}; see README "GPU")`, ms: 0 });
  }
  return new Promise((resolve) => {
    // Level 0 so that the loader's warnings (the missing CUDA libraries) reach the log read here.
    const env = applyTfGpuEnv({ ...process.env, TF_CPP_MIN_LOG_LEVEL: '0' });
    const child = spawn(process.execPath, [CHILD], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let log = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (log += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const done = (status: TfGpuProbe['status'], message: string): void => {
      clearTimeout(timer);
      resolve({ status, message, ms: Date.now() - started });
    };
    child.on('error', (e) => done('failed', `${TF_GPU_PKG}: could not start the probe (${e.message})`));
    child.on('close', (code, signal) => {
      let r: { loaded: boolean; gpu: boolean; product: number[] | null; error: string | null };
      try {
        r = JSON.parse(stdout.trim().split('\n').pop() ?? '') as typeof r;
      } catch {
        const last = log.trim().split('\n').pop() ?? '';
        done('failed', `${TF_GPU_PKG}: the probe process died (${signal ?? `exit code ${code}`})${last ? `: ${last}` : ''}`);
        return;
      }
      if (!r.loaded) done('failed', `${TF_GPU_PKG} failed to load: ${r.error}`);
      else if (!r.gpu) done('no-gpu', tfGpuFailure(log));
      else if (!r.product || r.product.some((v, i) => Math.abs(v - EXPECTED[i]!) > 1e-4)) done('failed', `${TF_GPU_PKG}: a matrix product on the GPU gave [${r.product}] instead of [${EXPECTED}]`);
      else done('gpu', 'a matrix product ran with a GPU device');
    });
  });
}
