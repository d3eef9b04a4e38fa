import * as tf from '@tensorflow/tfjs-core';
import { int, ints, type AttrValue, type GraphBuilder } from '../../../exporters/graph.js';
import { output } from './delegate.js';
import type { OrtEngine } from './engine.js';

/**
 * ONNX graphs for tfjs's NHWC convolution kernels. onnxruntime's CPU provider has no float NHWC
 * Conv (com.microsoft's NhwcConv finds no implementation), so general convolutions run as NCHW
 * Conv between transposes: the transposes cost passes over the data, but this still timed
 * fastest of the forms tried. Where a
 * convolution is a matrix product (1x1 kernels) or a few of them (filter gradients, one per
 * tap), NHWC is already the layout a GEMM wants and no transpose is needed. Each form was
 * chosen by timing the ResNet-18/50 shapes at 224 px, batch 16, on 2 cores.
 */

export type Conv2DInfo = tf.backend_util.Conv2DInfo;

const NHWC_TO_NCHW = ints([0, 3, 1, 2]);
const NCHW_TO_NHWC = ints([0, 2, 3, 1]);
/** tfjs filter [kh, kw, ci, co] -> ONNX Conv weight [co, ci, kh, kw]. */
const FILTER_TO_OIHW = ints([3, 2, 0, 1]);

/**
 * onnxruntime's blocked-channel operators (MLAS's NCHWc kernels: the channels in blocks of 8 with
 * AVX2, 16 with AVX-512). Its graph optimiser only uses them for convolutions whose weights are
 * constants, so fgh writes them itself: `ReorderInput` reads NHWC directly, `ReorderOutput` writes
 * NHWC, and the filter is rearranged in the graph, so neither activation is transposed. Their
 * direct convolution also beats im2col + GEMM on ResNet's 3x3 layers.
 */
const NCHWC = 'com.microsoft.nchwc';

const blockSizes = new WeakMap<OrtEngine, number>();

/**
 * The NCHWc channel block of this build and CPU (ReorderInput pads 4 channels up to one block),
 * or 0 where there is none (other CPUs, or FGH_NCHWC=0, which keeps the transposed NCHW forms).
 */
export function nchwcBlock(engine: OrtEngine): number {
  const known = blockSizes.get(engine);
  if (known !== undefined) return known;
  let block = 0;
  if (process.env.FGH_NCHWC !== '0') {
    try {
      const [y] = engine.run('nchwc-probe', (g) => {
        const x = g.input('x', 'float32', [1, 1, 1, 4]);
        const shape = g.op('Shape', [g.op('ReorderInput', [x], { channels_last: int(1) }, NCHWC)]);
        g.rename(g.op('Cast', [shape], { to: int(1) }), 'y');
        g.output('y', 'float32', [4]);
      }, [{ data: new Float32Array(4), shape: [1, 1, 1, 4] }]);
      const padded = Number(y!.data[1]);
      block = padded > 4 && padded % 8 === 0 ? padded : 0;
    } catch {
      block = 0;
    }
  }
  blockSizes.set(engine, block);
  return block;
}

/**
 * A tfjs filter [kh, kw, ci, co] as the weight of an NCHWc Conv from `ci` to `co` channels:
 * OIHWBiBo ([co/B, ci/B, kh, kw, B of ci, B of co]) when the input is blocked, OIHWBo
 * ([co/B, ci, kh, kw, B of co]) when it has fewer channels than a block (then it stays NCHW).
 * `swap` reads the filter as [kh, kw, co, ci] instead (the input gradient's convolution).
 */
function nchwcFilter(g: GraphBuilder, w: string, kh: number, kw: number, ci: number, co: number, block: number, swap = false): string {
  const b = block;
  let v: string;
  if (ci < b) {
    if (swap) throw new Error('an NCHWc input gradient needs blocked channels');
    v = g.op('Transpose', [g.op('Reshape', [w, g.int64Const('hwib', [kh, kw, ci, co / b, b])])], { perm: ints([3, 2, 0, 1, 4]) });
  } else {
    const six = swap ? [kh, kw, co / b, b, ci / b, b] : [kh, kw, ci / b, b, co / b, b];
    const perm = swap ? [2, 4, 0, 1, 5, 3] : [4, 2, 0, 1, 3, 5];
    v = g.op('Transpose', [g.op('Reshape', [w, g.int64Const('hwbb', six)])], { perm: ints(perm) });
  }
  return g.op('Reshape', [v, g.int64Const('oihw', [co, ci, kh, kw])]);
}

