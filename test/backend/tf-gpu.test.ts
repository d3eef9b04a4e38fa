import test from 'ava';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { applyTfGpuEnv, missingLibraries, tfGpuFailure } from '../../src/backend/tf-gpu.js';
import { projectRoot } from '../helpers/cli.js';

/**
 * The GPU training backend's refusal paths. This machine has no GPU and no tfjs-node-gpu (it is
 * an opt-in install), so what runs here is the selection with the addon absent and the one-line
 * message built from libtensorflow's loader log.
 */

/** A real dlerror from this machine's loader: what dlopen says of a CUDA 11 runtime that is not installed. */
function realDlerror(lib: string): string {
  try {
    process.dlopen({ exports: {} } as NodeJS.Module, lib);
  } catch (e) {
    return (e as Error).message;
  }
  return '';
}

test('the message names every library libtensorflow could not load, and the CUDA/cuDNN versions it needs', (t) => {
  const cudart = realDlerror('libcudart.so.11.0');
  t.regex(cudart, /^libcudart\.so\.11\.0: cannot open shared object file/, 'no CUDA 11 runtime here');
  // libtensorflow 2.9.1's log lines (stream_executor/platform/default/dso_loader.cc:64, as users of
  // tfjs-node-gpu 4.x report them), around this machine's real dlerror text.
  const log = [
    `2026-12-01 13:00:00.000001: W tensorflow/stream_executor/platform/default/dso_loader.cc:64] Could not load dynamic library 'libcudart.so.11.0'; dlerror: ${cudart}`,
    '2026-12-01 13:00:00.000002: I tensorflow/stream_executor/cuda/cudart_stub.cc:29] Ignore above cudart dlerror if you do not have a GPU set up on your machine.',
    `2026-12-01 13:00:00.000003: W tensorflow/stream_executor/platform/default/dso_loader.cc:64] Could not load dynamic library 'libcudnn.so.8'; dlerror: ${realDlerror('libcudnn.so.8')}`,
    "2026-12-01 13:00:00.000004: W tensorflow/stream_executor/platform/default/dso_loader.cc:64] Could not load dynamic library 'libcudart.so.11.0'; dlerror: again",
    '2026-12-01 13:00:00.000005: W tensorflow/core/common_runtime/gpu/gpu_device.cc:1850] Cannot dlopen some GPU libraries. Please make sure the missing libraries mentioned above are installed properly if you would like to use GPU.',
  ].join('\n');
  t.deepEqual(missingLibraries(log), ['libcudart.so.11.0', 'libcudnn.so.8']);
  const message = tfGpuFailure(log);
  t.is(message, '@tensorflow/tfjs-node-gpu found no usable GPU (could not load libcudart.so.11.0, libcudnn.so.8); it needs CUDA 11.2 and cuDNN 8.1');
  t.false(message.includes('\n'));

  // A GPU older than libtensorflow's build (TensorFlow's gpu_device.cc line, as users report it).
  const old = 'I tensorflow/core/common_runtime/gpu/gpu_device.cc:1283] Ignoring visible gpu device (device: 0, name: Quadro K2000M, pci bus id: 0000:01:00.0, compute capability: 3.0) with Cuda compute capability 3.0. The minimum required Cuda capability is 3.5.';
  t.is(tfGpuFailure(old), '@tensorflow/tfjs-node-gpu found no usable GPU (its GPU has compute capability 3.0, below the 3.5 it needs); it needs CUDA 11.2 and cuDNN 8.1');
  t.is(tfGpuFailure(''), '@tensorflow/tfjs-node-gpu found no usable GPU (TensorFlow sees no GPU device); it needs CUDA 11.2 and cuDNN 8.1');
});

test('TF_FORCE_GPU_ALLOW_GROWTH defaults to true, and a value the user set is kept', (t) => {
  t.is(applyTfGpuEnv({}).TF_FORCE_GPU_ALLOW_GROWTH, 'true');
  t.is(applyTfGpuEnv({ TF_FORCE_GPU_ALLOW_GROWTH: 'false' }).TF_FORCE_GPU_ALLOW_GROWTH, 'false');
});

const dist = (p: string): string => pathToFileURL(path.join(projectRoot, 'dist', p)).href;

/** selectBackend in a fresh process (it chooses once per process), reporting what it loaded. */
function select(env: Record<string, string>): { status: number | null; out: Record<string, unknown>; stderr: string } {
  const script = `
    const { selectBackend } = await import(${JSON.stringify(dist('src/backend/select.js'))});
    const { readFileSync } = await import('node:fs');
    let r;
    try { const c = await selectBackend(); r = { name: c.name, attempts: c.attempts }; } catch (e) { r = { error: e.message, kind: e.name }; }
    r.libtensorflow = readFileSync('/proc/self/maps', 'utf8').includes('libtensorflow');
    console.log(JSON.stringify(r));`;
  const { FGH_BACKEND: _ignored, ...base } = process.env;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...base, ...env }, timeout: 120_000 });
  return { status: r.status, out: JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown>, stderr: r.stderr };
}

const gpuInstalled = ((): boolean => {
  try {
    createRequire(path.join(projectRoot, 'package.json')).resolve('@tensorflow/tfjs-node-gpu');
    return true;
  } catch {
    return false;
  }
})();

(gpuInstalled ? test.skip : test)('without the opt-in GPU addon, training uses onnxruntime and loads no libtensorflow', (t) => {
  const r = select({});
  t.is(r.status, 0, r.stderr);
  t.is(r.out.name, 'onnxruntime');
  const attempts = r.out.attempts as Array<{ name: string; ok: boolean; reason?: string }>;
  t.deepEqual(attempts.map((a) => a.name), ['tensorflow-gpu', 'tensorflow', 'onnxruntime']);
  t.is(attempts[0]!.reason, 'not installed (opt-in: npm run gpu:train; see README "GPU")');
  t.regex(attempts[1]!.reason ?? '', /^used only on request \(FGH_BACKEND=tensorflow\)/);
  t.false(r.out.libtensorflow as boolean);
  t.is(r.stderr, '', 'nothing to say when the GPU build was never installed');

  const forced = select({ FGH_BACKEND: 'tensorflow-gpu' });
  t.is(forced.out.kind, 'FghError', 'a user error, printed on one line');
  t.is(forced.out.error, 'FGH_BACKEND=tensorflow-gpu: not installed (opt-in: npm run gpu:train; see README "GPU")');
  t.false(forced.out.libtensorflow as boolean);
});
