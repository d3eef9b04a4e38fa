import { tf } from '../backend/tf.js';
import type { Tensor } from '../backend/tf.js';
import { BATCH_MOMENTS, BATCH_NORM_GRAD, BATCH_NORM_RELU, BATCH_NORM_RELU_GRAD, CHANNEL_ATTENTION, CHANNEL_ATTENTION_GRAD, SIGNED_SQRT_EPS, type ChannelAttentionAttrs } from '../backend/fused-kernels.js';

/**
 * Computes `fn(...inputs)` as a constant for gradients (PyTorch's `.detach()` / `no_grad`): the
 * ops inside are not taped, so they may include ops without gradients (argmax, top-k), and no
 * gradient flows back to the inputs through this path.
 */
export function detached<T extends Tensor>(fn: (...xs: Tensor[]) => T, ...inputs: Tensor[]): T {
  const f = tf.customGrad((...args: Array<Tensor | tf.GradSaveFunc>) => {
    const xs = args.slice(0, inputs.length) as Tensor[];
    return { value: tf.tidy(() => fn(...xs)), gradFunc: () => xs.map((x) => tf.zerosLike(x)) };
  });
  return f(...inputs) as T;
}

/** tf.moments over every axis but the last, as one kernel where the backend has fgh's BATCH_MOMENTS. */
function batchMoments(x: Tensor, axes: number[]): { mean: Tensor; variance: Tensor } {
  if (!tf.getKernel(BATCH_MOMENTS, tf.getBackend())) return tf.moments(x, axes);
  const [mean, variance] = tf.engine().runKernel(BATCH_MOMENTS, { x }, {}) as Tensor[];
  return { mean: mean!, variance: variance! };
}

/**
 * Batch norm with batch statistics (training mode) and the closed-form backward
 *   dx = gamma * rstd / N * (N dy - sum(dy) - xhat * sum(dy * xhat)),
 * written so that every pass over the activations is one kernel: the forward is tfjs's
 * FusedBatchNorm, and the backward recomputes xhat from x (which the convolution before it
 * keeps anyway) rather than holding it, then forms dx = (gamma * rstd) dy + (b xhat + c) with
 * the per-channel b, c folded into a second FusedBatchNorm. Only x and the output stay alive
 * between forward and backward (the composite form held four activation-sized tensors a layer).
 * The batch moments (biased variance) are computed inside, off the gradient tape: their
 * gradient is folded into dx, and taping them made autodiff push zeros back through them.
 * `onMoments` receives them (e.g. for the running statistics) while they are alive. Where the
 * backend has fgh's fused BATCH_NORM_GRAD kernel, the backward pass is that one kernel.
 */
export function batchNormTrain(x: Tensor, gamma: Tensor, beta: Tensor, eps: number, onMoments?: (mean: Tensor, variance: Tensor) => void): Tensor {
  const axes = x.shape.slice(0, -1).map((_, i) => i);
  const count = x.size / x.shape[x.rank - 1]!;
  const f = tf.customGrad((...args: Array<Tensor | tf.GradSaveFunc>) => {
    const [xs, g, b] = args.slice(0, 3) as [Tensor, Tensor, Tensor];
    const save = args[3] as tf.GradSaveFunc;
    const { mean, variance } = batchMoments(xs, axes);
    onMoments?.(mean, variance);
    save([xs, mean, variance, g]);
    return {
      value: tf.batchNorm(xs, mean, variance, b, g, eps),
      gradFunc: (dy: Tensor, saved: Tensor[]) => {
        const [xv, mv, vv, gm] = saved as [Tensor, Tensor, Tensor, Tensor];
        if (tf.getKernel(BATCH_NORM_GRAD, tf.getBackend())) {
          const inputs = { dy, x: xv, mean: mv, variance: vv, scale: gm };
          const [dx, dgamma, dbeta] = tf.engine().runKernel(BATCH_NORM_GRAD, inputs, { varianceEpsilon: eps }) as Tensor[];
          return [dx!, dgamma!, dbeta!];
        }
        const xhat = tf.batchNorm(xv, mv, vv, undefined, undefined, eps);
        const dbeta = tf.sum(dy, axes);
        const dgamma = tf.sum(tf.mul(dy, xhat), axes);
        const scale = tf.mul(gm, tf.rsqrt(tf.add(vv, eps))); // gamma * rstd
        const k = tf.div(scale, -count);
        const rest = tf.batchNorm(xv, mv, vv, tf.mul(k, dbeta), tf.mul(k, dgamma), eps); // xhat * b + c
        return [tf.add(tf.mul(dy, scale), rest), dgamma, dbeta];
      },
    };
  });
  return f(x, gamma, beta);
}

/**
 * relu(batchNormTrain(x) + residual), the end of a ResNet block (without residual, its middle).
 * Where the backend has fgh's BATCH_NORM_RELU and its gradient, the forward is one kernel and
 * the backward another, and only x and the output stay alive between them (Relu's mask is the
 * output's sign); elsewhere it is the composite, with the same values.
 */
