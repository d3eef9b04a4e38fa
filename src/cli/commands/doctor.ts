import { cudaProviderPath } from '../../encode/providers.js';
import type { Command } from 'commander';
import os from 'node:os';
import { selectBackend, type BackendAttempt } from '../../backend/select.js';
import { wasmTrainingKernelNames } from '../../backend/wasm-kernels.js';
import { mallocTuned, ortKernelNames } from '../../backend/onnxruntime/backend.js';
import { packageVersion } from '../../util/version.js';
import { errorMessage } from '../../util/errors.js';

export interface DoctorReport {
  fgh: string;
  node: string;
  platform: string;
  cpus: number;
  tfjs: { backend: string | null; threads: number | null; attempts: BackendAttempt[]; error?: string; wasmExtraKernels: string[]; onnxruntimeKernels: string[]; mallocTuned: boolean };
  onnxruntime: { version: string | null; executionProviders: Array<{ name: string; available: boolean }>; error?: string };
  sharp: { version: string | null; libvips: string | null; concurrency: number | null; simd: boolean | null; error?: string };
  threads: { uvThreadpool: number; onnxruntimeIntraOpDefault: number };
}

export async function doctorReport(): Promise<DoctorReport> {
  const report: DoctorReport = {
    fgh: packageVersion(),
    node: process.version,
    platform: `${process.platform}/${process.arch}`,
    cpus: os.availableParallelism(),
    tfjs: { backend: null, threads: null, attempts: [], wasmExtraKernels: wasmTrainingKernelNames(), onnxruntimeKernels: ortKernelNames(), mallocTuned: mallocTuned() },
    onnxruntime: { version: null, executionProviders: [] },
    sharp: { version: null, libvips: null, concurrency: null, simd: null },
    threads: { uvThreadpool: Number(process.env.UV_THREADPOOL_SIZE ?? 4), onnxruntimeIntraOpDefault: os.availableParallelism() },
  };
  try {
    const choice = await selectBackend();
    report.tfjs.backend = choice.name;
    report.tfjs.threads = choice.threads;
    report.tfjs.attempts = choice.attempts;
  } catch (e) {
    report.tfjs.error = errorMessage(e);
  }
  try {
    const ort = (await import('onnxruntime-node')).default;
    report.onnxruntime.version = ort.env.versions.node ?? null;
    report.onnxruntime.executionProviders = ort
      .listSupportedBackends()
      .map((b: { name: string; bundled: boolean }) => ({ name: b.name, available: b.bundled || providerInstalled(b.name) }));
  } catch (e) {
    report.onnxruntime.error = errorMessage(e);
  }
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

/** onnxruntime-node lists CUDA/TensorRT even when their provider libraries were not installed. */
function providerInstalled(name: string): boolean {
  // Resolved lazily so that doctor works even if onnxruntime-node moved its binaries.
  return cudaProviderPath(name) !== null;
}

function formatReport(r: DoctorReport): string {
  const lines: string[] = [];
  lines.push(`fgh ${r.fgh} on node ${r.node} (${r.platform}), ${r.cpus} cpus`);
  lines.push('');
  lines.push(`TensorFlow.js backend: ${r.tfjs.backend ?? `none (${r.tfjs.error})`}`);
  for (const a of r.tfjs.attempts) lines.push(`  ${a.ok ? '[x]' : '[ ]'} ${a.name.padEnd(15)} ${a.pkg}${a.ok ? ' (chosen)' : ` - ${a.reason}`}`);
  if (r.tfjs.backend === 'onnxruntime') {
    lines.push(`  onnxruntime-node's CPU provider on ${r.tfjs.threads} threads computes: ${r.tfjs.onnxruntimeKernels.join(', ')}`);
    lines.push('  every other kernel runs in tfjs\'s cpu (JavaScript) kernels, as do tensors too small to repay a call');
    lines.push(
      r.tfjs.mallocTuned
        ? '  malloc: large blocks reused (GLIBC_TUNABLES mmap_threshold and trim_threshold, set by bin/fgh)'
        : '  malloc: not tuned; training runs slower (page faults on every large tensor). Run through bin/fgh or set GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=68719476736',
    );
  }
  if (r.tfjs.backend === 'wasm') {
    lines.push(`  wasm threads: ${r.tfjs.threads} (FGH_WASM_THREADS=N for more, at most 8; see README "Training")`);
    lines.push(`  wasm kernels added by fgh for training: ${r.tfjs.wasmExtraKernels.join(', ')}`);
  }
  lines.push('');
  lines.push(`onnxruntime-node: ${r.onnxruntime.version ?? `unavailable (${r.onnxruntime.error})`}`);
  for (const ep of r.onnxruntime.executionProviders) {
    lines.push(`  ${ep.available ? '[x]' : '[ ]'} ${ep.name}${ep.available ? '' : ' (provider libraries not installed; see README "GPU")'}`);
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
    .description('report the TensorFlow.js backend in use (and why others were skipped), onnxruntime execution providers, sharp and thread counts')
    .option('--json', 'print one JSON object on stdout')
    .action(async (opts: { json?: boolean }) => {
      const report = await doctorReport();
      process.stdout.write(opts.json ? `${JSON.stringify(report)}\n` : `${formatReport(report)}\n`);
    });
}
