/**
 * The deterministic torchvision transforms, computed as PIL computes them: the reference code
 * runs torchvision on PIL images, and PIL's bilinear resize is an antialiased separable filter
 * with 22-bit fixed-point weights and uint8 rounding after each pass, which libvips' resize does
 * not reproduce. Pure arithmetic with no Node imports: the browser page (`fgh serve`) imports
 * this very module, so a query is preprocessed there exactly as `fgh encode` does it.
 */

export interface RgbImage {
  width: number;
  height: number;
  /** Interleaved 8-bit RGB, row-major. */
  data: Uint8Array;
}

const PRECISION_BITS = 32 - 8 - 2;

interface Coefficients {
  /** First input index of each output. */
  start: Int32Array;
  /** Number of taps of each output. */
  count: Int32Array;
  /** Fixed-point weights, `taps` per output. */
  weights: Int32Array;
  taps: number;
}

/** PIL's bilinear (triangle) filter weights for resizing `inSize` to `outSize` over [lo, hi). */
function bilinearCoefficients(inSize: number, outSize: number, lo = 0, hi = inSize): Coefficients {
  const scale = (hi - lo) / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale; // the triangle's support is 1
  const taps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * taps);
  const k = new Float64Array(taps);
  for (let xx = 0; xx < outSize; xx++) {
    const center = lo + (xx + 0.5) * scale;
    const ss = 1 / filterScale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let sum = 0;
    for (let x = 0; x < xmax; x++) {
      const d = Math.abs((x + xmin - center + 0.5) * ss);
      const w = d < 1 ? 1 - d : 0;
      k[x] = w;
      sum += w;
    }
    for (let x = 0; x < xmax; x++) {
      const w = sum !== 0 ? k[x]! / sum : k[x]!;
      weights[xx * taps + x] = w < 0 ? Math.trunc(-0.5 + w * (1 << PRECISION_BITS)) : Math.trunc(0.5 + w * (1 << PRECISION_BITS));
    }
    start[xx] = xmin;
    count[xx] = xmax;
  }
  return { start, count, weights, taps };
}

const clip8 = (v: number): number => (v <= 0 ? 0 : v >= 255 ? 255 : v);
const HALF = 1 << (PRECISION_BITS - 1);

/**
 * PIL's `Image.resize((w, h), BILINEAR)` of the region `box` (default: the whole image): a
 * horizontal pass over the rows the vertical pass needs, then a vertical pass, each rounding
 * to uint8. Weights are 22-bit integers, so sums stay exact in float64.
 */
export function resizeBilinear(img: RgbImage, outW: number, outH: number, box?: { left: number; top: number; width: number; height: number }): RgbImage {
  const b = box ?? { left: 0, top: 0, width: img.width, height: img.height };
  const needH = outW !== img.width || b.left !== 0 || b.width !== outW;
  const needV = outH !== img.height || b.top !== 0 || b.height !== outH;
  const cv = bilinearCoefficients(img.height, outH, b.top, b.top + b.height);
  let yFirst = 0;
  let yLast = img.height;
  if (needV) {
    yFirst = cv.start[0]!;
    yLast = cv.start[outH - 1]! + cv.count[outH - 1]!;
  }
  let src = img;
  let rowOffset = 0;
  if (needH) {
    const ch = bilinearCoefficients(img.width, outW, b.left, b.left + b.width);
    const rows = yLast - yFirst;
    const out = new Uint8Array(outW * rows * 3);
    const d = img.data;
    for (let y = 0; y < rows; y++) {
      const rowIn = (y + yFirst) * img.width * 3;
      const rowOut = y * outW * 3;
      for (let xx = 0; xx < outW; xx++) {
        const s0 = ch.start[xx]!;
        const n = ch.count[xx]!;
        const wo = xx * ch.taps;
        let r = HALF;
        let g = HALF;
        let bl = HALF;
        for (let x = 0; x < n; x++) {
          const w = ch.weights[wo + x]!;
          const p = rowIn + (s0 + x) * 3;
          r += d[p]! * w;
          g += d[p + 1]! * w;
          bl += d[p + 2]! * w;
        }
        const o = rowOut + xx * 3;
        out[o] = clip8(Math.floor(r / (1 << PRECISION_BITS)));
        out[o + 1] = clip8(Math.floor(g / (1 << PRECISION_BITS)));
        out[o + 2] = clip8(Math.floor(bl / (1 << PRECISION_BITS)));
      }
    }
    src = { width: outW, height: rows, data: out };
    rowOffset = yFirst;
  }
  if (!needV) {
    return rowOffset === 0 && src.height === outH ? src : { width: src.width, height: outH, data: src.data.subarray(0, outH * src.width * 3) };
  }
  const W = src.width;
  const out = new Uint8Array(W * outH * 3);
  const d = src.data;
  for (let yy = 0; yy < outH; yy++) {
    const s0 = cv.start[yy]! - rowOffset;
    const n = cv.count[yy]!;
    const wo = yy * cv.taps;
    for (let x = 0; x < W * 3; x++) {
      let acc = HALF;
      for (let y = 0; y < n; y++) acc += d[(s0 + y) * W * 3 + x]! * cv.weights[wo + y]!;
      out[yy * W * 3 + x] = clip8(Math.floor(acc / (1 << PRECISION_BITS)));
    }
  }
  return { width: W, height: outH, data: out };
}

