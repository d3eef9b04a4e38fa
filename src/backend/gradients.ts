import * as tf from '@tensorflow/tfjs-core';
import { RELU_GRAD } from './fused-kernels.js';

let registered = false;

/**
 * Gradients that use fgh's fused kernels where the active backend has them, and otherwise tfjs's
 * own composite (the same operations): registered once, for every backend. Relu's gradient is
 * two activation-sized kernels in tfjs (a step, then a product), one here.
 */
export function registerFusedGradients(): void {
  if (registered) return;
  tf.registerGradient({
    kernelName: tf.Relu,
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => {
      const [x] = saved as [tf.Tensor];
      const d = dy as tf.Tensor;
      return {
        x: () => (tf.getKernel(RELU_GRAD, tf.getBackend()) ? (tf.engine().runKernel(RELU_GRAD, { dy: d, x }) as tf.Tensor) : tf.mul(d, tf.cast(tf.step(x), 'float32'))),
      };
    },
  });
  registered = true;
}
