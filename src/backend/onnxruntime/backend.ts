import * as tf from '@tensorflow/tfjs-core';
import type { backend_util, DataId, DataType, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
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
import { sgdStepSimd } from '../simd/sgd-step.js';

/** Parameters from this size on take the SIMD step (below it the call costs more than it saves). */
const SIMD_SGD_MIN = 1024;

/** Results smaller than this are left to the garbage collector (small blocks are reused by malloc anyway), not pooled. */
const REUSE_MIN_BYTES = 1 << 18;

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
  /**
   * Stores a kernel's result. An array made for the result and never seen here before is ours
   * alone, and goes back to the engine's pool for the next output of its size the moment tfjs
   * disposes the tensor (see array-pool.ts), unless it has since escaped: read out (dataSync and
   * the like return the array itself) or stored again under another tensor (as tfjs's cpu
   * kernels do with views, e.g. Slice).
   */
  store(shape: readonly number[], dtype: 'float32' | 'bool', data: Float32Array | Uint8Array): TensorInfo {
    const fresh = !this.seen.has(data.buffer);
    const info = this.makeTensorInfo([...shape], dtype, data);
    if (fresh && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.byteLength >= REUSE_MIN_BYTES) {
      this.reusable.add(data.buffer as ArrayBuffer);
    }
    return info;
  }
  /** Buffers of results that only their tensor holds. */
  private readonly reusable = new WeakSet<ArrayBuffer>();
  /** Every buffer ever stored: a buffer seen twice is shared. */
  private readonly seen = new WeakSet<ArrayBufferLike>();
  private escape(values: backend_util.BackendValues | undefined): void {
    if (values && ArrayBuffer.isView(values)) {
      this.reusable.delete(values.buffer as ArrayBuffer);
      this.seen.add(values.buffer);
    }
  }
  override write(values: backend_util.BackendValues, shape: number[], dtype: DataType): DataId {
    this.escape(values);
    return super.write(values, shape, dtype);
  }
  override move(dataId: DataId, values: backend_util.BackendValues, shape: number[], dtype: DataType, refCount: number): void {
    this.escape(values);
    super.move(dataId, values, shape, dtype, refCount);
  }
  override readSync(dataId: DataId): backend_util.BackendValues {
    this.escape(this.data.get(dataId)?.values);
    return super.readSync(dataId);
  }
  override disposeData(dataId: DataId, force = false): boolean {
    const values = this.data.get(dataId)?.values;
    const gone = super.disposeData(dataId, force);
    if (gone && (values instanceof Float32Array || values instanceof Uint8Array) && this.reusable.delete(values.buffer as ArrayBuffer)) {
      this.seen.delete(values.buffer);
      this.engine.recycle(values);
    }
    return gone;
  }
  /**
   * SGD_STEP over the arrays themselves, in float32 (Math.fround after every operation, which for
   * +, - and * gives exactly the float32 result), four at a time in WebAssembly SIMD where it can.
   * One memory-bound pass on one thread beats the kernel on all cores, which allocates two new
   * arrays and gets each back as a copy.
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
    sgdLoop(p, g, b, a, p.length >= SIMD_SGD_MIN ? sgdStepSimd(p, g, b, a) : 0);
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

