import type { NamedTensorMap, Tensor } from '../backend/tf.js';
import type { Param } from '../models/module.js';
import type { WritableTensor } from '../weights/safetensors.js';

/** What the training loops need of an optimiser (Sgd, Adam). */
export interface Optimizer {
  steps: number;
  readonly learningRate: number;
  setLr(lr: number): void;
  step(grads: NamedTensorMap): void;
  exportState(): Map<string, WritableTensor>;
  importState(state: ReadonlyMap<string, WritableTensor>): void;
  dispose(): void;
}

/** The rate and the lookup from tf.variableGrads' keys (variable names) to parameters, shared by both. */
export abstract class ParamOptimizer implements Optimizer {
  protected lr: number;
  private readonly byVariable = new Map<string, Param>();
  steps = 0;

  constructor(
    protected readonly params: readonly Param[],
    lr: number,
  ) {
    this.lr = lr;
    for (const p of params) this.byVariable.set(p.variable.name, p);
  }

  setLr(lr: number): void {
    this.lr = lr;
  }

  get learningRate(): number {
    return this.lr;
  }

  /** The parameters that `grads` has gradients for, with them. */
  protected *withGradients(grads: NamedTensorMap): Generator<[Param, Tensor]> {
    for (const [vname, g] of Object.entries(grads)) {
      const p = this.byVariable.get(vname);
      if (p) yield [p, g];
    }
  }

  abstract step(grads: NamedTensorMap): void;
  abstract exportState(): Map<string, WritableTensor>;
  abstract importState(state: ReadonlyMap<string, WritableTensor>): void;
  abstract dispose(): void;
}
