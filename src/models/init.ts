import type { Rng } from '../util/rng.js';

/** Initialisers as PyTorch/torchvision apply them, drawn from the run's generator. */

/** kaiming_normal_(mode='fan_out', nonlinearity='relu'), torchvision's ResNet conv init. */
export function kaimingNormalFanOut(rng: Rng, shape: number[]): Float32Array {
  const [o, , h, w] = shape as [number, number, number, number];
  const std = Math.sqrt(2 / (o * h * w));
  return normal(rng, size(shape), std);
}

/** nn.Linear/nn.Conv default: kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
export function defaultUniform(rng: Rng, shape: number[], fanIn: number): Float32Array {
  const bound = 1 / Math.sqrt(fanIn);
  const a = new Float32Array(size(shape));
  for (let i = 0; i < a.length; i++) a[i] = rng.uniform(-bound, bound);
  return a;
}

export function normal(rng: Rng, n: number, std: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * std;
  return a;
}

export function filled(n: number, v: number): Float32Array {
  return new Float32Array(n).fill(v);
}

export function size(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
