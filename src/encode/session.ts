import type * as Ort from 'onnxruntime-node';
import { FghError } from '../util/errors.js';
import { EP_LABEL, EP_NEEDS, probeExecutionProvider, probeFailure } from './ep-probe.js';

/** Execution providers `--ep` accepts; a trailing `!` makes the choice mandatory (no CPU fallback). */
export type EpRequest = 'cpu' | 'cuda' | 'cuda!' | 'webgpu' | 'webgpu!';
export type EpName = 'cpu' | 'cuda' | 'webgpu';

const EP_REQUESTS: readonly EpRequest[] = ['cpu', 'cuda', 'cuda!', 'webgpu', 'webgpu!'];

export function parseEp(v: string): EpRequest {
  if ((EP_REQUESTS as readonly string[]).includes(v)) return v as EpRequest;
  throw new FghError(`--ep must be cpu, cuda, cuda!, webgpu or webgpu! (! = no fallback to cpu), got "${v}"`);
}

/** onnxruntime-node, loaded when the first session is made: commands that make none do not pay for it. */
async function loadOrt(): Promise<typeof Ort> {
  return import('onnxruntime-node');
}

export interface OpenedSession {
  session: Ort.InferenceSession;
  /** Images [N, 3, H, W] as the graph's `images` input. */
  images: (data: Float32Array, shape: readonly number[]) => Ort.Tensor;
  /** The provider in use. */
  ep: EpName;
  /** Why a requested provider was not used (shown to the user and recorded), or null. */
  fallback: string | null;
}

/**
 * Opens an onnxruntime-node session. A GPU provider is first probed in a child process on a tiny
 * graph (its native errors name the missing library there, and cannot abort this process); when
 * it is not usable, `cuda`/`webgpu` fall back to CPU and say why, `cuda!`/`webgpu!` fail with one
 * line before anything is written.
 */
export async function openSession(model: Uint8Array, request: EpRequest = 'cpu', opts: { threads?: number } = {}): Promise<OpenedSession> {
  const ort = await loadOrt();
  const images = (data: Float32Array, shape: readonly number[]): Ort.Tensor => new ort.Tensor('float32', data, shape);
  const base: Ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: 'all',
    ...(opts.threads ? { intraOpNumThreads: opts.threads } : {}),
  };
  const cpu = async (fallback: string | null): Promise<OpenedSession> => ({
    session: await ort.InferenceSession.create(model, { ...base, executionProviders: ['cpu'] }),
    images,
    ep: 'cpu',
    fallback,
  });
  if (request === 'cpu') return cpu(null);
  const ep = request.replace('!', '') as 'cuda' | 'webgpu';
  const strict = request.endsWith('!');
  const probe = await probeExecutionProvider(ep);
  let why: string | null = probe.ok ? null : probeFailure(probe);
  if (why === null) {
    try {
      // Severity 3 (errors only, as the probe already succeeded): no provider chatter on stderr.
      const session = await ort.InferenceSession.create(model, { ...base, executionProviders: [ep], logSeverityLevel: 3 });
      return { session, images, ep, fallback: null };
    } catch (e) {
      why = probeFailure({ error: e instanceof Error ? e.message : String(e), detail: [] });
    }
  }
  const label = EP_LABEL[ep];
  if (strict) throw new FghError(`the ${label} execution provider is not available (${why}); it needs ${EP_NEEDS[ep]} (see README "GPU"), or use --ep ${ep} to fall back to cpu`);
  return cpu(`${label} execution provider not available (${why}); using CPU`);
}