/** The layouts an NCHWc convolution from `ci` to `co` channels accepts. */
function nchwcFits(ci: number, co: number, block: number): boolean {
  return block > 0 && co % block === 0 && (ci % block === 0 || ci < block);
}

/** The block conv2DGraph uses for `c` given the engine's (0: the NCHW form), so keys can say which form ran. */
export function convBlock(c: Conv2DInfo, block: number): number {
  return !isPointwise(c) && nchwcFits(c.inChannels, c.outChannels, block) ? block : 0;
}

/** The same for conv2DBackpropInputGraph. */
export function backpropInputBlock(c: Conv2DInfo, block: number): number {
  if (isPointwise(c) || (isSmallMap(c) && c.strideHeight === 1 && c.strideWidth === 1)) return 0;
  return (flipPads(c) || phasePlans(c)) && block > 0 && c.inChannels % block === 0 && c.outChannels % block === 0 ? block : 0;
}

/** One phase of a strided input gradient along one axis: the taps that reach rows s*a + r. */
interface Phase {
  /** The filter's taps in convolution order (reversed: the last reaches the lowest dy row). */
  taps: number[];
  /** dy rows padded before and after, so that the stride-1 convolution gives one row per a. */
  before: number;
  after: number;
}

/**
 * A strided input gradient split by output phase along one axis: dx rows s*a + r receive dy rows
 * a + q - m through taps i0 + s*m (i0 = (r + pad) mod s, q = floor((r + pad) / s)), so each phase
 * is a stride-1 convolution of dy with a few of the filter's taps. Null where a phase has no tap,
 * the input size is not a multiple of the stride (the phases would differ in size) or dilation.
 */
function axisPhases(size: number, outSize: number, kernel: number, stride: number, pad: number, dilation: number): Phase[] | null {
  if (dilation !== 1 || size % stride !== 0) return null;
  const rows = size / stride;
  const phases: Phase[] = [];
  for (let r = 0; r < stride; r++) {
    const i0 = (r + pad) % stride;
    const q = Math.floor((r + pad) / stride);
    const count = i0 < kernel ? Math.ceil((kernel - i0) / stride) : 0;
    if (count === 0) return null;
    const taps = Array.from({ length: count }, (_, u) => i0 + stride * (count - 1 - u));
    const before = count - 1 - q;
    const after = rows - 1 + q - (outSize - 1);
    if (before < 0 || after < 0) return null;
    phases.push({ taps, before, after });
  }
  return phases;
}

/** Row and column phases of a strided (non-pointwise) input gradient, or null: see axisPhases. */
function phasePlans(c: Conv2DInfo): { rows: Phase[]; cols: Phase[] } | null {
  if (c.strideHeight === 1 && c.strideWidth === 1) return null;
  const p = c.padInfo;
  const rows = axisPhases(c.inHeight, c.outHeight, c.filterHeight, c.strideHeight, p.top, c.dilationHeight);
  const cols = axisPhases(c.inWidth, c.outWidth, c.filterWidth, c.strideWidth, p.left, c.dilationWidth);
  return rows && cols ? { rows, cols } : null;
}

/** The filter's taps in the given orders along both axes (a gather by strided slices). */
function pickTaps(g: GraphBuilder, filter: string, rows: number[], cols: number[]): string {
  const along = (v: string, taps: number[], axis: number): string => {
    if (taps.length === 1) return g.op('Slice', [v, g.int64Const('starts', [taps[0]!]), g.int64Const('ends', [taps[0]! + 1]), g.int64Const('axes', [axis])]);
    const step = taps[1]! - taps[0]!;
    const end = taps[taps.length - 1]! + step;
    return g.op('Slice', [v, g.int64Const('starts', [taps[0]!]), g.int64Const('ends', [end < 0 ? -(2 ** 62) : end]), g.int64Const('axes', [axis]), g.int64Const('steps', [step])]);
  };
  return along(along(filter, rows, 0), cols, 1);
}

