/**
 * The one door to TensorFlow.js: the rest of fgh imports `tf` from here and never a backend
 * package, so that backend choice stays in src/backend.
 */
// tfjs-core's Node bundle registers no gradients; the union package's bundle does (into the
// process-wide registry that core reads), so it is imported for that side effect.
import '@tensorflow/tfjs';
export * as tf from '@tensorflow/tfjs-core';
export type { Scalar, Tensor, Tensor1D, Tensor2D, Tensor3D, Tensor4D, Rank, Variable, NamedTensorMap } from '@tensorflow/tfjs-core';

import { installFrugalGradients } from './backprop.js';
// Every gradient fgh takes releases tensors as the backward pass goes (see backprop.ts).
installFrugalGradients();
