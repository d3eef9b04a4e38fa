import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import type { SgdStepAttrs } from '../fused-kernels.js';
import { output, requireFloats, type ArrayStore } from './delegate.js';

/**
 * fgh's SGD_STEP (src/backend/fused-kernels.ts) as one onnxruntime graph: the composite form is
 * six to eight elementwise kernels a parameter, each allocating its result; the same float32
 * operations in one graph hand back only the new parameter and buffer.
 */
export const sgdStepKernel: KernelFunc = ({ inputs, attrs, backend }) => {
  const store = backend as unknown as ArrayStore;
  const { param, grad, buf } = inputs as Record<string, TensorInfo>;
  const a = attrs as unknown as SgdStepAttrs;
  const shape = [...param!.shape];
  const ins = requireFloats(store, 'FghSgdStep', param!, grad!, buf!);
  const key = `FghSgdStep:${shape}:${a.lr}:${a.momentum}:${a.weightDecay}:${a.nesterov ? 1 : 0}`;
  const outs = store.engine.run(key, (g) => {
    const [p, gr, b] = [g.input('param', 'float32', shape), g.input('grad', 'float32', shape), g.input('buf', 'float32', shape)];
    const scalar = (name: string, v: number): string => g.floatConst(name, [v], []);
    const d = a.weightDecay ? g.op('Add', [gr, g.op('Mul', [p, scalar('weightDecay', a.weightDecay)])]) : gr;
    const nb = g.op('Add', [g.op('Mul', [b, scalar('momentum', a.momentum)]), d]);
    const step = a.nesterov ? g.op('Add', [d, g.op('Mul', [nb, scalar('momentum2', a.momentum)])]) : nb;
    const np = g.op('Sub', [p, g.op('Mul', [step, scalar('lr', a.lr)])]);
    output(g, np, shape, 'float32', 'newParam');
    output(g, nb, shape, 'float32', 'newBuf');
  }, ins);
  return outs.map((o) => store.store(o.shape, 'float32', o.data as Float32Array));
};

/**
 * SGD_STEP in place on float32 arrays from element `from` on, with the kernel's operations and
 * order. One loop per case (nesterov, weight decay or not): a test inside the loop cost a third
 * of its time. (sgdStepSimd in src/backend/simd does whole groups of four first where it can.)
 */
export function sgdLoop(p: Float32Array, g: Float32Array, b: Float32Array, a: SgdStepAttrs, from = 0): void {
  const f = Math.fround;
  const [lr, m, wd] = [f(a.lr), f(a.momentum), f(a.weightDecay)];
  const n = p.length;
  if (a.nesterov && wd) {
    for (let i = from; i < n; i++) {
      const pi = p[i]!;
      const d = f(g[i]! + f(pi * wd));
      const nb = f(f(b[i]! * m) + d);
      b[i] = nb;
      p[i] = f(pi - f(f(d + f(nb * m)) * lr));
    }
  } else if (a.nesterov) {
    for (let i = from; i < n; i++) {
      const d = g[i]!;
      const nb = f(f(b[i]! * m) + d);
      b[i] = nb;
      p[i] = f(p[i]! - f(f(d + f(nb * m)) * lr));
    }
  } else if (wd) {
    for (let i = from; i < n; i++) {
      const pi = p[i]!;
      const d = f(g[i]! + f(pi * wd));
      const nb = f(f(b[i]! * m) + d);
      b[i] = nb;
      p[i] = f(pi - f(nb * lr));
    }
  } else {
    for (let i = from; i < n; i++) {
      const nb = f(f(b[i]! * m) + g[i]!);
      b[i] = nb;
      p[i] = f(p[i]! - f(nb * lr));
    }
  }
}