export function batchNormReluTrain(x: Tensor, gamma: Tensor, beta: Tensor, eps: number, onMoments?: (mean: Tensor, variance: Tensor) => void, residual?: Tensor): Tensor {
  const backend = tf.getBackend();
  if (!tf.getKernel(BATCH_NORM_RELU, backend) || !tf.getKernel(BATCH_NORM_RELU_GRAD, backend)) {
    const z = batchNormTrain(x, gamma, beta, eps, onMoments);
    return tf.relu(residual ? tf.add(z, residual) : z);
  }
  const arity = residual ? 4 : 3;
  const f = tf.customGrad((...args: Array<Tensor | tf.GradSaveFunc>) => {
    const [xs, g, b, r] = args.slice(0, arity) as [Tensor, Tensor, Tensor, Tensor | undefined];
    const save = args[arity] as tf.GradSaveFunc;
    const inputs: tf.NamedTensorMap = r ? { x: xs, scale: g, offset: b, residual: r } : { x: xs, scale: g, offset: b };
    const [y, mean, variance] = tf.engine().runKernel(BATCH_NORM_RELU, inputs, { varianceEpsilon: eps }) as [Tensor, Tensor, Tensor];
    onMoments?.(mean, variance);
    save([xs, y, mean, variance, g]);
    return {
      value: y,
      gradFunc: (dy: Tensor, saved: Tensor[]) => {
        const [xv, yv, mv, vv, gm] = saved as [Tensor, Tensor, Tensor, Tensor, Tensor];
        const grads = { dy, x: xv, y: yv, mean: mv, variance: vv, scale: gm };
        return tf.engine().runKernel(BATCH_NORM_RELU_GRAD, grads, { varianceEpsilon: eps, residual: arity === 4 }) as Tensor[];
      },
    };
  });
  return residual ? f(x, gamma, beta, residual) : f(x, gamma, beta);
}

/**
 * sign(a) * sqrt(|a| + 1e-5), SEMICON's damping of attention logits before the softmax. The sign
 * comes from comparisons because tfjs-backend-wasm's Sign (4.22) returns 0 for |a| below about
 * 1e-7, which zeroes the output and the gradient exactly where the slope is steepest (158).
 */
function signedSqrt(a: Tensor): Tensor {
  const sign = detached((t: Tensor) => tf.sub(tf.cast(tf.greater(t, 0), 'float32'), tf.cast(tf.less(t, 0), 'float32')), a);
  return tf.mul(sign, tf.sqrt(tf.add(tf.abs(a), SIGNED_SQRT_EPS)));
}

/**
 * softmax(signedSqrt(s * scale)) over the last axis: SEMICON's attention weights, as the composite
 * of tfjs kernels and its autodiff. The onnxruntime backend computes them inside fgh's fused
 * CHANNEL_ATTENTION kernel, with the same float32 operations.
 */
export function signedSqrtSoftmax(s: Tensor, scale: number): Tensor {
  return tf.softmax(signedSqrt(tf.mul(s, scale)));
}

/** Whether the backend computes SEMICON's channel attention as fgh's fused kernels. */
export function hasFusedChannelAttention(): boolean {
  const backend = tf.getBackend();
  return tf.getKernel(CHANNEL_ATTENTION, backend) !== undefined && tf.getKernel(CHANNEL_ATTENTION_GRAD, backend) !== undefined;
}

/**
 * x + attention(groupedConv1x1(x)) as fgh's CHANNEL_ATTENTION kernel and its gradient (see
 * src/backend/fused-kernels.ts for the layout); only where hasFusedChannelAttention(). Holds x,
 * the projection and the [N, a, b, b] logits and weights for the backward pass.
 */
export function fusedChannelAttention(x: Tensor, weight: Tensor, bias: Tensor, attrs: ChannelAttentionAttrs): Tensor {
  const f = tf.customGrad((...args: Array<Tensor | tf.GradSaveFunc>) => {
    const [xs, w, b] = args.slice(0, 3) as [Tensor, Tensor, Tensor];
    const save = args[3] as tf.GradSaveFunc;
    const [out, qkv, s, y] = tf.engine().runKernel(CHANNEL_ATTENTION, { x: xs, weight: w, bias: b }, { ...attrs }) as Tensor[];
    save([xs, w, qkv!, s!, y!]);
    return {
      value: out!,
      gradFunc: (dy: Tensor, saved: Tensor[]) => {
        const [xv, wv, qkvv, sv, yv] = saved as [Tensor, Tensor, Tensor, Tensor, Tensor];
        return tf.engine().runKernel(CHANNEL_ATTENTION_GRAD, { dy, x: xv, weight: wv, qkv: qkvv, s: sv, y: yv }, { ...attrs }) as Tensor[];
      },
    };
  });
  return f(x, weight, bias);
}
