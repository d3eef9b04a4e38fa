/** How weight-import commands describe a file and its disagreements with a model, in one line. */
import type { Param } from '../models/module.js';
import type { TorchTensor } from '../models/state-dict.js';
import type { WeightsFormat } from './torch-file.js';

export const WEIGHTS_FORMAT_NAMES: Record<WeightsFormat, string> = {
  'legacy-pickle': 'legacy pickle .pth',
  zip: 'zip .pth',
  safetensors: 'safetensors',
};

/** `a, b, c` or `a, b, c and 4 more`. */
export function listNames(names: string[]): string {
  return names.length <= 3 ? names.join(', ') : `${names.slice(0, 3).join(', ')} and ${names.length - 3} more`;
}

/**
 * One line naming every kind of disagreement between a state dict (keyed by the model's names)
 * and the model's parameters: missing, unexpected, shape mismatches; null when they agree.
 */
export function mismatchReport(tensors: ReadonlyMap<string, TorchTensor>, params: Param[]): string | null {
  const byName = new Map(params.map((p) => [p.name, p]));
  const missing = params.filter((p) => !tensors.has(p.name)).map((p) => p.name);
  const unexpected = [...tensors.keys()].filter((n) => !byName.has(n));
  const shapes: string[] = [];
  for (const [name, t] of tensors) {
    const p = byName.get(name);
    if (!p) continue;
    const n = (s: number[]) => s.reduce((a, b) => a * b, 1);
    const same = t.shape.length === 0 || p.torchShape.length === 0 ? n(t.shape) === n(p.torchShape) : t.shape.join() === p.torchShape.join();
    if (!same) shapes.push(`${name} is [${t.shape}], expected [${p.torchShape}]`);
  }
  const parts: string[] = [];
  if (missing.length) parts.push(`missing ${missing.length} (${listNames(missing)})`);
  if (unexpected.length) parts.push(`unexpected ${unexpected.length} (${listNames(unexpected)})`);
  if (shapes.length) parts.push(`${shapes.length} shape mismatch${shapes.length > 1 ? 'es' : ''} (${listNames(shapes)})`);
  return parts.length ? parts.join('; ') : null;
}
