import { tf } from '../backend/tf.js';
import type { NamedTensorMap, Tensor, Variable } from '../backend/tf.js';
import type { Param } from '../models/module.js';
import { FghError } from '../util/errors.js';
import type { WritableTensor } from '../weights/safetensors.js';
import { ParamOptimizer } from './optimizer.js';

/**
 * torch.optim.Adam (1.13; no AMSGrad), step for step: weight decay is added to the gradient (L2,
 * not AdamW), both moments start at zero, and the update is lr / (1 - beta1^t) * m /
 * (sqrt(v) / sqrt(1 - beta2^t) + eps). SEMICON's run.py offers it as --optim Adam.
 */
export interface AdamOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
}

export class Adam extends ParamOptimizer {
  private readonly beta1: number;
  private readonly beta2: number;
  private readonly eps: number;
  private readonly weightDecay: number;
  private readonly moments = new Map<string, { m: Variable; v: Variable }>();

  constructor(params: readonly Param[], opts: AdamOptions) {
    super(params, opts.lr);
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0;
    if (!(this.beta1 >= 0 && this.beta1 < 1 && this.beta2 >= 0 && this.beta2 < 1)) throw new FghError('Adam betas must be in [0, 1)');
  }

  step(grads: NamedTensorMap): void {
    const t = this.steps + 1;
    const stepSize = this.lr / (1 - this.beta1 ** t);
    const bias2Sqrt = Math.sqrt(1 - this.beta2 ** t);
    for (const [p, g] of this.withGradients(grads)) {
      let s = this.moments.get(p.name);
      if (!s) {
        // tidy: tf.variable copies its initial value, which would otherwise stay allocated.
        s = tf.tidy(() => ({ m: tf.variable(tf.zerosLike(p.variable), false), v: tf.variable(tf.zerosLike(p.variable), false) }));
        this.moments.set(p.name, s);
      }
      const { m, v } = s;
      tf.tidy(() => {
        const d: Tensor = this.weightDecay ? tf.add(g, tf.mul(p.variable, this.weightDecay)) : g;
        m.assign(tf.add(tf.mul(m, this.beta1), tf.mul(d, 1 - this.beta1)));
        v.assign(tf.add(tf.mul(v, this.beta2), tf.mul(tf.mul(d, d), 1 - this.beta2)));
        const denom = tf.add(tf.div(tf.sqrt(v), bias2Sqrt), this.eps);
        p.variable.assign(tf.sub(p.variable, tf.mul(tf.div(m, denom), stepSize)));
      });
    }
    this.steps = t;
  }

  /** Both moments (tfjs layout, as the variables), `adam_m.<param>` and `adam_v.<param>`, plus the step count. */
  exportState(): Map<string, WritableTensor> {
    const out = new Map<string, WritableTensor>();
    for (const p of this.params) {
      const s = this.moments.get(p.name);
      if (!s) continue;
      out.set(`adam_m.${p.name}`, { shape: s.m.shape, data: Float32Array.from(s.m.dataSync() as Float32Array) });
      out.set(`adam_v.${p.name}`, { shape: s.v.shape, data: Float32Array.from(s.v.dataSync() as Float32Array) });
    }
    out.set('adam.steps', { shape: [1], data: Float32Array.of(this.steps) });
    return out;
  }

  importState(state: ReadonlyMap<string, WritableTensor>): void {
    for (const p of this.params) {
      const m = state.get(`adam_m.${p.name}`);
      const v = state.get(`adam_v.${p.name}`);
      if (!m || !v) continue;
      for (const x of [m, v]) if (x.data.length !== p.variable.size) throw new FghError(`optimiser state for ${p.name} has ${x.data.length} values, expected ${p.variable.size}`);
      const old = this.moments.get(p.name);
      if (old) tf.dispose([old.m, old.v]);
      this.moments.set(p.name, tf.tidy(() => ({ m: tf.variable(tf.tensor(m.data, p.variable.shape), false), v: tf.variable(tf.tensor(v.data, p.variable.shape), false) })));
    }
    this.steps = state.get('adam.steps')?.data[0] ?? 0;
  }

  dispose(): void {
    for (const s of this.moments.values()) tf.dispose([s.m, s.v]);
    this.moments.clear();
  }
}
