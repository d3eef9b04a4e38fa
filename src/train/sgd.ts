import { tf } from '../backend/tf.js';
import type { NamedTensorMap, Tensor, Variable } from '../backend/tf.js';
import { inPlaceSgdStep, SGD_STEP, type SgdStepAttrs } from '../backend/fused-kernels.js';
import type { Param } from '../models/module.js';
import { FghError } from '../util/errors.js';
import type { WritableTensor } from '../weights/safetensors.js';
import { ParamOptimizer } from './optimizer.js';

export type { Optimizer } from './optimizer.js';

/**
 * torch.optim.SGD, step for step: weight decay is added to the gradient, the momentum buffer
 * starts as the first gradient (no dampening), and the Nesterov form uses g + momentum * buf.
 * Buffers are keyed by the parameters' PyTorch names so that they can be saved and resumed.
 */
export interface SgdOptions {
  lr: number;
  momentum?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

export class Sgd extends ParamOptimizer {
  private readonly momentum: number;
  private readonly weightDecay: number;
  private readonly nesterov: boolean;
  private readonly buffers = new Map<string, Variable>();

  constructor(params: readonly Param[], opts: SgdOptions) {
    super(params, opts.lr);
    this.momentum = opts.momentum ?? 0;
    this.weightDecay = opts.weightDecay ?? 0;
    this.nesterov = opts.nesterov ?? false;
    if (this.nesterov && this.momentum <= 0) throw new FghError('Nesterov momentum requires a momentum > 0');
  }

  /** Applies one step; `grads` is keyed by variable name, as tf.variableGrads returns them. */
  step(grads: NamedTensorMap): void {
    for (const [p, g] of this.withGradients(grads)) {
      const existing = this.momentum ? this.buffers.get(p.name) : undefined;
      if (existing && tf.getKernel(SGD_STEP, tf.getBackend())) {
        // The same float32 operations as below, as one kernel (src/backend/fused-kernels.ts), in
        // place where the backend can.
        const attrs: SgdStepAttrs = { lr: this.lr, momentum: this.momentum, weightDecay: this.weightDecay, nesterov: this.nesterov };
        if (inPlaceSgdStep(tf.backend())?.sgdStepInPlace(p.variable, g, existing, attrs)) continue;
        const [param, buf] = tf.engine().runKernel(SGD_STEP, { param: p.variable, grad: g, buf: existing }, attrs as unknown as tf.NamedAttrMap) as Tensor[];
        existing.assign(buf!);
        p.variable.assign(param!);
        tf.dispose([param!, buf!]);
        continue;
      }
      tf.tidy(() => {
        let d: Tensor = this.weightDecay ? tf.add(g, tf.mul(p.variable, this.weightDecay)) : g;
        if (this.momentum) {
          const buf = this.buffers.get(p.name);
          if (!buf) {
            this.buffers.set(p.name, tf.variable(tf.clone(d), false));
          } else {
            buf.assign(tf.add(tf.mul(buf, this.momentum), d));
          }
          const b = this.buffers.get(p.name)!;
          d = this.nesterov ? tf.add(d, tf.mul(b, this.momentum)) : b;
        }
        p.variable.assign(tf.sub(p.variable, tf.mul(d, this.lr)));
      });
    }
    this.steps++;
  }

  /** Momentum buffers (tfjs layout, as the variables), named `momentum.<param>`, plus the step count. */
  exportState(): Map<string, WritableTensor> {
    const out = new Map<string, WritableTensor>();
    for (const p of this.params) {
      const b = this.buffers.get(p.name);
      if (!b) continue;
      const data = b.dataSync() as Float32Array;
      out.set(`momentum.${p.name}`, { shape: b.shape, data: Float32Array.from(data) });
    }
    out.set('sgd.steps', { shape: [1], data: Float32Array.of(this.steps) });
    return out;
  }

  importState(state: ReadonlyMap<string, WritableTensor>): void {
    for (const p of this.params) {
      const t = state.get(`momentum.${p.name}`);
      if (!t) continue;
      if (t.data.length !== p.variable.size) throw new FghError(`optimiser state for ${p.name} has ${t.data.length} values, expected ${p.variable.size}`);
      this.buffers.get(p.name)?.dispose();
      this.buffers.set(p.name, tf.tidy(() => tf.variable(tf.tensor(t.data, p.variable.shape), false)));
    }
    this.steps = state.get('sgd.steps')?.data[0] ?? 0;
  }

  dispose(): void {
    for (const b of this.buffers.values()) b.dispose();
    this.buffers.clear();
  }
}
