import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { TorchTensor } from '../../src/models/state-dict.js';

/** Reads a bundle written by test/python/bundle.py. */
export function readBundle(dir: string): Map<string, TorchTensor> {
  const index = JSON.parse(readFileSync(path.join(dir, 'index.json'), 'utf8')) as Record<string, { shape: number[]; offset: number }>;
  const buf = readFileSync(path.join(dir, 'data.bin'));
  const all = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const out = new Map<string, TorchTensor>();
  for (const [name, { shape, offset }] of Object.entries(index)) {
    const n = shape.reduce((a, b) => a * b, 1);
    out.set(name, { shape, data: all.slice(offset, offset + n) });
  }
  return out;
}

/** NCHW -> NHWC for feeding tfjs models. */
export function nchwToNhwc(t: TorchTensor): { shape: [number, number, number, number]; data: Float32Array } {
  const [n, c, h, w] = t.shape as [number, number, number, number];
  const out = new Float32Array(t.data.length);
  for (let a = 0; a < n; a++)
    for (let ch = 0; ch < c; ch++)
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++) out[((a * h + y) * w + x) * c + ch] = t.data[((a * c + ch) * h + y) * w + x]!;
  return { shape: [n, h, w, c], data: out };
}

/** NHWC -> NCHW for comparing with PyTorch. */
export function nhwcToNchw(data: Float32Array, [n, h, w, c]: number[]): Float32Array {
  const out = new Float32Array(data.length);
  for (let a = 0; a < n!; a++)
    for (let y = 0; y < h!; y++)
      for (let x = 0; x < w!; x++)
        for (let ch = 0; ch < c!; ch++) out[((a * c! + ch) * h! + y) * w! + x] = data[((a * h! + y) * w! + x) * c! + ch]!;
  return out;
}