/** Python's round(): halves to even (torchvision's CenterCrop offsets use it). */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const diff = x - f;
  if (diff > 0.5) return f + 1;
  if (diff < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** torchvision Resize(size) with an int: the shorter side becomes `size`, the longer int(size * long / short). */
export function resizeShorterSize(width: number, height: number, size: number): [number, number] {
  const short = Math.min(width, height);
  const long = Math.max(width, height);
  const newLong = Math.trunc((size * long) / short);
  return width <= height ? [size, newLong] : [newLong, size];
}

export function crop(img: RgbImage, left: number, top: number, width: number, height: number): RgbImage {
  if (left < 0 || top < 0 || left + width > img.width || top + height > img.height) {
    throw new Error(`internal: crop ${width}x${height}+${left}+${top} outside ${img.width}x${img.height}`);
  }
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) out.set(img.data.subarray(((top + y) * img.width + left) * 3, ((top + y) * img.width + left + width) * 3), y * width * 3);
  return { width, height, data: out };
}

/** torchvision CenterCrop(size) on an image at least that large. */
export function centerCrop(img: RgbImage, size: number): RgbImage {
  const top = roundHalfEven((img.height - size) / 2);
  const left = roundHalfEven((img.width - size) / 2);
  return crop(img, left, top, size, size);
}

export function hflip(img: RgbImage): RgbImage {
  const out = new Uint8Array(img.data.length);
  for (let y = 0; y < img.height; y++)
    for (let x = 0; x < img.width; x++) {
      const s = (y * img.width + x) * 3;
      const d = (y * img.width + img.width - 1 - x) * 3;
      out[d] = img.data[s]!;
      out[d + 1] = img.data[s + 1]!;
      out[d + 2] = img.data[s + 2]!;
    }
  return { width: img.width, height: img.height, data: out };
}

/** The deterministic eval transforms the two methods use (datasets.md). */
export type EvalTransformName = 'resize-224' | 'resize-256-centercrop-224';
export const EVAL_TRANSFORMS: readonly EvalTransformName[] = ['resize-224', 'resize-256-centercrop-224'];

export function evalTransform(img: RgbImage, name: EvalTransformName, size = 224): RgbImage {
  if (name === 'resize-224') return resizeBilinear(img, size, size);
  const resizeTo = Math.round((size * 256) / 224);
  const [w, h] = resizeShorterSize(img.width, img.height, resizeTo);
  return centerCrop(resizeBilinear(img, w, h), size);
}

export type Layout = 'nchw' | 'nhwc';

/**
 * ToTensor + Normalize into `out` at image slot `index` of a batch, in float32 arithmetic as torch
 * does ((x / 255 - mean) / std), without allocating.
 */
export function normalizeInto(img: RgbImage, out: Float32Array, index: number, layout: Layout, mean: readonly number[], std: readonly number[]): void {
  const hw = img.width * img.height;
  const base = index * hw * 3;
  const f = Math.fround;
  const m = mean.map((v) => f(v));
  const s = std.map((v) => f(v));
  for (let p = 0; p < hw; p++) {
    for (let c = 0; c < 3; c++) {
      const v = f(f(f(img.data[p * 3 + c]! / 255) - m[c]!) / s[c]!);
      out[layout === 'nhwc' ? base + p * 3 + c : base + c * hw + p] = v;
    }
  }
}

/**
 * PIL's `Image.blend(constant image of value base, img, alpha)`, as ImageEnhance computes it:
 * `base + alpha * (v - base)` in C float arithmetic, truncated to uint8 (clipped when alpha is
 * outside [0, 1], where the result can leave the range).
 */
function blendWithConstant(img: RgbImage, base: number, alpha: number): RgbImage {
  const f = Math.fround;
  const a = f(alpha);
  const out = new Uint8Array(img.data.length);
  if (a === 0) out.fill(base);
  else if (a === 1) out.set(img.data);
  else {
    const inside = a >= 0 && a <= 1;
    const d = img.data;
    for (let i = 0; i < d.length; i++) {
      const t = f(base + f(a * (d[i]! - base)));
      out[i] = inside ? Math.trunc(t) : t <= 0 ? 0 : t >= 255 ? 255 : Math.trunc(t);
    }
  }
  return { width: img.width, height: img.height, data: out };
}

/** torchvision adjust_brightness on a PIL image (ImageEnhance.Brightness): a blend with black. */
export function adjustBrightness(img: RgbImage, factor: number): RgbImage {
  return blendWithConstant(img, 0, factor);
}

/** Mean of PIL's convert('L') (ITU-R 601-2 luma in 16-bit fixed point, rounded), as ImageStat computes it. */
export function greyMean(img: RgbImage): number {
  const d = img.data;
  let sum = 0;
  for (let i = 0; i < d.length; i += 3) sum += (d[i]! * 19595 + d[i + 1]! * 38470 + d[i + 2]! * 7471 + 0x8000) >>> 16;
  return sum / (img.width * img.height);
}

/**
 * torchvision adjust_contrast on a PIL image (ImageEnhance.Contrast): a blend with the mean grey
 * level of the image, rounded to an integer, as PIL does (torchvision's tensor version keeps the
 * float mean; the reference runs on PIL images).
 */
export function adjustContrast(img: RgbImage, factor: number): RgbImage {
  return blendWithConstant(img, Math.trunc(greyMean(img) + 0.5), factor);
}
