import type { Command } from 'commander';
import os from 'node:os';
import type { BackendAttempt } from '../../backend/select.js';
import type { OrtBackend } from '../../backend/onnxruntime/backend.js';
import type { OrtCalls } from '../../backend/onnxruntime/engine.js';
import { packageVersion } from '../../util/version.js';
import { MALLOC_TUNABLES, mallocTuned } from '../../backend/malloc-tunables.js';
import { errorMessage } from '../../util/errors.js';
import { probeTfGpu, TF_GPU_NEEDS, TF_GPU_PKG, type TfGpuProbe } from '../../backend/tf-gpu.js';
import { EP_NEEDS, PROBE_EPS, probeExecutionProvider, type ProbeEp } from '../../encode/ep-probe.js';

export interface ExecutionProviderReport {
  name: ProbeEp;
  /** onnxruntime-node lists it (it lists cuda and tensorrt even without their libraries). */
  listed: boolean;
  /** A session on a tiny graph opened and computed the right values. */
  available: boolean;
  ms: number | null;
  /** onnxruntime's exception message, whole, where it failed. */
  error: string | null;
  /** onnxruntime's and Dawn's own error lines (the library that did not load). */
  detail: string[];
  needs: string;
}

export interface DoctorReport {
  fgh: string;
  node: string;
  platform: string;
  cpus: number;
  tfjs: { backend: string | null; threads: number | null; attempts: BackendAttempt[]; error?: string; wasmExtraKernels: string[]; onnxruntimeKernels: string[]; mallocTuned: boolean; arrayRelease: boolean; simdMaxPoolGrad: boolean; nchwcBlock?: number; ortCalls?: { calls: OrtCalls; note: string } };
  /** The GPU training backend, tried in a child process. */
  tensorflowGpu: TfGpuProbe & { pkg: string; needs: string };
  onnxruntime: { version: string | null; executionProviders: ExecutionProviderReport[]; error?: string };
  sharp: { version: string | null; libvips: string | null; concurrency: number | null; simd: boolean | null; error?: string };
  threads: { uvThreadpool: number; onnxruntimeIntraOpDefault: number };
}

export async function doctorReport(): Promise<DoctorReport> {
  const [{ selectBackend }, { wasmTrainingKernelNames }, { ORT_BACKEND, ortKernelNames }, { nchwcBlock }, { tf }, { arrayReleaseAvailable }, { maxPoolGradSimdAvailable }] = await Promise.all([
    import('../../backend/select.js'),
    import('../../backend/wasm/kernels.js'),
    import('../../backend/onnxruntime/backend.js'),
    import('../../backend/onnxruntime/conv.js'),
    import('../../backend/tf.js'),
    import('../../backend/array-release.js'),
    import('../../backend/simd/max-pool-grad.js'),
  ]);
  const report: DoctorReport = {
    fgh: packageVersion(),
    node: process.version,
    platform: `${process.platform}/${process.arch}`,
    cpus: os.availableParallelism(),
    tfjs: { backend: null, threads: null, attempts: [], wasmExtraKernels: wasmTrainingKernelNames(), onnxruntimeKernels: ortKernelNames(), mallocTuned: mallocTuned(), arrayRelease: arrayReleaseAvailable(), simdMaxPoolGrad: maxPoolGradSimdAvailable() },
    tensorflowGpu: { pkg: TF_GPU_PKG, needs: TF_GPU_NEEDS, status: 'failed', message: '', ms: 0 },
    onnxruntime: { version: null, executionProviders: [] },
    sharp: { version: null, libvips: null, concurrency: null, simd: null },
    threads: { uvThreadpool: Number(process.env.UV_THREADPOOL_SIZE ?? 4), onnxruntimeIntraOpDefault: os.availableParallelism() },
  };
  // Every accelerator really runs something, each in its own child process, all at once.
  const gpuProbe = probeTfGpu();
  const epProbes = Promise.all(PROBE_EPS.map((ep) => probeExecutionProvider(ep)));
  try {
    const choice = await selectBackend({ note: () => {} });
    report.tfjs.backend = choice.name;
    report.tfjs.threads = choice.threads;
    report.tfjs.attempts = choice.attempts;
    if (choice.name === ORT_BACKEND) {
      const engine = (tf.backend() as OrtBackend).engine;
      report.tfjs.nchwcBlock = nchwcBlock(engine);
      report.tfjs.ortCalls = { calls: engine.calls, note: engine.callsNote };
    }
  } catch (e) {
    report.tfjs.error = errorMessage(e);
  }
  try {
    const ort = (await import('onnxruntime-node')).default;
    report.onnxruntime.version = ort.env.versions.node ?? null;
    const listed = new Set(ort.listSupportedBackends().map((b: { name: string }) => b.name));
    report.onnxruntime.executionProviders = (await epProbes).map((p) => ({
      name: p.ep, listed: listed.has(p.ep), available: p.ok, ms: p.ms, error: p.error, detail: p.detail, needs: EP_NEEDS[p.ep],
    }));
  } catch (e) {
    report.onnxruntime.error = errorMessage(e);
  }
  report.tensorflowGpu = { pkg: TF_GPU_PKG, needs: TF_GPU_NEEDS, ...(await gpuProbe) };
  try {
    const sharp = (await import('sharp')).default;
    report.sharp.version = sharp.versions.sharp ?? null;
    report.sharp.libvips = sharp.versions.vips;
    report.sharp.concurrency = sharp.concurrency();
    report.sharp.simd = sharp.simd();
  } catch (e) {
    report.sharp.error = errorMessage(e);
  }
  return report;
}

