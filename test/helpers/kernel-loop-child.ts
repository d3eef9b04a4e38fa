import { tf } from '../../src/backend/tf.js';
import { selectBackend } from '../../src/backend/select.js';

/**
 * Child of malloc-tunables.test.ts: calls fgh's fused batch norm + residual + Relu kernel on the
 * onnxruntime backend CALLS times (argv[2]) on one [16, 56, 56, 64] input, each result disposed at
 * once, and prints the process's RSS in bytes after each call as one JSON array.
 */
const calls = Number(process.argv[2] ?? 80);
await selectBackend({ prefer: 'onnxruntime', note: () => {} });
const shape: [number, number, number, number] = [16, 56, 56, 64];
const x = tf.randomNormal(shape);
const residual = tf.randomNormal(shape);
const scale = tf.randomUniform([64], 0.5, 1.5);
const offset = tf.randomNormal([64]);
const rss: number[] = [];
for (let i = 0; i < calls; i++) {
  const out = tf.engine().runKernel('FghBatchNormRelu', { x, scale, offset, residual }, { varianceEpsilon: 1e-5 }) as tf.Tensor[];
  tf.dispose(out);
  rss.push(process.memoryUsage.rss());
}
console.log(JSON.stringify(rss));