/** Pads of the stride-1 convolution of dy with the flipped filter, or null where it cannot be one. */
function flipPads(c: Conv2DInfo): [number, number, number, number] | null {
  const p = c.padInfo;
  const kh = (c.filterHeight - 1) * c.dilationHeight + 1;
  const kw = (c.filterWidth - 1) * c.dilationWidth + 1;
  const top = kh - 1 - p.top;
  const left = kw - 1 - p.left;
  const bottom = c.inHeight - c.outHeight - top + kh - 1;
  const right = c.inWidth - c.outWidth - left + kw - 1;
  const ok = c.strideHeight === 1 && c.strideWidth === 1 && top >= 0 && left >= 0 && bottom >= 0 && right >= 0;
  return ok ? [top, left, bottom, right] : null;
}

/** An NHWC convolution through NCHWc: NHWC in, NHWC out, with an optional bias and ReLU. */
function nchwcConv(g: GraphBuilder, x: string, weight: string, bias: string | null, ci: number, co: number, kernel: [number, number], attrs: { strides: number[]; dilations: number[]; pads: number[] }, relu: boolean, block: number): string {
  const input = ci < block ? g.op('Transpose', [x], { perm: NHWC_TO_NCHW }) : g.op('ReorderInput', [x], { channels_last: int(1) }, NCHWC);
  const conv = g.op('Conv', bias ? [input, weight, bias] : [input, weight], {
    kernel_shape: ints(kernel),
    strides: ints(attrs.strides),
    dilations: ints(attrs.dilations),
    pads: ints(attrs.pads),
    ...(relu ? { activation: { kind: 'string', value: 'Relu' } } : {}),
  }, NCHWC);
  return g.op('ReorderOutput', [conv], { channels_last: int(1), channels: int(co) }, NCHWC);
}

/** An NHWC max pool through NCHWc (channels in whole blocks): no transposes either. */
export function nchwcMaxPool(g: GraphBuilder, x: string, channels: number, attrs: Record<string, AttrValue>): string {
  const pooled = g.op('MaxPool', [g.op('ReorderInput', [x], { channels_last: int(1) }, NCHWC)], attrs, NCHWC);
  return g.op('ReorderOutput', [pooled], { channels_last: int(1), channels: int(channels) }, NCHWC);
}

function isPointwise(c: Conv2DInfo): boolean {
  const p = c.padInfo;
  return c.filterHeight === 1 && c.filterWidth === 1 && p.top === 0 && p.left === 0 && p.bottom === 0 && p.right === 0;
}

/** x[:, ::sh, ::sw, :] cropped to the output grid (the rows a strided 1x1 convolution reads). */
function strideSample(g: GraphBuilder, x: string, c: Conv2DInfo): string {
  if (c.strideHeight === 1 && c.strideWidth === 1 && c.outHeight === c.inHeight && c.outWidth === c.inWidth) return x;
  return g.op('Slice', [
    x,
    g.int64Const('starts', [0, 0]),
    g.int64Const('ends', [(c.outHeight - 1) * c.strideHeight + 1, (c.outWidth - 1) * c.strideWidth + 1]),
    g.int64Const('axes', [1, 2]),
    g.int64Const('steps', [c.strideHeight, c.strideWidth]),
  ]);
}

function reshape(g: GraphBuilder, x: string, shape: number[]): string {
  return g.op('Reshape', [x, g.int64Const('shape', shape)]);
}

/** Pads (positive) or crops (negative) the ends of axes 1 and 2 of an NHWC tensor. */
function padEnds(g: GraphBuilder, x: string, shape: readonly number[], bottom: number, right: number, top = 0, left = 0): string {
  let v = x;
  if (bottom < 0 || right < 0) {
    v = g.op('Slice', [v, g.int64Const('starts', [0, 0]), g.int64Const('ends', [shape[1]! + Math.min(bottom, 0), shape[2]! + Math.min(right, 0)]), g.int64Const('axes', [1, 2])]);
  }
  const b = Math.max(bottom, 0);
  const r = Math.max(right, 0);
  if (top > 0 || left > 0 || b > 0 || r > 0) v = g.op('Pad', [v, g.int64Const('pads', [0, top, left, 0, 0, b, r, 0])]);
  return v;
}