export function formatReport(r: DoctorReport): string {
  const lines: string[] = [];
  lines.push(`fgh ${r.fgh} on node ${r.node} (${r.platform}), ${r.cpus} cpus`);
  lines.push('');
  lines.push(`TensorFlow.js backend: ${r.tfjs.backend ?? `none (${r.tfjs.error})`}`);
  for (const a of r.tfjs.attempts) lines.push(`  ${a.ok ? '[x]' : '[ ]'} ${a.name.padEnd(15)} ${a.pkg}${a.ok ? ' (chosen)' : ` - ${a.reason}`}`);
  if (r.tfjs.backend === 'onnxruntime') {
    lines.push(`  onnxruntime-node's CPU provider on ${r.tfjs.threads} threads computes: ${r.tfjs.onnxruntimeKernels.filter((k) => k !== 'MaxPoolGrad').join(', ')}`);
    lines.push(
      r.tfjs.simdMaxPoolGrad
        ? "  MaxPoolGrad: WebAssembly SIMD, 4 channels at a time (JavaScript where the channels are not a multiple of 4, or for NaN inputs)"
        : '  MaxPoolGrad: JavaScript (no WebAssembly SIMD in this Node)',
    );
    lines.push('  every other kernel runs in tfjs\'s cpu (JavaScript) kernels, as do tensors too small to repay a call');
    if (r.tfjs.nchwcBlock !== undefined) {
      lines.push(
        r.tfjs.nchwcBlock > 0
          ? `  convolutions and max pooling in blocks of ${r.tfjs.nchwcBlock} channels (onnxruntime's NCHWc operators) where the channels fill them`
          : '  no NCHWc operators here (or FGH_NCHWC=0): convolutions run as NCHW Conv between transposes',
      );
    }
    lines.push(
      r.tfjs.mallocTuned
        ? '  malloc: large blocks kept and reused (GLIBC_TUNABLES mmap_threshold, trim_threshold, mxfast, tcache_count, set by bin/fgh)'
        : `  malloc: not tuned; training runs slower and its heap keeps growing (page faults on large tensors). Run through bin/fgh or set GLIBC_TUNABLES=${MALLOC_TUNABLES}`,
    );
    if (r.tfjs.ortCalls) {
      lines.push(
        r.tfjs.ortCalls.calls === 'c-api'
          ? "  sessions called through onnxruntime's C API (koffi): results written in place into reused arrays, no copies"
          : `  sessions called through onnxruntime-node's binding, which copies every result (${r.tfjs.ortCalls.note})`,
      );
    }
    lines.push(
      r.tfjs.ortCalls?.calls === 'c-api'
        ? '  result arrays: reused for the next output of their size once disposed'
        : r.tfjs.arrayRelease
          ? "  result arrays: reused for the next output of their size once disposed; the binding's copies freed at once"
          : "  result arrays: reused once disposed; the binding's copies wait for garbage collection (no ArrayBuffer transfer in this Node)",
    );
  }
  if (r.tfjs.backend === 'wasm') {
    lines.push(`  wasm threads: ${r.tfjs.threads} (FGH_WASM_THREADS=N for more, at most 8; see README "Training")`);
    lines.push(`  wasm kernels added by fgh for training: ${r.tfjs.wasmExtraKernels.join(', ')}`);
  }
  lines.push('');
  const g = r.tensorflowGpu;
  lines.push(`GPU training, ${g.pkg}: ${g.status === 'gpu' ? `works (${g.message}, ${(g.ms / 1000).toFixed(1)} s)` : g.message}`);
  lines.push(`  needs ${g.needs}`);
  lines.push('');
  lines.push(`onnxruntime-node ${r.onnxruntime.version ?? `unavailable (${r.onnxruntime.error})`}: a session on a 2x2 MatMul graph per execution provider (fgh encode --ep)`);
  for (const ep of r.onnxruntime.executionProviders) {
    const ms = ep.ms === null ? '' : ` (${Math.round(ep.ms)} ms)`;
    lines.push(`  ${ep.available ? '[x]' : '[ ]'} ${ep.name.padEnd(8)} ${ep.available ? `works${ms}` : `failed: ${(ep.error ?? '').trim().split('\n').join(' ')}`}`);
    for (const d of ep.available ? [] : ep.detail) lines.push(`               ${d}`);
    if (ep.name !== 'cpu') lines.push(`               needs ${ep.needs}`);
  }
  lines.push('');
  lines.push(`sharp: ${r.sharp.version ?? `unavailable (${r.sharp.error})`}, libvips ${r.sharp.libvips}, simd ${r.sharp.simd}`);
  lines.push('');
  lines.push(`threads: sharp ${r.sharp.concurrency}, libuv pool ${r.threads.uvThreadpool}, onnxruntime intra-op ${r.threads.onnxruntimeIntraOpDefault} (default), cpus ${r.cpus}`);
  return lines.join('\n');
}

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description(
      'report the TensorFlow.js backend in use (and why others were skipped), try each accelerator for real (a matrix product on ' +
        'tfjs-node-gpu, an onnxruntime session per execution provider: cpu, cuda, tensorrt, webgpu) with the exact error where one fails, sharp and thread counts',
    )
    .option('--json', 'print one JSON object on stdout')
    .action(async (opts: { json?: boolean }) => {
      const report = await doctorReport();
      process.stdout.write(opts.json ? `${JSON.stringify(report)}\n` : `${formatReport(report)}\n`);
    });
}
