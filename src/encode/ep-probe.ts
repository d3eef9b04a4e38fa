import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The onnxruntime-node execution providers fgh can probe (its Linux x64 build lists these). */
export type ProbeEp = 'cpu' | 'cuda' | 'tensorrt' | 'webgpu';
export const PROBE_EPS: readonly ProbeEp[] = ['cpu', 'cuda', 'tensorrt', 'webgpu'];

/** What each provider needs on the machine, as onnxruntime-node 1.23 is built. */
export const EP_NEEDS: Record<ProbeEp, string> = {
  cpu: 'nothing (bundled)',
  cuda: "onnxruntime-node's CUDA provider libraries (npm run gpu:encode), CUDA 12 and cuDNN 9, an NVIDIA driver",
  tensorrt: 'the same provider libraries as cuda, plus TensorRT 10 (onnxruntime lists 10.9) on CUDA 12',
  webgpu: 'nothing to install in fgh (Dawn is bundled): a GPU with a Vulkan driver (libvulkan.so.1); no CUDA; unverified here',
};

export const EP_LABEL: Record<ProbeEp, string> = { cpu: 'CPU', cuda: 'CUDA', tensorrt: 'TensorRT', webgpu: 'WebGPU' };

export interface EpProbe {
  ep: ProbeEp;
  /** The probe graph ran and computed the right values. */
  ok: boolean;
  /** Time to open the session and run it, in the child. */
  ms: number | null;
  /** onnxruntime's exception message, whole, when it failed. */
  error: string | null;
  /** onnxruntime's and Dawn's own error lines from the child's stderr (they name the missing library). */
  detail: string[];
}

const CHILD = fileURLToPath(new URL('./ep-probe-child.js', import.meta.url));

/**
 * Opens a session with `ep` on a tiny in-memory graph in a child process and runs it. Takes about
 * a quarter of a second for a provider that is missing; a real GPU may take seconds to initialise.
 */
export function probeExecutionProvider(ep: ProbeEp, opts: { timeoutMs?: number } = {}): Promise<EpProbe> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CHILD, ep], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ ep, ok: false, ms: null, error: `could not start the probe: ${e.message}`, detail: [] });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const detail = nativeErrorLines(stderr);
      const line = stdout.trim().split('\n').pop() ?? '';
      try {
        const r = JSON.parse(line) as { ok: boolean; ms: number; error: string | null };
        resolve({ ep, ok: r.ok, ms: r.ms, error: r.error, detail });
        return;
      } catch {
        const why = signal === 'SIGKILL' ? 'did not finish in time' : `died (${signal ?? `exit code ${code}`})`;
        const last = detail.at(-1) ?? stderr.trim().split('\n').pop() ?? '';
        resolve({ ep, ok: false, ms: null, error: `the probe process ${why}${last ? `: ${last}` : ''}`, detail });
      }
    });
  });
}

const ANSI = /\x1b\[[0-9;]*m/g;

/**
 * The error lines onnxruntime's default logger and Dawn print, reduced to their message:
 * `... [E:onnxruntime:..., file.cc:1 Create] /src/x.cc:9 void f() [ONNXRuntimeError] : 1 : FAIL : MSG`
 * gives MSG; Dawn's `Warning: Couldn't load Vulkan. Searched ...` gives its first sentence.
 */
export function nativeErrorLines(stderr: string): string[] {
  const out: string[] = [];
  for (const raw of stderr.replace(ANSI, '').split('\n')) {
    const line = raw.trim();
    let msg: string | null = null;
    if (/\[E:onnxruntime:/.test(line)) {
      const fail = /\[ONNXRuntimeError\] : \d+ : \w+ : (.*)$/.exec(line);
      msg = fail ? fail[1]! : line.replace(/^.*?\[E:onnxruntime:[^\]]*\]\s*/, '');
    } else if (/^Warning: /.test(line)) {
      msg = line.replace(/^Warning: /, '').replace(/\. Searched .*$/, '').replace(/\.$/, '');
    }
    if (msg && !out.includes(msg)) out.push(msg);
  }
  return out;
}

/**
 * onnxruntime's exception message on one line: ORT_ENFORCE messages start with the source file,
 * function and failed condition (`/onnxruntime_src/...cc:87 ... was false. MESSAGE`); keep MESSAGE.
 */
export function conciseOrtError(message: string): string {
  const first = message.trim().split('\n')[0] ?? '';
  const enforced = / was false\. (.*)$/.exec(first);
  return (enforced ? enforced[1]! : first).trim();
}

/** One line: the exception, then what the native log adds (the library that did not load). */
export function probeFailure(p: Pick<EpProbe, 'error' | 'detail'>): string {
  const head = conciseOrtError(p.error ?? 'failed');
  const extra = p.detail.filter((d) => !head.includes(d));
  return extra.length ? `${head}: ${extra.join('; ')}` : head;
}