/**
 * Small maps with large filters (deep layers at small input sizes): fewer output positions than
 * output channels. There the filter dominates, and the NCHW path transposes and re-blocks the
 * whole filter on every call (16 ms for 3x3x512x512 on a 2x2 map); the input gradient then uses
 * the filter in tfjs's own layout instead (col2im). The forward pass keeps the NCHW path: as
 * im2col + GEMM it matched the cpu kernel as closely, but its other summation order pushed
 * SEMICON's training-mode gradient of one ill-conditioned attention-head parameter past the
 * float64 parity bound (0.70 against PyTorch float32's 0.35).
 */
function isSmallMap(c: Conv2DInfo): boolean {
  return c.batchSize * c.outHeight * c.outWidth <= c.outChannels;
}

/**
 * The NHWC output of a convolution, with an optional bias and ReLU (FusedConv2D). `block` is
 * nchwcBlock()'s: 0 keeps the transposed NCHW form.
 */
export function conv2DGraph(g: GraphBuilder, c: Conv2DInfo, opts: { bias?: boolean; relu?: boolean } = {}, block = 0): void {
  const x = g.input('x', 'float32', [c.batchSize, c.inHeight, c.inWidth, c.inChannels]);
  const w = g.input('w', 'float32', [c.filterHeight, c.filterWidth, c.inChannels, c.outChannels]);
  const bias = opts.bias ? g.input('b', 'float32', [c.outChannels]) : null;
  const outShape = [c.batchSize, c.outHeight, c.outWidth, c.outChannels];
  let y: string;
  if (isPointwise(c)) {
    const rows = c.batchSize * c.outHeight * c.outWidth;
    const x2 = reshape(g, strideSample(g, x, c), [rows, c.inChannels]);
    const w2 = reshape(g, w, [c.inChannels, c.outChannels]);
    y = bias ? g.op('Gemm', [x2, w2, bias]) : g.op('MatMul', [x2, w2]);
    if (opts.relu) y = g.op('Relu', [y]);
    y = reshape(g, y, outShape);
  } else if (convBlock(c, block) > 0) {
    const p = c.padInfo;
    const weight = nchwcFilter(g, w, c.filterHeight, c.filterWidth, c.inChannels, c.outChannels, block);
    y = nchwcConv(g, x, weight, bias, c.inChannels, c.outChannels, [c.filterHeight, c.filterWidth], {
      strides: [c.strideHeight, c.strideWidth],
      dilations: [c.dilationHeight, c.dilationWidth],
      pads: [p.top, p.left, p.bottom, p.right],
    }, !!opts.relu, block);
  } else {
    const p = c.padInfo;
    const inputs = [g.op('Transpose', [x], { perm: NHWC_TO_NCHW }), g.op('Transpose', [w], { perm: FILTER_TO_OIHW })];
    if (bias) inputs.push(bias);
    y = g.op('Conv', inputs, {
      strides: ints([c.strideHeight, c.strideWidth]),
      dilations: ints([c.dilationHeight, c.dilationWidth]),
      pads: ints([p.top, p.left, p.bottom, p.right]),
    });
    if (opts.relu) y = g.op('Relu', [y]);
    y = g.op('Transpose', [y], { perm: NCHW_TO_NHWC });
  }
  output(g, y, outShape);
}

/**
 * dx of a convolution. 1x1: dy times the filter's transpose, scattered back onto the stride grid.
 * Small maps with large filters at stride 1: col2im (one GEMM, then each tap's slab placed back).
 * Stride 1: a convolution of dy with the flipped filter (onnxruntime's fast path). Otherwise
 * ConvTranspose, with output padding for the rows the forward pass never read.
 */
