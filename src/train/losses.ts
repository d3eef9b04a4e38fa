import { tf } from '../backend/tf.js';
import type { Scalar, Tensor2D } from '../backend/tf.js';

/** Mean cross entropy of logits [N, C] against class ids, as nn.CrossEntropyLoss (one-hot, no gather). */
export function crossEntropy(logits: Tensor2D, labels: readonly number[]): Scalar {
  return tf.tidy(() => {
    const c = logits.shape[1];
    const onehot = tf.cast(tf.oneHot(tf.tensor1d(labels as number[], 'int32'), c), 'float32');
    const picked = tf.sum(tf.mul(logits, onehot), 1);
    return tf.mean(tf.sub(tf.logSumExp(logits, 1), picked)) as Scalar;
  });
}
