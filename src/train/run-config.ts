import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { DATASET_NAMES, type DatasetName } from '../data/types.js';
import { HASH_METHODS, type HashMethod } from '../models/hashing.js';
import { writeFileAtomicSync } from '../util/atomic.js';
import { FghError } from '../util/errors.js';
import { differingKeys, parseHyper, type HyperField, type HyperValue } from './hyper.js';
import { RECIPES, recipeDefaults, type RecipeName } from './recipes.js';
import { SEMICON_FIELDS } from './semicon-hyper.js';
import { SRLH_FIELDS } from './srlh-hyper.js';

/**
 * Everything that defines a `fgh train` run, resolved from layers (the recipe's defaults, then a
 * --config file, then flags) and written to the run folder as train-config.json before the first
 * step. --resume reads it back, so a run is reproducible from its folder alone; the same file is a
 * valid --config for a new run.
 */

export const RUN_CONFIG_FILE = 'train-config.json';
export const RUN_CONFIG_FORMAT = 'fgh-train-config/1';

export interface RunConfig {
  format: typeof RUN_CONFIG_FORMAT;
  method: HashMethod;
  dataset: DatasetName;
  root: string;
  bits: number[];
  size: number;
  init: string | null;
  recipe: RecipeName;
  hyper: Record<string, HyperValue>;
}

/** What a layer may set: any part of a RunConfig, hyper partially. */
export type RunConfigLayer = Partial<Omit<RunConfig, 'format'>>;

export function methodFields(method: HashMethod): readonly HyperField[] {
  return method === 'srlh' ? SRLH_FIELDS : SEMICON_FIELDS;
}

const TOP_KEYS = ['format', 'method', 'dataset', 'root', 'bits', 'size', 'init', 'recipe', 'hyper'] as const;

/** A --config file or a saved train-config.json: checked key by key, every field optional. */
export function parseRunConfigLayer(raw: unknown, where: string): RunConfigLayer {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new FghError(`${where}: expected a JSON object`);
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!(TOP_KEYS as readonly string[]).includes(k)) throw new FghError(`${where}: unknown key "${k}" (known: ${TOP_KEYS.join(', ')})`);
  if (o.format !== undefined && o.format !== RUN_CONFIG_FORMAT) throw new FghError(`${where}: format must be "${RUN_CONFIG_FORMAT}", got ${JSON.stringify(o.format)}`);
  const layer: RunConfigLayer = {};
  if (o.method !== undefined) {
    if (!(HASH_METHODS as readonly unknown[]).includes(o.method)) throw new FghError(`${where}: method must be ${HASH_METHODS.join(' or ')}`);
    layer.method = o.method as HashMethod;
  }
  if (o.dataset !== undefined) {
    if (!(DATASET_NAMES as readonly unknown[]).includes(o.dataset)) throw new FghError(`${where}: dataset must be one of ${DATASET_NAMES.join(', ')}`);
    layer.dataset = o.dataset as DatasetName;
  }
  if (o.root !== undefined) {
    if (typeof o.root !== 'string' || !o.root) throw new FghError(`${where}: root must be a directory path`);
    layer.root = o.root;
  }
  if (o.bits !== undefined) {
    if (!Array.isArray(o.bits) || o.bits.length === 0 || !o.bits.every((b) => Number.isInteger(b) && b > 0)) throw new FghError(`${where}: bits must be a non-empty list of positive integers`);
    layer.bits = o.bits as number[];
  }
  if (o.size !== undefined) {
    if (!Number.isInteger(o.size) || (o.size as number) <= 0) throw new FghError(`${where}: size must be a positive integer`);
    layer.size = o.size as number;
  }
  if (o.init !== undefined) {
    if (o.init !== null && typeof o.init !== 'string') throw new FghError(`${where}: init must be a checkpoint path or null`);
    layer.init = o.init as string | null;
  }
  if (o.recipe !== undefined) {
    if (!(RECIPES as readonly unknown[]).includes(o.recipe)) throw new FghError(`${where}: recipe must be ${RECIPES.join(' or ')}`);
    layer.recipe = o.recipe as RecipeName;
  }
  if (o.hyper !== undefined) {
    if (typeof o.hyper !== 'object' || o.hyper === null || Array.isArray(o.hyper)) throw new FghError(`${where}: hyper must be an object`);
    // Checked against the method's fields once the method is known (resolveRunConfig).
    layer.hyper = o.hyper as Record<string, HyperValue>;
  }
  return layer;
}

