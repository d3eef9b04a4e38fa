import { adjustBrightness, adjustContrast, crop, hflip, resizeBilinear, roundHalfEven, type RgbImage } from '../data/image.js';
import type { Rng } from '../util/rng.js';

/**
 * Training augmentations of the two methods, on our PIL-equivalent image operations:
 * sRLH: Resize((S, S)) + RandomHorizontalFlip + ColorJitter(brightness 0.2, contrast 0.2);
 * SEMICON: RandomResizedCrop(S) (scale 0.08..1 unless told otherwise) + RandomHorizontalFlip.
 * Drawing the random parameters and applying them are separate functions, so that the
 * application can be checked against torchvision with the same parameters.
 */

export interface Box {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** torchvision RandomResizedCrop.get_params (scale 0.08..1, ratio 3/4..4/3), drawing from our Rng. */
export function randomResizedCropBox(width: number, height: number, rng: Rng, scale: [number, number] = [0.08, 1], ratio: [number, number] = [3 / 4, 4 / 3]): Box {
  const area = width * height;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])] as const;
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(logRatio[0], logRatio[1]));
    // Python's round(), as torchvision uses.
    const w = roundHalfEven(Math.sqrt(target * aspect));
    const h = roundHalfEven(Math.sqrt(target / aspect));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      return { left: rng.int(width - w + 1), top: rng.int(height - h + 1), width: w, height: h };
    }
  }
  // Fallback: the whole image, cropped centrally to the nearest allowed aspect ratio.
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < ratio[0]) h = roundHalfEven(w / ratio[0]);
  else if (inRatio > ratio[1]) w = roundHalfEven(h * ratio[1]);
  return { left: Math.floor((width - w) / 2), top: Math.floor((height - h) / 2), width: w, height: h };
}

/** torchvision RandomResizedCrop + RandomHorizontalFlip parameters. */
export interface CropFlipParams {
  box: Box;
  flip: boolean;
}

/** `minScale`: the least fraction of the image's area a crop covers (torchvision's default 0.08). */
export function sampleCropFlip(width: number, height: number, rng: Rng, minScale = 0.08): CropFlipParams {
  const box = randomResizedCropBox(width, height, rng, [minScale, 1]);
  return { box, flip: rng.bool(0.5) };
}

/**
 * torchvision resized_crop (crop, then resize the crop: the filter never reads outside the box,
 * unlike PIL's resize(box=...)) to size x size, then the flip.
 */
export function applyCropFlip(img: RgbImage, size: number, p: CropFlipParams): RgbImage {
  const { left, top, width, height } = p.box;
  const r = resizeBilinear(crop(img, left, top, width, height), size, size);
  return p.flip ? hflip(r) : r;
}

/** ColorJitter(brightness, contrast) parameters: the two factors and which is applied first. */
export interface JitterParams {
  brightness: number;
  contrast: number;
  /** torchvision applies the enabled adjustments in a random order (a permutation of four). */
  brightnessFirst: boolean;
}

/** ColorJitter.get_params with brightness = contrast = `amount`: factors uniform in [max(0, 1 - a), 1 + a]. */
export function sampleJitter(rng: Rng, amount = 0.2): JitterParams {
  const lo = Math.max(0, 1 - amount);
  const brightnessFirst = rng.bool(0.5);
  return { brightness: rng.uniform(lo, 1 + amount), contrast: rng.uniform(lo, 1 + amount), brightnessFirst };
}

export function applyJitter(img: RgbImage, p: JitterParams): RgbImage {
  return p.brightnessFirst ? adjustContrast(adjustBrightness(img, p.brightness), p.contrast) : adjustBrightness(adjustContrast(img, p.contrast), p.brightness);
}

/** sRLH's training transform parameters: the flip, then the colour jitter. */
export interface SrlhParams {
  flip: boolean;
  jitter: JitterParams;
}

export function sampleSrlh(rng: Rng): SrlhParams {
  const flip = rng.bool(0.5);
  return { flip, jitter: sampleJitter(rng) };
}

/** Resize((size, size)), flip, ColorJitter: the order of sRLH's train_transforms. */
export function applySrlh(img: RgbImage, size: number, p: SrlhParams): RgbImage {
  const r = resizeBilinear(img, size, size);
  return applyJitter(p.flip ? hflip(r) : r, p.jitter);
}

export function srlhAugment(size: number): (img: RgbImage, rng: Rng) => RgbImage {
  return (img, rng) => applySrlh(img, size, sampleSrlh(rng));
}

export function semiconAugment(size: number, minScale = 0.08): (img: RgbImage, rng: Rng) => RgbImage {
  return (img, rng) => applyCropFlip(img, size, sampleCropFlip(img.width, img.height, rng, minScale));
}
