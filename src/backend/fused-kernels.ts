import type { TensorInfo } from '@tensorflow/tfjs-core';

/**
 * Kernels fgh defines beyond tfjs's own, for backends that can compute them in one call. A
 * model uses one only where `tf.getKernel(name, tf.getBackend())` exists, and otherwise the
 * composite of standard kernels it replaces; both give the same values.
 */

/**
 * The backward pass of batch norm with batch statistics over every axis but the last.
 * Inputs: dy, x (shape S), mean, variance, scale (shape [C]); attrs: varianceEpsilon.
 * Outputs: dx (S), dscale and doffset ([C]):
 *   xhat = (x - mean) / sqrt(variance + eps), doffset = sum(dy), dscale = sum(dy * xhat),
 *   dx = scale / sqrt(variance + eps) * (dy - (doffset + xhat * dscale) / N).
 */
export const BATCH_NORM_GRAD = 'FghBatchNormGrad';

/**
 * One step of torch.optim.SGD for a parameter whose momentum buffer exists.
 * Inputs: param, grad, buf (same shape); attrs: lr, momentum, weightDecay, nesterov.
 * Outputs: the new param and the new buf, with torch's order of float32 operations:
 *   d = grad + param * weightDecay; buf' = buf * momentum + d;
 *   param' = param - (nesterov ? d + buf' * momentum : buf') * lr.
 */
export const SGD_STEP = 'FghSgdStep';

export interface SgdStepAttrs {
  lr: number;
  momentum: number;
  weightDecay: number;
  nesterov: boolean;
}

/**
 * A backend that can apply SGD_STEP in place, writing the new parameter and buffer over the old
 * ones (as torch does): no new arrays, no copies. It returns false where it cannot (another
 * tensor shares the storage, other dtypes), and the caller then runs the kernel.
 */
export interface InPlaceSgdStep {
  sgdStepInPlace(param: TensorInfo, grad: TensorInfo, buf: TensorInfo, attrs: SgdStepAttrs): boolean;
}

export function inPlaceSgdStep(backend: unknown): InPlaceSgdStep | null {
  return typeof (backend as Partial<InPlaceSgdStep>).sgdStepInPlace === 'function' ? (backend as InPlaceSgdStep) : null;
}

/** The epsilon under SEMICON's signed square root (models/SEMICON.py). */
export const SIGNED_SQRT_EPS = 1e-5;

/**
 * Batch norm's batch statistics in training mode, as tf.moments computes them over every axis but
 * the last: mean = mean(x), variance = mean((x - mean)^2) (biased).
 * Inputs: x; outputs: mean and variance ([C]).
 */
export const BATCH_MOMENTS = 'FghBatchMoments';

/**
 * Batch norm with batch statistics, an optional residual and Relu, as ResNet blocks end:
 *   y = relu(batchNorm(x; mean(x), variance(x), offset, scale) + residual),
 * with the statistics of BATCH_MOMENTS. Inputs: x, scale, offset (shape [C]), and residual (x's
 * shape) when there is one; attrs: varianceEpsilon. Outputs: y, mean and variance ([C]).
 * One kernel where the composite makes three activation-sized results (normalised, sum, relu).
 */
export const BATCH_NORM_RELU = 'FghBatchNormRelu';

/**
 * The gradient of BATCH_NORM_RELU: dz = dy * (y > 0), then BATCH_NORM_GRAD of dz. Inputs: dy, x,
 * y (the forward's output, whose sign is Relu's mask), mean, variance, scale; attrs:
 * varianceEpsilon, residual (boolean). Outputs: dx, dscale, doffset, and dz (the residual's
 * gradient) when residual.
 */
export const BATCH_NORM_RELU_GRAD = 'FghBatchNormReluGrad';

/**
 * The gradient of Relu, as tfjs's own: dx = dy * (x > 0 ? 1 : 0).
 * Inputs: dy, x; output: dx.
 */
export const RELU_GRAD = 'FghReluGrad';

/**
 * SEMICON's channel attention with its grouped 1x1 qkv projection and residual, NHWC
 * (src/models/channel-transformer.ts), for x [N, H, W, C], P = H * W:
 *   qkv = x (grouped 1x1 convolution, `groups` groups, weight [3C, C / groups, 1, 1]) + bias,
 *         whose channel (s * a + i) * b + j holds q (s = 0), k (1), v (2) of group i, row j;
 *   y = softmax(signedSqrt(q k^T * b^-0.5)) over the last axis, o = y v: [N, a, b, P];
 *   out = x + o laid out NHWC with channel i * b + j (swapOut: j * a + i).
 * Inputs: x, weight, bias; attrs: groups, a, b, swapOut. Outputs: out, and for the backward pass
 * qkv, s = q k^T (the raw logits) and y.
 */
export const CHANNEL_ATTENTION = 'FghChannelAttention';

/**
 * The gradient of CHANNEL_ATTENTION with respect to x (through both the attention and the
 * residual), the weight and the bias. Inputs: dy (out's shape), x, weight, qkv, s, y; attrs as
 * the forward. Outputs: dx, dweight, dbias.
 */
export const CHANNEL_ATTENTION_GRAD = 'FghChannelAttentionGrad';

export interface ChannelAttentionAttrs {
  groups: number;
  a: number;
  b: number;
  swapOut: boolean;
}
