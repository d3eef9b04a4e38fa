import type { Rng } from '../util/rng.js';

/**
 * A tiny RGB rasteriser for the synthetic dataset: filled shapes with soft (1 px) edges on a
 * float canvas. Shapes are tested per pixel in their own rotated frame, inside their bounding box.
 */

export type Rgb = readonly [number, number, number];

export class Canvas {
  readonly data: Float32Array;
  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.data = new Float32Array(width * height * 3);
  }

  /** Linear gradient from `a` to `b` along direction `angle`. */
  gradient(a: Rgb, b: Rgb, angle: number): void {
    const c = Math.cos(angle);
    const s = Math.sin(angle);
    const w = this.width;
    const h = this.height;
    const span = Math.abs(c) * w + Math.abs(s) * h;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const t = ((x - w / 2) * c + (y - h / 2) * s) / span + 0.5;
        const o = (y * w + x) * 3;
        for (let k = 0; k < 3; k++) this.data[o + k] = a[k]! + (b[k]! - a[k]!) * t;
      }
    }
  }

  /** Adds uniform noise of amplitude `amp` (texture, and no two images share pixels). */
  noise(rng: Rng, amp: number): void {
    for (let i = 0; i < this.data.length; i++) this.data[i]! += (rng.next() - 0.5) * 2 * amp;
  }

  /**
   * Fills a shape given by a signed distance-like function in its local frame (negative inside),
   * centred at (cx, cy), rotated by `angle`, within radius `extent` of the centre.
   */
  fill(cx: number, cy: number, angle: number, extent: number, colour: Rgb, inside: (u: number, v: number) => number): void {
    const c = Math.cos(angle);
    const s = Math.sin(angle);
    const x0 = Math.max(0, Math.floor(cx - extent - 1));
    const x1 = Math.min(this.width - 1, Math.ceil(cx + extent + 1));
    const y0 = Math.max(0, Math.floor(cy - extent - 1));
    const y1 = Math.min(this.height - 1, Math.ceil(cy + extent + 1));
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        const dx = x + 0.5 - cx;
        const dy = y + 0.5 - cy;
        const d = inside(dx * c + dy * s, -dx * s + dy * c);
        if (d >= 0.5) continue;
        const a = d <= -0.5 ? 1 : 0.5 - d; // one-pixel soft edge
        const o = (y * this.width + x) * 3;
        for (let k = 0; k < 3; k++) this.data[o + k] = this.data[o + k]! * (1 - a) + colour[k]! * a;
      }
    }
  }

  /** 8-bit RGB, clamped and rounded. */
  toBytes(): Uint8Array {
    const out = new Uint8Array(this.data.length);
    for (let i = 0; i < out.length; i++) out[i] = Math.max(0, Math.min(255, Math.round(this.data[i]!)));
    return out;
  }
}

/** Approximate signed distances (pixels) of the primitive shapes, in their local frame. */
export const shapes = {
  ellipse: (a: number, b: number) => (u: number, v: number) => (Math.hypot(u / a, v / b) - 1) * Math.min(a, b),
  circle: (r: number) => (u: number, v: number) => Math.hypot(u, v) - r,
  ring: (r: number, w: number) => (u: number, v: number) => Math.abs(Math.hypot(u, v) - r) - w / 2,
  rect: (a: number, b: number) => (u: number, v: number) => Math.max(Math.abs(u) - a, Math.abs(v) - b),
  /** Isosceles triangle pointing along +u, half-length a, half-width b. */
  triangle: (a: number, b: number) => (u: number, v: number) => {
    const t = (u + a) / (2 * a); // 0 at the base, 1 at the tip
    const halfWidth = b * (1 - t);
    return Math.max(-(u + a), u - a, Math.abs(v) - halfWidth);
  },
};
