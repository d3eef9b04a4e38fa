import * as ort from 'onnxruntime-node';
import { FghError } from '../util/errors.js';
import { cudaProviderPath } from './providers.js';

/** Execution providers `--ep` accepts; a trailing `!` makes the choice mandatory. */
export type EpRequest = 'cpu' | 'cuda' | 'cuda!';

export function parseEp(v: string): EpRequest {
  if (v === 'cpu' || v === 'cuda' || v === 'cuda!') return v;
  throw new FghError(`--ep must be cpu, cuda or cuda! (cuda without fallback), got "${v}"`);
}

export interface OpenedSession {
  session: ort.InferenceSession;
  /** The provider in use. */
  ep: 'cpu' | 'cuda';
  /** Why a requested provider was not used (shown to the user), or null. */
  fallback: string | null;
}

/**
 * Opens an onnxruntime-node session. CUDA needs onnxruntime-node's CUDA binaries (README: the
 * one-line opt-in); without them `cuda` falls back to CPU and says why, `cuda!` fails.
 */
export async function openSession(model: Uint8Array, ep: EpRequest = 'cpu', opts: { threads?: number } = {}): Promise<OpenedSession> {
  const base: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: 'all',
    ...(opts.threads ? { intraOpNumThreads: opts.threads } : {}),
  };
  if (ep !== 'cpu') {
    try {
      if (cudaProviderPath('cuda') === null) throw new Error('onnxruntime-node was installed without its CUDA provider libraries');
      // Severity 4 (fatal only): the failed probe must not print onnxruntime's native error lines.
      const session = await ort.InferenceSession.create(model, { ...base, executionProviders: ['cuda'], logSeverityLevel: 4 });
      return { session, ep: 'cuda', fallback: null };
    } catch (e) {
      const why = (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
      if (ep === 'cuda!') throw new FghError(`the CUDA execution provider is not available (${why}); install onnxruntime-node's CUDA binaries (see README) or use --ep cpu`);
      const session = await ort.InferenceSession.create(model, { ...base, executionProviders: ['cpu'] });
      return { session, ep: 'cpu', fallback: `CUDA execution provider not available (${why}); using CPU` };
    }
  }
  const session = await ort.InferenceSession.create(model, { ...base, executionProviders: ['cpu'] });
  return { session, ep: 'cpu', fallback: null };
}
