/**
 * Our checkpoint: a directory holding `config.json` (what the model is and how it was trained,
 * see CheckpointConfig) and `weights.safetensors` (PyTorch names, NCHW/OIHW layouts, so it loads
 * in Python with the safetensors library). Written as a whole into a sibling temporary directory
 * and renamed into place, so that a reader never sees a half-written checkpoint and a failed
 * write leaves the previous checkpoint as it was.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fsp, readdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { FghError, errorMessage } from '../util/errors.js';
import { processAlive, removeStaleTemps } from '../util/atomic.js';
import { killPoint } from '../util/test-hooks.js';
import { EVAL_TRANSFORMS } from '../data/pixels.js';
import { aboutFile, describeFsProblem, isErrnoError, makeDirSync } from '../util/fs-errors.js';
import { PRODUCER_NAME, packageVersion } from '../util/version.js';
import { IMAGENET_MEAN, IMAGENET_STD, type EvalTransform } from '../data/normalisation.js';
import { RESNET_ARCHS, type ResNetArch } from '../models/resnet-archs.js';
import { loadStateDict, stateDict, type LoadOptions, type LoadReport } from '../models/state-dict.js';
import type { Module } from '../models/module.js';
import type { LoadedTensor } from './dtypes.js';
import { readSafetensors, safetensorsChunks, writeChunks, type WritableTensor } from './safetensors.js';

/** Version of the checkpoint layout; readers refuse newer ones. */
export const CHECKPOINT_FORMAT = 1;
export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'weights.safetensors';

/** `backbone`: a plain ResNet (ImageNet or fine-tuned classifier); the others are hashing models. */
export type CheckpointMethod = 'backbone' | 'srlh' | 'semicon';
export const CHECKPOINT_METHODS: readonly CheckpointMethod[] = ['backbone', 'srlh', 'semicon'];
export { EVAL_TRANSFORMS };

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export interface DatasetInfo {
  /** `cub`, `aircraft`, ... (datasets.md), or another name for outside sources such as `imagenet`. */
  name: string;
  root: string | null;
}

/** Where converted weights came from. */
export interface CheckpointSource {
  file: string;
  /** `legacy-pickle`, `zip`, `safetensors`, ... */
  format: string;
  sha256: string;
}

/** Enough to resume training (`--resume`) and to report how the weights were obtained. */
export interface TrainingState {
  /** Epochs completed. */
  epoch: number;
  /** Epochs planned. */
  epochs: number;
  /** Optimiser steps taken. */
  step: number;
  seed: number;
  /** The run's generator state after `epoch` epochs (Rng.state()), or null. */
  rngState: number[] | null;
  complete: boolean;
  /** Best validation mAP so far, or null. */
  bestMap: number | null;
  /** Hyper-parameters and whatever else the training loop needs to resume. */
  hyper: { [key: string]: JsonValue };
}

export interface CheckpointConfig {
  format: typeof CHECKPOINT_FORMAT;
  /** `fgh <version>`. */
  producer: string;
  method: CheckpointMethod;
  arch: ResNetArch;
  /** Code length of a hashing model; null for a backbone. */
  bits: number | null;
  /** Outputs of the classifier (`fc` for a backbone, the class count of a hashing model), or null. */
  classes: number | null;
  /** Side of the square network input in pixels. */
  inputSize: number;
  /** Normalisation: (x/255 - mean) / std per RGB channel. */
  mean: number[];
  std: number[];
  /** Eval transform the model expects (see datasets.md). */
  transform: EvalTransform;
  dataset: DatasetInfo | null;
  source: CheckpointSource | null;
  training: TrainingState | null;
  /** SEMICON only: the attention mask's exponent when not the authors' 0.15. */
  attentionAlpha?: number;
}

/** A config with the usual defaults: ImageNet normalisation, 224 px, the method's eval transform. */
export function newCheckpointConfig(c: Pick<CheckpointConfig, 'method' | 'arch'> & Partial<CheckpointConfig>): CheckpointConfig {
  return canonicalConfig({
    format: CHECKPOINT_FORMAT,
    producer: `${PRODUCER_NAME} ${packageVersion()}`,
    bits: null,
    classes: null,
    inputSize: 224,
    mean: [...IMAGENET_MEAN],
    std: [...IMAGENET_STD],
    transform: c.method === 'srlh' ? 'resize-224' : 'resize-256-centercrop-224',
    dataset: null,
    source: null,
    training: null,
    ...c,
  });
}

