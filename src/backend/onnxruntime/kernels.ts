import type { Delegate } from './delegate.js';
import { ELEMENTWISE_DELEGATES } from './elementwise-kernels.js';
import { SPATIAL_DELEGATES } from './spatial-kernels.js';

/** Every tfjs kernel onnxruntime computes, by tfjs kernel name. */
export const DELEGATES: Record<string, Delegate> = { ...SPATIAL_DELEGATES, ...ELEMENTWISE_DELEGATES };