export function conv2DBackpropInputGraph(g: GraphBuilder, c: Conv2DInfo, block = 0): void {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outHeight: oh, outWidth: ow, outChannels: co } = c;
  const dy = g.input('dy', 'float32', [n, oh, ow, co]);
  const filter = g.input('w', 'float32', [c.filterHeight, c.filterWidth, ci, co]);
  const outShape = [n, h, w, ci];
  const { strideHeight: sh, strideWidth: sw } = c;
  if (isPointwise(c)) {
    const d2 = g.op('Gemm', [reshape(g, dy, [n * oh * ow, co]), reshape(g, filter, [ci, co])], { transB: int(1) });
    // Strided: zeros interleaved, [n, oh, 1, ow, 1, ci] padded to [n, oh, sh, ow, sw, ci].
    const dx =
      sh > 1 || sw > 1
        ? reshape(g, g.op('Pad', [reshape(g, d2, [n, oh, 1, ow, 1, ci]), g.int64Const('pads', [0, 0, 0, 0, 0, 0, 0, 0, sh - 1, 0, sw - 1, 0])]), [n, oh * sh, ow * sw, ci])
        : reshape(g, d2, [n, oh, ow, ci]);
    output(g, padEnds(g, dx, [n, oh * sh, ow * sw, ci], h - oh * sh, w - ow * sw), outShape);
    return;
  }
  const p = c.padInfo;
  if (isSmallMap(c) && sh === 1 && sw === 1) {
    // col2im: the gradient of each tap's columns (one GEMM with the filter as stored), placed back
    // at the tap's offset in the padded input and summed, then the padding cropped.
    const taps = c.filterHeight * c.filterWidth;
    const dcol = reshape(g, g.op('Gemm', [reshape(g, dy, [n * oh * ow, co]), reshape(g, filter, [taps * ci, co])], { transB: int(1) }), [n, oh, ow, taps * ci]);
    const hp = h + p.top + p.bottom;
    const wp = w + p.left + p.right;
    const parts: string[] = [];
    for (let i = 0; i < c.filterHeight; i++) {
      for (let j = 0; j < c.filterWidth; j++) {
        const k = i * c.filterWidth + j;
        const slab = g.op('Slice', [dcol, g.int64Const('starts', [k * ci]), g.int64Const('ends', [(k + 1) * ci]), g.int64Const('axes', [3])]);
        const top = i * c.dilationHeight;
        const left = j * c.dilationWidth;
        parts.push(g.op('Pad', [slab, g.int64Const('pads', [0, top, left, 0, 0, hp - top - oh, wp - left - ow, 0])]));
      }
    }
    const sum = parts.length === 1 ? parts[0]! : g.op('Sum', parts);
    const dx = g.op('Slice', [sum, g.int64Const('starts', [p.top, p.left]), g.int64Const('ends', [p.top + h, p.left + w]), g.int64Const('axes', [1, 2])]);
    output(g, dx, outShape);
    return;
  }
  const kh = (c.filterHeight - 1) * c.dilationHeight + 1;
  const kw = (c.filterWidth - 1) * c.dilationWidth + 1;
  const flip = flipPads(c);
  if (flip && backpropInputBlock(c, block) > 0) {
    // The convolution of dy (co channels) with the flipped filter, in NCHWc: no transposes.
    const flipped = g.op('Slice', [filter, g.int64Const('starts', [-1, -1]), g.int64Const('ends', [-(2 ** 62), -(2 ** 62)]), g.int64Const('axes', [0, 1]), g.int64Const('steps', [-1, -1])]);
    const weight = nchwcFilter(g, flipped, c.filterHeight, c.filterWidth, co, ci, block, true);
    const dx = nchwcConv(g, dy, weight, null, co, ci, [c.filterHeight, c.filterWidth], {
      strides: [1, 1],
      dilations: [c.dilationHeight, c.dilationWidth],
      pads: flip,
    }, false, block);
    output(g, dx, outShape);
    return;
  }
  const phases = phasePlans(c);
  if (phases && backpropInputBlock(c, block) > 0) {
    // Strided: one stride-1 NCHWc convolution of dy per output phase (a few taps each, where
    // ConvTranspose multiplies the zeros of a dilated dy), the phases side by side as channels,
    // then interleaved into rows and columns.
    const blocked = g.op('ReorderInput', [dy], { channels_last: int(1) }, NCHWC);
    const parts: string[] = [];
    for (const row of phases.rows) {
      for (const col of phases.cols) {
        const weight = nchwcFilter(g, pickTaps(g, filter, row.taps, col.taps), row.taps.length, col.taps.length, co, ci, block, true);
        parts.push(g.op('Conv', [blocked, weight], {
          kernel_shape: ints([row.taps.length, col.taps.length]),
          strides: ints([1, 1]),
          dilations: ints([1, 1]),
          pads: ints([row.before, col.before, row.after, col.after]),
        }, NCHWC));
      }
    }
    const all = parts.length === 1 ? parts[0]! : g.op('Concat', parts, { axis: int(1) }); // whole channel blocks side by side
    const phased = g.op('ReorderOutput', [all], { channels_last: int(1), channels: int(sh * sw * ci) }, NCHWC); // [n, h/sh, w/sw, sh*sw*ci]
    const grid = g.op('Transpose', [reshape(g, phased, [n, h / sh, w / sw, sh, sw, ci])], { perm: ints([0, 1, 3, 2, 4, 5]) });
    output(g, reshape(g, grid, outShape), outShape);
    return;
  }
  const dyT = g.op('Transpose', [dy], { perm: NHWC_TO_NCHW });
  let dx: string;
  if (flip) {
    // [kh, kw, ci, co] -> [ci, co, kh, kw], taps reversed: the weight of a Conv from co to ci channels.
    const swapped = g.op('Transpose', [filter], { perm: ints([2, 3, 0, 1]) });
    const flipped = g.op('Slice', [swapped, g.int64Const('starts', [-1, -1]), g.int64Const('ends', [-(2 ** 62), -(2 ** 62)]), g.int64Const('axes', [2, 3]), g.int64Const('steps', [-1, -1])]);
    dx = g.op('Conv', [dyT, flipped], {
      dilations: ints([c.dilationHeight, c.dilationWidth]),
      pads: ints(flip),
    });
  } else {
    const endH = sh * (oh - 1) + kh - p.top - h;
    const endW = sw * (ow - 1) + kw - p.left - w;
    dx = g.op('ConvTranspose', [dyT, g.op('Transpose', [filter], { perm: FILTER_TO_OIHW })], {
      strides: ints([sh, sw]),
      dilations: ints([c.dilationHeight, c.dilationWidth]),
      pads: ints([p.top, p.left, Math.max(endH, 0), Math.max(endW, 0)]),
      output_padding: ints([Math.max(-endH, 0), Math.max(-endW, 0)]),
    });
  }
  output(g, g.op('Transpose', [dx], { perm: NCHW_TO_NHWC }), outShape);
}

