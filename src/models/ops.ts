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
