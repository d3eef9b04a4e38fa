import type { NamedTensorMap } from '@tensorflow/tfjs-core';
import { hwioToOihw, type Module } from '../../src/models/module.js';
import type { TorchTensor } from '../../src/models/state-dict.js';
import { maxAbs, maxAbsDiff, normRelativeError, relativeError } from './tensors.js';

export interface GradientReport {
  /** Parameters whose gradient exists on one side only. */
  presenceMismatch: string[];
  worstMax: number;
  worstMaxName: string;
  worstNorm: number;
  worstNormName: string;
  /** Median over tensors of the max-based relative error. */
  medianMax: number;
  compared: number;
  /** Max abs difference of the running statistics after the forward. */
  worstStat: number;
  /** The worst running statistic's max abs difference relative to its own largest entry. */
  worstStatRel: number;
  worstStatName: string;
  /** Largest |entry| of the reference's running statistics. */
  statScale: number;
}

/**
 * Compares tfjs gradients (keyed by variable name) with a reference bundle's `grad.<torch name>`
 * entries, and running statistics with `state.<torch name>`. Float32 rounding can flip a ReLU mask
 * at a near-tie and change single gradient entries, so callers bound the norm-wise error of every
 * tensor and the median of the max-based errors.
 */
export function compareGradients(model: Module, grads: NamedTensorMap, ref: Map<string, TorchTensor>): GradientReport {
  const r: GradientReport = { presenceMismatch: [], worstMax: 0, worstMaxName: '', worstNorm: 0, worstNormName: '', medianMax: 0, compared: 0, worstStat: 0, worstStatRel: 0, worstStatName: '', statScale: 0 };
  const maxErrors: number[] = [];
  for (const p of model.parameters()) {
    const stat = ref.get(`state.${p.name}`);
    if (stat) {
      r.worstStat = Math.max(r.worstStat, maxAbsDiff(p.variable.dataSync(), stat.data));
      r.statScale = Math.max(r.statScale, maxAbs(stat.data));
      const rel = relativeError(p.variable.dataSync(), stat.data);
      if (rel > r.worstStatRel) [r.worstStatRel, r.worstStatName] = [rel, p.name];
    }
    if (!p.trainable) continue;
    const want = ref.get(`grad.${p.name}`);
    const g = grads[p.variable.name];
    if ((g === undefined) !== (want === undefined)) r.presenceMismatch.push(p.name);
    if (!want || !g) continue;
    const ours = p.layout === 'conv' ? hwioToOihw(g.dataSync() as Float32Array, p.torchShape) : (g.dataSync() as Float32Array);
    const e = relativeError(ours, want.data);
    if (e > r.worstMax) [r.worstMax, r.worstMaxName] = [e, p.name];
    const n = normRelativeError(ours, want.data);
    if (n > r.worstNorm) [r.worstNorm, r.worstNormName] = [n, p.name];
    maxErrors.push(e);
  }
  maxErrors.sort((a, b) => a - b);
  r.medianMax = maxErrors[maxErrors.length >> 1] ?? 0;
  r.compared = maxErrors.length;
  return r;
}

export function describeGradients(r: GradientReport): string {
  return `${r.compared} gradients: worst max-based rel err ${r.worstMax.toExponential(2)} (${r.worstMaxName}), worst norm-wise ${r.worstNorm.toExponential(2)} (${r.worstNormName}), median max-based ${r.medianMax.toExponential(2)}; running stats max abs diff ${r.worstStat.toExponential(2)}, worst relative ${r.worstStatRel.toExponential(2)} (${r.worstStatName}), largest entry ${r.statScale.toFixed(2)}`;
}
