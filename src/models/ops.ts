import { tf } from '../backend/tf.js';
import type { Tensor } from '../backend/tf.js';

/**
 * Computes `fn(...inputs)` as a constant for gradients (PyTorch's `.detach()` / `no_grad`): the
 * ops inside are not taped, so they may include ops without gradients (argmax, top-k), and no
 * gradient flows back to the inputs through this path.
 */
export function detached<T extends Tensor>(fn: (...xs: Tensor[]) => T, ...inputs: Tensor[]): T {
  const f = tf.customGrad((...args: Array<Tensor | tf.GradSaveFunc>) => {
    const xs = args.slice(0, inputs.length) as Tensor[];
    return { value: tf.tidy(() => fn(...xs)), gradFunc: () => xs.map((x) => tf.zerosLike(x)) };
  });
  return f(...inputs) as T;
}

/**
 * Batch norm with batch statistics (training mode) and the closed-form backward
 *   dx = gamma * rstd / N * (N dy - sum(dy) - xhat * sum(dy * xhat)),
 * two reductions and elementwise ops: tfjs's own FusedBatchNorm gradient tiles the batch
 * statistics back to the input's shape, which cost 16% of an sRLH step on wasm.
 * `mean` and `variance` (biased) are x's moments over every axis but the last; they are inputs
 * only so the caller can reuse them for the running statistics (their gradient is folded into dx).
 */
export function batchNormTrain(x: Tensor, mean: Tensor, variance: Tensor, gamma: Tensor, beta: Tensor, eps: number): Tensor {
  const axes = x.shape.slice(0, -1).map((_, i) => i);
  const count = x.size / x.shape[x.rank - 1]!;
  const f = tf.customGrad((...args: Array<Tensor | tf.GradSaveFunc>) => {
    const [xs, m, v, g, b] = args.slice(0, 5) as [Tensor, Tensor, Tensor, Tensor, Tensor];
    const save = args[5] as tf.GradSaveFunc;
    const rstd = tf.rsqrt(tf.add(v, eps));
    const xhat = tf.mul(tf.sub(xs, m), rstd);
    save([xhat, rstd, g]);
    return {
      value: tf.add(tf.mul(xhat, g), b),
      gradFunc: (dy: Tensor, saved: Tensor[]) => {
        const [xh, rs, gm] = saved as [Tensor, Tensor, Tensor];
        const dbeta = tf.sum(dy, axes);
        const dgamma = tf.sum(tf.mul(dy, xh), axes);
        const dx = tf.mul(tf.mul(gm, tf.div(rs, count)), tf.sub(tf.sub(tf.mul(dy, count), dbeta), tf.mul(xh, dgamma)));
        return [dx, tf.zerosLike(m), tf.zerosLike(v), dgamma, dbeta];
      },
    };
  });
  return f(x, mean, variance, gamma, beta);
}
