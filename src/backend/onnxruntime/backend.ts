import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { OrtEngine } from './engine.js';
import { DELEGATES } from './kernels.js';
import { withFallback, type ArrayStore } from './delegate.js';
import { batchMomentsKernel, batchNormGradKernel, batchNormReluGradKernel, batchNormReluKernel } from './batch-norm.js';
import { reluGradKernel } from './elementwise-kernels.js';
import { registerFusedGradients } from '../gradients.js';
import { BATCH_MOMENTS, BATCH_NORM_GRAD, BATCH_NORM_RELU, BATCH_NORM_RELU_GRAD, CHANNEL_ATTENTION, CHANNEL_ATTENTION_GRAD, RELU_GRAD, SGD_STEP, type InPlaceSgdStep, type SgdStepAttrs } from '../fused-kernels.js';
import { channelAttentionGradKernel, channelAttentionKernel } from './attention-kernels.js';
import { sgdLoop, sgdStepKernel } from './sgd-step.js';

/**
 * The `onnxruntime` TensorFlow.js backend: tfjs's cpu backend (tensors as plain typed arrays in
 * the Node heap, so no 4 GiB wasm ceiling, and every kernel tfjs has) whose heavy kernels run in
 * onnxruntime-node's native CPU provider on all cores (see kernels.ts). Autodiff, optimisers and
 * models are untouched: only the kernel registry entries differ.
 */

export const ORT_BACKEND = 'onnxruntime';

export class OrtBackend extends MathBackendCPU implements ArrayStore, InPlaceSgdStep {
  readonly engine: OrtEngine;
  constructor(threads?: number) {
    super();
    this.engine = new OrtEngine(threads);
    // The cpu backend's first write prints advice to install tfjs-node: not ours to give here.
    (this as unknown as { firstUse: boolean }).firstUse = false;
  }
  values(t: TensorInfo): Float32Array | Int32Array | Uint8Array | null {
    const v = this.data.get(t.dataId)?.values;
    return v instanceof Float32Array || v instanceof Int32Array || v instanceof Uint8Array ? v : null;
  }
  store(shape: readonly number[], dtype: 'float32' | 'bool', data: Float32Array | Uint8Array): TensorInfo {
    return this.makeTensorInfo([...shape], dtype, data);
  }
  /**
   * SGD_STEP over the arrays themselves, in float32 (Math.fround after every operation, which for
   * +, - and * gives exactly the float32 result). One memory-bound pass on one thread beats the
   * kernel on all cores, which allocates two new arrays and gets each back as a copy.
   */
  sgdStepInPlace(param: TensorInfo, grad: TensorInfo, buf: TensorInfo, a: SgdStepAttrs): boolean {
    const own = (t: TensorInfo): Float32Array | null => {
      const d = this.data.get(t.dataId);
      return d && d.refCount === 1 && d.values instanceof Float32Array ? d.values : null;
    };
    const p = own(param);
    const b = own(buf);
    const g = this.values(grad);
    if (!p || !b || !(g instanceof Float32Array) || p === b || g.length !== p.length || b.length !== p.length) return false;
    sgdLoop(p, g, b, a);
    return true;
  }
  override dispose(): void {
    this.engine.dispose();
    super.dispose();
  }
}

let registered = false;

/**
 * Registers the backend under `onnxruntime` (idempotent): every cpu kernel, with the delegated
 * ones (DELEGATES) trying onnxruntime first. Needs tfjs-backend-cpu's kernels registered.
 */
export function registerOrtBackend(threads?: number): void {
  if (registered) return;
  const cpuKernels = tf.getKernelsForBackend('cpu');
  if (cpuKernels.length === 0) throw new Error('tfjs-backend-cpu registered no kernels');
  tf.registerBackend(ORT_BACKEND, () => new OrtBackend(threads), 0);
  for (const k of cpuKernels) {
    const delegate = DELEGATES[k.kernelName];
    const kernelFunc: KernelFunc = delegate ? withFallback(k.kernelName, delegate, k.kernelFunc) : k.kernelFunc;
    tf.registerKernel({ ...k, backendName: ORT_BACKEND, kernelFunc });
  }
  tf.registerKernel({ kernelName: BATCH_NORM_GRAD, backendName: ORT_BACKEND, kernelFunc: batchNormGradKernel });
  tf.registerKernel({ kernelName: BATCH_MOMENTS, backendName: ORT_BACKEND, kernelFunc: batchMomentsKernel });
  tf.registerKernel({ kernelName: RELU_GRAD, backendName: ORT_BACKEND, kernelFunc: reluGradKernel });
  tf.registerKernel({ kernelName: BATCH_NORM_RELU, backendName: ORT_BACKEND, kernelFunc: batchNormReluKernel });
  tf.registerKernel({ kernelName: BATCH_NORM_RELU_GRAD, backendName: ORT_BACKEND, kernelFunc: batchNormReluGradKernel });
  registerFusedGradients();
  tf.registerKernel({ kernelName: SGD_STEP, backendName: ORT_BACKEND, kernelFunc: sgdStepKernel });
  tf.registerKernel({ kernelName: CHANNEL_ATTENTION, backendName: ORT_BACKEND, kernelFunc: channelAttentionKernel });
  tf.registerKernel({ kernelName: CHANNEL_ATTENTION_GRAD, backendName: ORT_BACKEND, kernelFunc: channelAttentionGradKernel });
  registered = true;
}

/** Kernel names onnxruntime computes (for `fgh doctor`); the rest run in tfjs's cpu kernels. */
export function ortKernelNames(): string[] {
  return [...Object.keys(DELEGATES), BATCH_MOMENTS, BATCH_NORM_GRAD, BATCH_NORM_RELU, BATCH_NORM_RELU_GRAD, RELU_GRAD, SGD_STEP, CHANNEL_ATTENTION, CHANNEL_ATTENTION_GRAD].sort();
}

/**
 * Whether glibc's malloc keeps large blocks for reuse. By default every block of 32 MiB or more
 * is a fresh mmap, and each page of it faults on first touch: a 51 MB activation then costs
 * 20 ms before any arithmetic, more than the arithmetic. With the mmap threshold fixed, freed
 * memory at the top of the heap is still trimmed back to the kernel above 128 KiB (the trim
 * threshold no longer follows the mmap threshold), so both are raised. bin/fgh (and the npm
 * scripts) set GLIBC_TUNABLES so that freed memory is reused instead.
 */
export function mallocTuned(env: NodeJS.ProcessEnv = process.env): boolean {
  const t = env.GLIBC_TUNABLES ?? '';
  return (/glibc\.malloc\.mmap_threshold=/.test(t) && /glibc\.malloc\.trim_threshold=/.test(t)) || process.platform !== 'linux';
}