/** Input channels below which the filter gradient is one convolution rather than a GEMM per tap. */
const FEW_CHANNELS = 16;
/** Positions per input channel from which the stride-1 filter gradient takes the shifted form (timed on ResNet's stages). */
const LONG_ROWS = 32;

/**
 * The stride-1 filter gradient with many positions per channel (ResNet's first stages), as the
 * shifted form takes it: see fillShiftedFilterGrad.
 */
export function usesShiftedFilterGrad(c: Conv2DInfo): boolean {
  return c.strideHeight === 1 && c.strideWidth === 1 && c.dilationHeight === 1 && c.dilationWidth === 1 && c.inChannels >= FEW_CHANNELS && c.batchSize * c.outHeight * c.outWidth >= LONG_ROWS * c.inChannels;
}

/** Geometry of the shifted form: the padded grid and the rows of each tap's view. */
export function shiftedFilterGradDims(c: Conv2DInfo): { hp: number; wp: number; rows: number; xLength: number } {
  const hp = c.outHeight + c.filterHeight - 1;
  const wp = c.outWidth + c.filterWidth - 1;
  const rows = c.batchSize * hp * wp;
  return { hp, wp, rows, xLength: (rows + (c.filterHeight - 1) * wp + c.filterWidth - 1) * c.inChannels };
}