export function readRunConfigLayer(file: string): RunConfigLayer {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new FghError(`${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : `not valid JSON (${(e as Error).message})`}`);
  }
  return parseRunConfigLayer(raw, file);
}

/** The recipe when none is named: from scratch without --init, the reference's with it. */
export function defaultRecipe(init: string | null | undefined): RecipeName {
  return init ? 'reference' : 'scratch';
}

/**
 * Layers applied in order (later wins; hyper merged key by key). `where` names each layer in
 * errors. Dataset, root and bits may stay unset for --print-config.
 */
export function resolveRunConfig(layers: { layer: RunConfigLayer; where: string }[]): Omit<RunConfig, 'dataset' | 'root' | 'bits'> & Partial<Pick<RunConfig, 'dataset' | 'root' | 'bits'>> {
  const merged: RunConfigLayer = {};
  for (const { layer } of layers) Object.assign(merged, { ...layer, hyper: undefined });
  const method = merged.method;
  if (!method) throw new FghError('--method is required (or "method" in --config)');
  const init = merged.init ?? null;
  const recipe = merged.recipe ?? defaultRecipe(init);
  const fields = methodFields(method);
  const hyper: Record<string, HyperValue> = { ...recipeDefaults(method, recipe) };
  for (const { layer, where } of layers) if (layer.hyper) Object.assign(hyper, parseHyper(fields, layer.hyper, `${where} (${method} hyper)`));
  const out = { format: RUN_CONFIG_FORMAT, method, recipe, init, size: merged.size ?? 224, hyper } as ReturnType<typeof resolveRunConfig>;
  if (merged.dataset) out.dataset = merged.dataset;
  if (merged.root) out.root = merged.root;
  if (merged.bits) out.bits = merged.bits;
  return out;
}

export function completeRunConfig(c: ReturnType<typeof resolveRunConfig>): RunConfig {
  const missing = (['dataset', 'root', 'bits'] as const).filter((k) => c[k] === undefined);
  if (missing.length) throw new FghError(`missing ${missing.map((k) => `--${k}`).join(', ')} (flags or keys of --config)`);
  return { ...c, root: path.resolve(c.root!), ...(c.init ? { init: path.resolve(c.init) } : {}) } as RunConfig;
}

/** Stable key order (the file is read by people and diffed). */
export function runConfigJson(c: RunConfig): string {
  const ordered = { format: c.format, method: c.method, dataset: c.dataset, root: c.root, bits: c.bits, size: c.size, init: c.init, recipe: c.recipe, hyper: c.hyper };
  return `${JSON.stringify(ordered, null, 2)}\n`;
}

export function runConfigPath(out: string): string {
  return path.join(out, RUN_CONFIG_FILE);
}

/** Written with a rename, so a crash leaves the old file or the new one, never half of one. */
export function writeRunConfig(out: string, c: RunConfig): void {
  writeFileAtomicSync(runConfigPath(out), runConfigJson(c));
}

export function readRunConfig(out: string): RunConfig | null {
  const file = runConfigPath(out);
  if (!existsSync(file)) return null;
  const layer = readRunConfigLayer(file);
  return completeRunConfig(resolveRunConfig([{ layer, where: file }]));
}

/** The parts of `wanted` that contradict a saved run's configuration, as "key: saved -> wanted". */
export function conflicts(saved: RunConfig, wanted: RunConfigLayer): string[] {
  const out: string[] = [];
  for (const k of ['method', 'dataset', 'bits', 'size', 'recipe'] as const) {
    if (wanted[k] !== undefined && JSON.stringify(wanted[k]) !== JSON.stringify(saved[k])) out.push(`${k}: ${JSON.stringify(saved[k])} -> ${JSON.stringify(wanted[k])}`);
  }
  if (wanted.root !== undefined && path.resolve(wanted.root) !== saved.root) out.push(`root: ${saved.root} -> ${path.resolve(wanted.root)}`);
  if (wanted.init !== undefined && (wanted.init ? path.resolve(wanted.init) : null) !== saved.init) out.push(`init: ${saved.init} -> ${wanted.init}`);
  if (wanted.hyper) {
    const parsed = parseHyper(methodFields(saved.method), wanted.hyper, 'flags');
    for (const k of differingKeys(parsed, saved.hyper)) out.push(`${k}: ${JSON.stringify(saved.hyper[k])} -> ${JSON.stringify((parsed as Record<string, unknown>)[k])}`);
  }
  return out;
}
