import { tf } from '../backend/tf.js';
import { FghError } from '../util/errors.js';
import { oihwToHwio, torchValue, type Module } from './module.js';

/** A tensor as PyTorch lays it out (NCHW/OIHW), converted to float32. */
export interface TorchTensor {
  shape: number[];
  data: Float32Array;
}

export interface LoadReport {
  loaded: string[];
  /** Parameters of the model that the state dict did not have. */
  missing: string[];
  /** Entries of the state dict that the model does not have. */
  unexpected: string[];
}

export interface LoadOptions {
  /** Fail when anything is missing or unexpected (shape mismatches always fail). */
  strict?: boolean;
  /** Map a state-dict name to the model's name (or null to ignore the entry). */
  rename?: (name: string) => string | null;
}

/**
 * Copies PyTorch tensors into a model by name, converting layouts (OIHW -> HWIO).
 * Shape mismatches fail with one line that names every mismatched tensor.
 */
export function loadStateDict(model: Module, tensors: ReadonlyMap<string, TorchTensor>, opts: LoadOptions = {}): LoadReport {
  const params = new Map(model.parameters().map((p) => [p.name, p]));
  const byModelName = new Map<string, TorchTensor>();
  const unexpected: string[] = [];
  for (const [name, t] of tensors) {
    const target = opts.rename ? opts.rename(name) : name;
    if (target === null) continue;
    if (params.has(target)) byModelName.set(target, t);
    else unexpected.push(name);
  }
  const mismatched: string[] = [];
  for (const [name, t] of byModelName) {
    const p = params.get(name)!;
    if (!sameShape(t.shape, p.torchShape)) mismatched.push(`${name} is [${t.shape}], expected [${p.torchShape}]`);
  }
  if (mismatched.length) throw new FghError(`shape mismatch: ${mismatched.join('; ')}`);
  const missing = [...params.keys()].filter((n) => !byModelName.has(n));
  if (opts.strict && (missing.length || unexpected.length)) {
    const parts: string[] = [];
    if (missing.length) parts.push(`missing ${summarise(missing)}`);
    if (unexpected.length) parts.push(`unexpected ${summarise(unexpected)}`);
    throw new FghError(`state dict does not match the model: ${parts.join('; ')}`);
  }
  for (const [name, t] of byModelName) {
    const p = params.get(name)!;
    const data = p.layout === 'conv' ? oihwToHwio(t.data, p.torchShape) : t.data;
    tf.tidy(() => p.variable.assign(tf.tensor(data, p.variable.shape, 'float32')));
  }
  return { loaded: [...byModelName.keys()], missing, unexpected };
}

/** The model's parameters in PyTorch names and layouts, in registration order. */
export function stateDict(model: Module): Map<string, TorchTensor & { dtype: 'float32' | 'int64' }> {
  const out = new Map<string, TorchTensor & { dtype: 'float32' | 'int64' }>();
  for (const p of model.parameters()) out.set(p.name, { shape: p.torchShape, data: torchValue(p), dtype: p.torchDtype });
  return out;
}


function sameShape(a: number[], b: number[]): boolean {
  // A 0-d tensor and a 1-element 1-d tensor are the same thing for num_batches_tracked.
  const n = (s: number[]) => s.reduce((x, y) => x * y, 1);
  if (a.length === 0 || b.length === 0) return n(a) === n(b);
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function summarise(names: string[]): string {
  return names.length <= 4 ? names.join(', ') : `${names.slice(0, 4).join(', ')} and ${names.length - 4} more`;
}
