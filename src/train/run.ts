import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Module } from '../models/module.js';
import { FghError } from '../util/errors.js';
import { killPoint } from '../util/test-hooks.js';
import { encodeSafetensors, parseSafetensors, type WritableTensor } from '../weights/safetensors.js';
import { loadModelCheckpoint, saveModelCheckpoint, CONFIG_FILE, type CheckpointConfig, type JsonValue } from '../weights/checkpoint.js';

/**
 * What a training run saves so that nothing is lost: the checkpoint (config.json + weights) plus
 * `train-state.safetensors` (optimiser buffers, hash centres, codes...) and `log.jsonl`, all in
 * one atomic directory write. Every random draw of a run is a function of (seed, position), so a
 * position is all it takes to continue exactly where the saved state stopped.
 */

export const STATE_FILE = 'train-state.safetensors';
export const LOG_FILE = 'log.jsonl';
/** SEMICON's learned database codes (the training images' B) as a code store, from its first bitwise update on. */
export const DATABASE_CODES_FILE = 'database.codes';

/** Where a run is: outer iteration (SEMICON), epoch within it, next batch within the epoch. */
export interface Position {
  iter: number;
  epoch: number;
  batch: number;
  /** Mid-epoch saves: the epoch's running loss sums so far, so that its log line comes out as if uninterrupted. */
  sums?: Record<string, number>;
}

/** The running sums an interrupted epoch had reached, or fresh ones. */
export function epochSums<T extends Record<string, number>>(fresh: T, position: Position, iter: number, epoch: number): T {
  if (position.iter !== iter || position.epoch !== epoch || position.batch === 0 || !position.sums) return fresh;
  const out: Record<string, number> = { ...fresh };
  for (const k of Object.keys(fresh)) if (typeof position.sums[k] === 'number') out[k] = position.sums[k]!;
  return out as T;
}

export interface SavedRun {
  config: CheckpointConfig;
  position: Position;
  tensors: Map<string, WritableTensor>;
  log: string[];
}

/** `extra`: more files of the run (e.g. SEMICON's learned database codes), saved in the same atomic step. */
export async function saveRun(
  dir: string,
  config: CheckpointConfig,
  model: Module,
  position: Position,
  tensors: ReadonlyMap<string, WritableTensor>,
  log: readonly string[],
  extra: Record<string, Uint8Array> = {},
): Promise<void> {
  const training = config.training!;
  const hyper: { [k: string]: JsonValue } = { ...training.hyper, position: { ...position } };
  const cfg: CheckpointConfig = { ...config, training: { ...training, hyper } };
  await saveModelCheckpoint(dir, cfg, model, {
    extraFiles: { ...extra, [STATE_FILE]: encodeSafetensors(tensors, { format: 'fgh-train-state' }), [LOG_FILE]: log.length ? `${log.join('\n')}\n` : '' },
  });
  killPoint('save');
}

/** True when DIR holds a run's checkpoint that --resume can continue. */
export function hasRun(dir: string): boolean {
  return existsSync(path.join(dir, CONFIG_FILE)) && existsSync(path.join(dir, STATE_FILE));
}

export async function loadRun(dir: string, model: Module): Promise<SavedRun> {
  const { config } = await loadModelCheckpoint(dir, model);
  if (!config.training) throw new FghError(`${dir}: not a training checkpoint (no training state in config.json)`);
  const pos = config.training.hyper.position as { iter?: unknown; epoch?: unknown; batch?: unknown; sums?: unknown } | undefined;
  if (!pos || typeof pos.iter !== 'number' || typeof pos.epoch !== 'number' || typeof pos.batch !== 'number') {
    throw new FghError(`${path.join(dir, CONFIG_FILE)}: training.hyper.position is missing or malformed`);
  }
  const stateFile = path.join(dir, STATE_FILE);
  const parsed = parseSafetensors(readFileSync(stateFile), stateFile);
  const tensors = new Map<string, WritableTensor>();
  for (const [name, t] of parsed.tensors) tensors.set(name, { shape: t.shape, data: t.data });
  const logText = existsSync(path.join(dir, LOG_FILE)) ? readFileSync(path.join(dir, LOG_FILE), 'utf8') : '';
  // epochSums() takes only the numeric entries it knows.
  const sums = pos.sums && typeof pos.sums === 'object' ? (pos.sums as Record<string, number>) : undefined;
  return { config, position: { iter: pos.iter, epoch: pos.epoch, batch: pos.batch, ...(sums ? { sums } : {}) }, tensors, log: logText.split('\n').filter((l) => l.length > 0) };
}

/**
 * A resumed run must continue with the hyper-parameters it was saved with: anything else would
 * silently make a run that no configuration describes. Keys the saved run predates are allowed.
 */
export function checkResumedHyper(saved: SavedRun, hyper: object, dir: string): void {
  const was = saved.config.training!.hyper;
  const now = hyper as Record<string, unknown>;
  const diff = Object.keys(was).filter((k) => k !== 'position' && k !== 'method' && k in now && JSON.stringify(was[k]) !== JSON.stringify(now[k]));
  if (diff.length) {
    throw new FghError(`${dir}: saved with other hyper-parameters (${diff.map((k) => `${k} ${JSON.stringify(was[k])}, now ${JSON.stringify(now[k])}`).join('; ')}); resume with the saved settings or train into a new --out`);
  }
}

/** Ctrl-C asks the loop to stop after the current batch and save; a second Ctrl-C quits at once. */
export class StopSignal {
  requested = false;
  private handler = (): void => {
    if (this.requested) process.exit(130);
    this.requested = true;
    process.stderr.write('\nstopping after the current batch to save the run (Ctrl-C again to quit without saving)\n');
  };
  /**
   * Whether a stop was asked, after letting pending signals in: Node runs signal handlers from its
   * event loop, and a batch whose data is already in memory never waits on I/O, so without this a
   * Ctrl-C could wait for the end of the epoch. Two turns of the check phase put one poll phase,
   * where libuv reads its signal pipe, between them.
   */
  async poll(): Promise<boolean> {
    for (let i = 0; i < 2; i++) await new Promise<void>((resolve) => setImmediate(resolve));
    return this.requested;
  }
  install(): () => void {
    process.on('SIGINT', this.handler);
    process.on('SIGTERM', this.handler);
    return () => {
      process.off('SIGINT', this.handler);
      process.off('SIGTERM', this.handler);
    };
  }
}

export function requireTensor(tensors: ReadonlyMap<string, WritableTensor>, name: string, size: number, where: string): Float32Array {
  const t = tensors.get(name);
  if (!t) throw new FghError(`${where}: training state has no '${name}'`);
  if (t.data.length !== size) throw new FghError(`${where}: training state '${name}' has ${t.data.length} values, expected ${size}`);
  return t.data;
}
