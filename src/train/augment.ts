import { hflip, resizeBilinear, type RgbImage } from '../data/image.js';
import type { Rng } from '../util/rng.js';

/**
 * Training augmentations of the two methods, on our PIL-equivalent resampling:
 * sRLH: Resize((S, S)) + RandomHorizontalFlip; SEMICON: RandomResizedCrop(S) + RandomHorizontalFlip.
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
    const w = Math.round(Math.sqrt(target * aspect));
    const h = Math.round(Math.sqrt(target / aspect));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      return { left: rng.int(width - w + 1), top: rng.int(height - h + 1), width: w, height: h };
    }
  }
  // Fallback: the whole image, cropped centrally to the nearest allowed aspect ratio.
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < ratio[0]) h = Math.round(w / ratio[0]);
  else if (inRatio > ratio[1]) w = Math.round(h * ratio[1]);
  return { left: Math.floor((width - w) / 2), top: Math.floor((height - h) / 2), width: w, height: h };
}

export function srlhAugment(size: number): (img: RgbImage, rng: Rng) => RgbImage {
  return (img, rng) => {
    const r = resizeBilinear(img, size, size);
    return rng.bool(0.5) ? hflip(r) : r;
  };
}

export function semiconAugment(size: number): (img: RgbImage, rng: Rng) => RgbImage {
  return (img, rng) => {
    const r = resizeBilinear(img, size, size, randomResizedCropBox(img.width, img.height, rng));
    return rng.bool(0.5) ? hflip(r) : r;
  };
}