/** The same config with its keys in the documented order (for a readable config.json). */
function canonicalConfig(c: CheckpointConfig): CheckpointConfig {
  const { format, producer, method, arch, bits, classes, inputSize, mean, std, transform, dataset, source, training, ...rest } = c;
  return { format, producer, method, arch, bits, classes, inputSize, mean, std, transform, dataset, source, training, ...rest };
}

type Check = (v: unknown) => boolean;
const isInt: Check = (v) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isPosInt: Check = (v) => isInt(v) && (v as number) > 0;
const isNum: Check = (v) => typeof v === 'number' && Number.isFinite(v);
const isStr: Check = (v) => typeof v === 'string';
const isBool: Check = (v) => typeof v === 'boolean';
const nullable = (c: Check): Check => (v) => v === null || c(v);
const oneOf = (xs: readonly string[]): Check => (v) => typeof v === 'string' && xs.includes(v);
const isObj: Check = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);
const triple: Check = (v) => Array.isArray(v) && v.length === 3 && v.every(isNum);

function checkFields(obj: Record<string, unknown>, spec: Record<string, [Check, string]>, where: string, prefix = ''): void {
  for (const [key, [check, what]] of Object.entries(spec)) {
    if (!(key in obj)) throw new FghError(`${where}: missing field '${prefix}${key}'`);
    if (!check(obj[key])) throw new FghError(`${where}: field '${prefix}${key}' must be ${what}, got ${JSON.stringify(obj[key])}`);
  }
}

/** Checks a parsed config.json; `where` names the file in errors. */
export function validateCheckpointConfig(raw: unknown, where: string): CheckpointConfig {
  if (!isObj(raw)) throw new FghError(`${where}: not a JSON object`);
  const c = raw as Record<string, unknown>;
  if (!('format' in c)) throw new FghError(`${where}: missing field 'format'`);
  if (!isPosInt(c.format)) throw new FghError(`${where}: field 'format' must be a positive integer, got ${JSON.stringify(c.format)}`);
  if ((c.format as number) > CHECKPOINT_FORMAT) throw new FghError(`${where}: checkpoint format ${c.format} is newer than this fgh reads (${CHECKPOINT_FORMAT}); upgrade fgh`);
  checkFields(
    c,
    {
      producer: [isStr, 'a string'],
      method: [oneOf(CHECKPOINT_METHODS), CHECKPOINT_METHODS.join('|')],
      arch: [oneOf(RESNET_ARCHS), RESNET_ARCHS.join('|')],
      bits: [nullable(isPosInt), 'a positive integer or null'],
      classes: [nullable(isPosInt), 'a positive integer or null'],
      inputSize: [isPosInt, 'a positive integer'],
      mean: [triple, 'three numbers'],
      std: [triple, 'three numbers'],
      transform: [oneOf(EVAL_TRANSFORMS), EVAL_TRANSFORMS.join('|')],
      dataset: [nullable(isObj), 'an object or null'],
      source: [nullable(isObj), 'an object or null'],
      training: [nullable(isObj), 'an object or null'],
    },
    where,
  );
  if (c.attentionAlpha !== undefined && !(isNum(c.attentionAlpha) && (c.attentionAlpha as number) > 0)) throw new FghError(`${where}: field 'attentionAlpha' must be a positive number, got ${JSON.stringify(c.attentionAlpha)}`);
  if (c.method !== 'backbone' && c.bits === null) throw new FghError(`${where}: a ${c.method} checkpoint needs 'bits'`);
  if (c.dataset) checkFields(c.dataset as Record<string, unknown>, { name: [isStr, 'a string'], root: [nullable(isStr), 'a string or null'] }, where, 'dataset.');
  if (c.source) checkFields(c.source as Record<string, unknown>, { file: [isStr, 'a string'], format: [isStr, 'a string'], sha256: [isStr, 'a string'] }, where, 'source.');
  if (c.training) {
    checkFields(
      c.training as Record<string, unknown>,
      {
        epoch: [isInt, 'a non-negative integer'],
        epochs: [isInt, 'a non-negative integer'],
        step: [isInt, 'a non-negative integer'],
        seed: [isNum, 'a number'],
        rngState: [nullable((v) => Array.isArray(v) && v.every(isNum)), 'an array of numbers or null'],
        complete: [isBool, 'true or false'],
        bestMap: [nullable(isNum), 'a number or null'],
        hyper: [isObj, 'an object'],
      },
      where,
      'training.',
    );
  }
  return c as unknown as CheckpointConfig;
}

