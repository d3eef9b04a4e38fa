import test from 'ava';
import { tf } from '../../src/backend/tf.js';
import { fillShiftedFilterGrad, shiftedFilterGradDims } from '../../src/backend/onnxruntime/conv.js';
import { Rng } from '../../src/util/rng.js';

/**
 * The shifted filter gradient reads x and dy as zero-padded row grids built in arrays that come
 * from the pool with whatever they held before: every element must be written. Here the arrays
 * start as NaN and are compared with the padded grids built the plain way (the kernel's values
 * against tfjs's cpu kernel are checked in onnxruntime-kernels).
 */

const rng = new Rng(3);
const random = (n: number): Float32Array => Float32Array.from({ length: n }, () => rng.normal());

const cases: Array<{ shape: [number, number, number, number]; co: number; k: number; pad: 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]] }> = [
  { shape: [2, 7, 5, 3], co: 4, k: 3, pad: 'same' },
  { shape: [1, 6, 9, 2], co: 3, k: 3, pad: 'valid' },
  { shape: [2, 5, 6, 2], co: 2, k: 2, pad: [[0, 0], [2, 0], [0, 3], [0, 0]] },
  { shape: [1, 8, 8, 2], co: 2, k: 7, pad: 'same' },
  { shape: [2, 4, 4, 3], co: 5, k: 1, pad: 'valid' },
];

for (const { shape, co, k, pad } of cases) {
  test(`every element of the padded grids is written: x ${shape}, ${k}x${k}, pad ${JSON.stringify(pad)}`, (t) => {
    const c = tf.backend_util.computeConv2DInfo(shape, [k, k, shape[3], co], 1, 1, pad, undefined, false, 'channelsLast');
    const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outHeight: oh, outWidth: ow } = c;
    const { hp, wp, rows, xLength } = shiftedFilterGradDims(c);
    const x = random(n * h * w * ci);
    const dy = random(n * oh * ow * co);
    const xp = new Float32Array(xLength).fill(NaN);
    const dyp = new Float32Array(rows * co).fill(NaN);
    fillShiftedFilterGrad(c, x, dy, xp, dyp);
    const wantX = new Float32Array(xLength);
    for (let b = 0; b < n; b++) {
      for (let y = 0; y < h; y++) {
        for (let xx = 0; xx < w; xx++) {
          const py = y + c.padInfo.top;
          const px = xx + c.padInfo.left;
          if (py >= hp || px >= wp) continue;
          for (let q = 0; q < ci; q++) wantX[((b * hp + py) * wp + px) * ci + q] = x[((b * h + y) * w + xx) * ci + q]!;
        }
      }
    }
    const wantDy = new Float32Array(rows * co);
    for (let b = 0; b < n; b++) {
      for (let y = 0; y < oh; y++) {
        for (let xx = 0; xx < ow; xx++) {
          for (let q = 0; q < co; q++) wantDy[((b * hp + y) * wp + xx) * co + q] = dy[((b * oh + y) * ow + xx) * co + q]!;
        }
      }
    }
    t.deepEqual(xp, wantX);
    t.deepEqual(dyp, wantDy);
  });
}
