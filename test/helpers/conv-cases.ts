/** Convolution cases shared by the kernel tests: every kernel size, stride and padding kind. */

export type Pad = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];

export interface ConvCase {
  n: number;
  h: number;
  w: number;
  ci: number;
  co: number;
  k: number;
  stride: number;
  pad: Pad;
  dilation?: number;
}

export type ConvShape = Pick<ConvCase, 'n' | 'h' | 'w' | 'ci' | 'co'>;

/**
 * Kernels 1, 3 and 7, strides 1 and 2, 'same', 'valid' and an asymmetric explicit padding, for each
 * shape. Odd sizes with stride 2 leave input rows the forward pass never reads.
 */
export function convCaseGrid(shapes: ConvShape[]): ConvCase[] {
  const cases: ConvCase[] = [];
  for (const k of [1, 3, 7]) {
    for (const stride of [1, 2]) {
      const pads: Pad[] = ['same', 'valid', [[0, 0], [k >> 1, k >> 1], [k >> 1, (k >> 1) + 1], [0, 0]]];
      for (const pad of pads) for (const s of shapes) cases.push({ ...s, k, stride, pad });
    }
  }
  return cases;
}