/**
 * Fills the arrays of the shifted form. With x zero-padded to [n, hp, wp, ci] (plus a zero tail)
 * and dy zero-padded to [n, hp, wp, co], both flattened to rows, tap (i, j)'s columns are the x
 * rows shifted by i * wp + j: dW[i, j] = x[r + i*wp + j]^T dy[r] summed over r, where the zero
 * rows of dy drop every position that is not a real output. So each tap is a view of one array
 * (no copies: onnxruntime reads the JavaScript arrays in place), where the sliced forms copied
 * the input once per tap.
 */
export function fillShiftedFilterGrad(c: Conv2DInfo, x: Float32Array, dy: Float32Array, xp: Float32Array, dyp: Float32Array): void {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outHeight: oh, outWidth: ow, outChannels: co } = c;
  const { top, left } = c.padInfo;
  const { hp, wp, rows } = shiftedFilterGradDims(c);
  // Columns past the padded grid are never read (negative end padding).
  const cols = Math.min(w, wp - left);
  const xRow = wp * ci;
  const dyRow = wp * co;
  // Every element is written once: the arrays come from the pool with old contents.
  for (let b = 0; b < n; b++) {
    for (let py = 0; py < hp; py++) {
      const at = (b * hp + py) * xRow;
      const y = py - top;
      if (y < 0 || y >= h) {
        xp.fill(0, at, at + xRow);
        continue;
      }
      const from = (b * h + y) * w * ci;
      xp.fill(0, at, at + left * ci);
      xp.set(x.subarray(from, from + cols * ci), at + left * ci);
      xp.fill(0, at + (left + cols) * ci, at + xRow);
    }
    for (let y = 0; y < hp; y++) {
      const at = (b * hp + y) * dyRow;
      if (y >= oh) {
        dyp.fill(0, at, at + dyRow);
        continue;
      }
      const from = (b * oh + y) * ow * co;
      dyp.set(dy.subarray(from, from + ow * co), at);
      dyp.fill(0, at + ow * co, at + dyRow);
    }
  }
  xp.fill(0, rows * ci);
}

/**
 * The shifted form's graph: inputs dy [rows, co] and one [rows, ci] view of x per tap. Each tap
 * is a batch of GEMMs, one per image's rows, summed: MLAS ran the single long GEMM (K = all
 * positions, M = N = 64) at about 120 GFLOP/s, and a batch of short ones 1.3-1.5x faster.
 */
export function shiftedFilterGradGraph(g: GraphBuilder, c: Conv2DInfo): void {
  const { batchSize: n, inChannels: ci, outChannels: co, filterHeight: kh, filterWidth: kw } = c;
  const { rows } = shiftedFilterGradDims(c);
  const dy = g.input('dy', 'float32', [rows, co]);
  const per = rows / n;
  const dyT = g.op('Transpose', [g.op('Reshape', [dy, g.int64Const('chunks', [n, per, co])])], { perm: ints([0, 2, 1]) }); // [n, co, per]
  const taps: string[] = [];
  for (let t = 0; t < kh * kw; t++) {
    const xv = g.op('Reshape', [g.input(`x${t}`, 'float32', [rows, ci]), g.int64Const(`xchunks${t}`, [n, per, ci])]);
    const sum = g.op('ReduceSum', [g.op('MatMul', [dyT, xv]), g.int64Const(`batch${t}`, [0])], { keepdims: int(1) }); // [1, co, ci]
    taps.push(sum);
  }
  const all = taps.length === 1 ? taps[0]! : g.op('Concat', taps, { axis: int(0) }); // [kh*kw, co, ci]
  output(g, reshape(g, g.op('Transpose', [all], { perm: ints([0, 2, 1]) }), [kh, kw, ci, co]), [kh, kw, ci, co]);
}

/** Identity weights of a grouped convolution: each input channel to `taps` output channels, tap t taking offset t. */
function oneHotTaps(g: GraphBuilder, channels: number, taps: number, vertical: boolean): string {
  const w = new Float32Array(channels * taps * taps);
  for (let c = 0; c < channels; c++) for (let t = 0; t < taps; t++) w[(c * taps + t) * taps + t] = 1;
  return g.floatConst('oneHot', w, vertical ? [channels * taps, 1, taps, 1] : [channels * taps, 1, 1, taps]);
}