async function statOrNull(p: string): Promise<import('node:fs').Stats | null> {
  try {
    return await fsp.stat(p);
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return null;
    throw new FghError(`${p}: ${errorMessage(e)}`);
  }
}

/** Reads and checks DIR/config.json. */
/**
 * Puts back a checkpoint whose replacement was killed between its two renames (writeCheckpoint
 * moves the old directory to `.NAME.PID.TAG.old`, then the new one in from `.NAME.PID.TAG.tmp`):
 * with the directory missing, the new one goes in if it was complete (config.json is written
 * last), otherwise the old one goes back; an `.old` left after a completed swap is removed. Only
 * the leftovers of processes no longer running are touched. Returns what it did, for the log.
 */
export function recoverInterruptedSave(dir: string): string | null {
  const target = path.resolve(dir);
  const parent = path.dirname(target);
  const base = path.basename(target).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const pattern = new RegExp(`^\\.${base}\\.(\\d+)\\.([0-9a-f]+)\\.old$`);
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch {
    return null;
  }
  let done: string | null = null;
  for (const name of names) {
    const m = pattern.exec(name);
    const pid = Number(m?.[1]);
    if (!m || !Number.isSafeInteger(pid) || pid === process.pid || processAlive(pid)) continue;
    const old = path.join(parent, name);
    if (existsSync(target)) {
      rmSync(old, { recursive: true, force: true });
      continue;
    }
    const tmp = path.join(parent, name.replace(/\.old$/, '.tmp'));
    if (existsSync(path.join(tmp, CONFIG_FILE))) {
      renameSync(tmp, target);
      rmSync(old, { recursive: true, force: true });
      done = `${dir}: finished a save that was interrupted while replacing the checkpoint`;
    } else {
      renameSync(old, target);
      done = `${dir}: put the previous checkpoint back after an interrupted save`;
    }
  }
  return done;
}

