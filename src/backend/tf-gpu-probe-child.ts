/**
 * Run by tf-gpu.ts in a child process: loads @tensorflow/tfjs-node-gpu, runs one matrix product
 * and prints one JSON line saying whether TensorFlow found a GPU. A child, so that the training
 * process loads a native TensorFlow addon only once it is known to be the one to use, and so
 * that libtensorflow's own log lines (which name the CUDA libraries it could not load) can be read.
 */
import { writeSync } from 'node:fs';

interface Binding {
  isUsingGpuDevice?: () => boolean;
}

let result: { loaded: boolean; gpu: boolean; product: number[] | null; error: string | null };
try {
  const tf = (await import('@tensorflow/tfjs-node-gpu' as string)) as typeof import('@tensorflow/tfjs-core');
  await tf.setBackend('tensorflow');
  await tf.ready();
  const binding = (tf.backend() as unknown as { binding?: Binding }).binding;
  const a = tf.tensor2d([1, -1, 0.5, 2], [2, 2]);
  const b = tf.tensor2d([1, 2, 3, 4], [2, 2]);
  const product = Array.from(await tf.matMul(a, b).data());
  result = { loaded: true, gpu: binding?.isUsingGpuDevice?.() ?? false, product, error: null };
} catch (e) {
  result = { loaded: false, gpu: false, product: null, error: ((e instanceof Error ? e.message : String(e)).split('\n')[0] ?? '').trim().replace(/\.$/, '') };
}
writeSync(1, `${JSON.stringify(result)}\n`);
process.exit(0);