/**
 * The im2col matrix of a padded NCHW input [n, ci, hp, wp], as [n, ci*kw*kh, oh, ow] with rows in
 * (channel, column tap, row tap) order: two grouped convolutions with one-hot weights, a 1 x kw one
 * (stride sw) then a kh x 1 one (stride sh). Each multiplies by ones and adds zeros only, so the
 * values are x's own; as arithmetic it is kh + kw multiply-adds per element, against the kh * kw of
 * one 2-D one-hot convolution, and onnxruntime runs both far faster than a Slice per tap.
 */
function im2colByOneHotConvs(g: GraphBuilder, xNchw: string, ci: number, kh: number, kw: number, sh: number, sw: number): string {
  const rows = g.op('Conv', [xNchw, oneHotTaps(g, ci, kw, false)], { group: int(ci), strides: ints([1, sw]) });
  return g.op('Conv', [rows, oneHotTaps(g, ci * kw, kh, true)], { group: int(ci * kw), strides: ints([sh, 1]) });
}

/**
 * dW[i, j] = sum over n, y, x of xpad[n, y*sh + i, x*sw + j, :]^T dy[n, y, x, :]: one GEMM per
 * tap on a strided slice of the padded input, concatenated into tfjs's [kh, kw, ci, co] order.
 * With few input channels (a stem convolution) the GEMMs are too thin: there the gradient is one
 * GEMM per image of the im2col matrix (im2colByOneHotConvs) by dy, summed over the batch. (For
 * ResNet's stem, 16 images at 224 px: 25-31 ms, where the convolution of the input by dy as filter,
 * the form before it, took 44-65 ms; the GEMM alone on a ready im2col takes 14 ms.) (Stride 1
 * with many positions per channel takes the shifted form instead: usesShiftedFilterGrad.)
 */
export function conv2DBackpropFilterGraph(g: GraphBuilder, c: Conv2DInfo): void {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outHeight: oh, outWidth: ow, outChannels: co } = c;
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw } = c;
  const x = g.input('x', 'float32', [n, h, w, ci]);
  const dy = g.input('dy', 'float32', [n, oh, ow, co]);
  const outShape = [kh, kw, ci, co];
  const rows = n * oh * ow;
  const p = c.padInfo;
  // Padded so that exactly (oh-1)*sh + kh rows are read; negative ends crop what was never read.
  const hp = (oh - 1) * sh + kh;
  const wp = (ow - 1) * sw + kw;
  const xp = padEnds(g, x, [n, h, w, ci], hp - h - p.top, wp - w - p.left, p.top, p.left);
  if (ci < FEW_CHANNELS && kh * kw > 1) {
    const col = im2colByOneHotConvs(g, g.op('Transpose', [xp], { perm: NHWC_TO_NCHW }), ci, kh, kw, sh, sw); // [n, ci*kw*kh, oh, ow]
    const perImage = g.op('MatMul', [reshape(g, col, [n, ci * kw * kh, oh * ow]), reshape(g, dy, [n, oh * ow, co])]);
    const r = g.op('ReduceSum', [perImage, g.int64Const('batch', [0])], { keepdims: int(0) }); // [ci*kw*kh, co]
    output(g, g.op('Transpose', [reshape(g, r, [ci, kw, kh, co])], { perm: ints([2, 1, 0, 3]) }), outShape);
    return;
  }
  const dy2 = reshape(g, dy, [rows, co]);
  const taps: string[] = [];
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const whole = i === 0 && j === 0 && sh === 1 && sw === 1 && hp === oh && wp === ow;
      const slice = whole
        ? xp
        : g.op('Slice', [xp, g.int64Const('starts', [i, j]), g.int64Const('ends', [i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1]), g.int64Const('axes', [1, 2]), g.int64Const('steps', [sh, sw])]);
      taps.push(g.op('Gemm', [reshape(g, slice, [rows, ci]), dy2], { transA: int(1) }));
    }
  }
  const all = taps.length === 1 ? taps[0]! : g.op('Concat', taps, { axis: int(0) });
  output(g, reshape(g, all, outShape), outShape);
}
