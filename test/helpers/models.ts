import { tf } from '../../src/backend/tf.js';
import type { Module } from '../../src/models/module.js';
import type { Rng } from '../../src/util/rng.js';

/**
 * Gives every batch norm non-trivial statistics and affine parameters, as after training, so
 * that eval-mode comparisons and batch-norm folding are exercised on more than identities.
 */
export function perturbBatchNorm(model: Module, rng: Rng): void {
  const bnPrefixes = new Set(model.parameters().filter((p) => p.name.endsWith('.running_mean')).map((p) => p.name.slice(0, -'running_mean'.length)));
  const isBn = (name: string, leaf: string): boolean => name.endsWith(`.${leaf}`) && bnPrefixes.has(name.slice(0, -leaf.length));
  for (const p of model.parameters()) {
    const n = p.variable.size;
    const v = new Float32Array(n);
    if (p.name.endsWith('running_mean')) for (let i = 0; i < n; i++) v[i] = rng.normal() * 0.2;
    else if (p.name.endsWith('running_var')) for (let i = 0; i < n; i++) v[i] = rng.uniform(0.5, 2);
    else if (isBn(p.name, 'weight')) for (let i = 0; i < n; i++) v[i] = rng.uniform(0.5, 1.5);
    else if (isBn(p.name, 'bias')) for (let i = 0; i < n; i++) v[i] = rng.normal() * 0.2;
    else continue;
    p.variable.assign(tf.tensor(v, p.variable.shape));
  }
}
