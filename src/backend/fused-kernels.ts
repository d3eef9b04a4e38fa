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