export async function readCheckpointConfig(dir: string): Promise<CheckpointConfig> {
  const restored = recoverInterruptedSave(dir);
  if (restored) process.stderr.write(`note: ${restored}\n`);
  const st = await statOrNull(dir);
  if (!st) throw new FghError(`${dir}: no such checkpoint directory`);
  if (!st.isDirectory()) throw new FghError(`${dir}: not a checkpoint directory but a file (convert PyTorch weights with fgh convert-weights)`);
  const file = path.join(dir, CONFIG_FILE);
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') throw new FghError(`${dir}: not a checkpoint (no ${CONFIG_FILE})`);
    throw new FghError(`${file}: cannot read: ${errorMessage(e)}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new FghError(`${file}: bad JSON: ${errorMessage(e)}`);
  }
  return validateCheckpointConfig(raw, file);
}

export interface Checkpoint {
  dir: string;
  config: CheckpointConfig;
  /** In file order; `dtype` says float32 or int64 (num_batches_tracked). */
  tensors: Map<string, LoadedTensor>;
}

export async function readCheckpoint(dir: string): Promise<Checkpoint> {
  const config = await readCheckpointConfig(dir);
  const weights = path.join(dir, WEIGHTS_FILE);
  if (!(await statOrNull(weights))) throw new FghError(`${dir}: not a complete checkpoint (no ${WEIGHTS_FILE})`);
  const { tensors } = await readSafetensors(weights);
  return { dir, config, tensors };
}

export interface WriteCheckpointOptions {
  /** More files to place in the checkpoint, written in the same atomic step (name -> content). */
  extraFiles?: Record<string, string | Uint8Array>;
}

export interface WrittenCheckpoint {
  dir: string;
  tensors: number;
  /** Size of weights.safetensors. */
  bytes: number;
}

async function fsyncDir(dir: string): Promise<void> {
  // Makes the new entries durable; not every platform can open a directory, so best effort.
  try {
    const fh = await fsp.open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    /* best effort */
  }
}

async function writeSynced(file: string, data: string | Uint8Array): Promise<void> {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  await writeChunks(file, [bytes]);
}

/**
 * Writes a checkpoint directory atomically. DIR may be absent, empty, or an existing checkpoint
 * (it is replaced); anything else is refused so that a wrong --out cannot delete a directory.
 */
export async function writeCheckpoint(
  dir: string,
  config: CheckpointConfig,
  tensors: ReadonlyMap<string, WritableTensor>,
  opts: WriteCheckpointOptions = {},
): Promise<WrittenCheckpoint> {
  validateCheckpointConfig(JSON.parse(JSON.stringify(config)), `checkpoint config for ${dir}`);
  const target = path.resolve(dir);
  const parent = path.dirname(target);
  aboutFile(dir, () => makeDirSync(parent));
  // What a save killed midway left: the swap finished or undone first, then its .tmp folder
  // removed; a running save's stays.
  const restored = recoverInterruptedSave(target);
  if (restored) process.stderr.write(`note: ${restored}\n`);
  removeStaleTemps(target);
  const existing = await statOrNull(target);
  let replace = false;
  if (existing) {
    if (!existing.isDirectory()) throw new FghError(`${dir}: exists and is a file, not a checkpoint directory`);
    const names = await fsp.readdir(target);
    if (names.length && !names.includes(CONFIG_FILE)) throw new FghError(`${dir}: exists and is not a checkpoint (no ${CONFIG_FILE}); refusing to replace it`);
    replace = names.length > 0;
  }
  for (const name of Object.keys(opts.extraFiles ?? {})) {
    if (name === CONFIG_FILE || name === WEIGHTS_FILE || name.includes('/') || name.includes(path.sep) || name.startsWith('.')) {
      throw new FghError(`checkpoint extra file name '${name}' is not allowed`);
    }
  }
  const tag = `${process.pid}.${randomBytes(4).toString('hex')}`;
  const base = path.basename(target);
  const tmp = path.join(parent, `.${base}.${tag}.tmp`);
  try {
    await fsp.mkdir(tmp);
    const chunks = safetensorsChunks(tensors);
    const bytes = await writeChunks(path.join(tmp, WEIGHTS_FILE), chunks);
    for (const [name, data] of Object.entries(opts.extraFiles ?? {})) await writeSynced(path.join(tmp, name), data);
    // config.json last: its presence marks a complete checkpoint.
    await writeSynced(path.join(tmp, CONFIG_FILE), `${JSON.stringify(canonicalConfig(config), null, 2)}\n`);
    await fsyncDir(tmp);
    if (replace) {
      // Directories cannot be swapped in one step: move the old one aside, move the new one in,
      // and put the old one back if that fails.
      const old = path.join(parent, `.${base}.${tag}.old`);
      await fsp.rename(target, old);
      killPoint('swap');
      try {
        await fsp.rename(tmp, target);
      } catch (e) {
        await fsp.rename(old, target);
        throw e;
      }
      await fsp.rm(old, { recursive: true, force: true });
    } else {
      // rename(2) replaces an empty directory atomically.
      await fsp.rename(tmp, target);
    }
    await fsyncDir(parent);
    return { dir, tensors: tensors.size, bytes };
  } catch (e) {
    await fsp.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    // The temporary's name means nothing to the user; what went wrong does.
    const why = isErrnoError(e) ? describeFsProblem(e, e.path === undefined || e.path.startsWith(tmp) ? dir : undefined) : errorMessage(e);
    throw new FghError(`${dir}: cannot write checkpoint: ${why}`, { cause: e });
  }
}

/** A model's checkpoint tensors: its state dict in PyTorch names and layouts. */
export function modelTensors(model: Module): Map<string, WritableTensor> {
  return stateDict(model);
}

/** Writes `model`'s weights with `config` as a checkpoint. */
export async function saveModelCheckpoint(dir: string, config: CheckpointConfig, model: Module, opts?: WriteCheckpointOptions): Promise<WrittenCheckpoint> {
  return writeCheckpoint(dir, config, modelTensors(model), opts);
}

/** Loads a checkpoint's weights into `model` (strict unless told otherwise). */
export async function loadModelCheckpoint(dir: string, model: Module, opts: LoadOptions = { strict: true }): Promise<{ config: CheckpointConfig; report: LoadReport }> {
  const ckpt = await readCheckpoint(dir);
  let report: LoadReport;
  try {
    report = loadStateDict(model, ckpt.tensors, opts);
  } catch (e) {
    if (e instanceof FghError) throw new FghError(`${dir}: ${e.message}`);
    throw e;
  }
  return { config: ckpt.config, report };
}
