import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';

/**
 * What fgh's wasm kernels use of tfjs-backend-wasm: its backend (outputs on the wasm heap) and its
 * own kernels, called directly (not as tf ops), as wasm's composite kernels do.
 */
export interface WasmBackend {
  disposeData(dataId: object): boolean;
  makeOutput(shape: number[], dtype: 'float32'): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Float32Array;
}

export type Pad = 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;

/** The attributes both convolution gradients take from tfjs (with inputShape or filterShape). */
export interface ConvGradAttrs {
  strides: [number, number] | number;
  pad: Pad;
  dataFormat: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

export function wasmKernel(name: string): KernelFunc {
  const k = tf.getKernel(name, 'wasm');
  if (!k) throw new Error(`wasm backend has no ${name} kernel`);
  return k.kernelFunc;
}

/** Runs a wasm kernel and returns its single output. */
export function run(name: string, backend: WasmBackend, inputs: Record<string, TensorInfo>, attrs: NamedAttrMap): TensorInfo {
  const out = wasmKernel(name)({ inputs, backend: backend as never, attrs });
  if (Array.isArray(out)) throw new Error(`${name}: expected one output`);
  return out;
}

/** Frees intermediates made with `run` or `makeOutput`. */
export function free(backend: WasmBackend, ...infos: TensorInfo[]): void {
  for (const t of infos) backend.disposeData(t.dataId);
}
