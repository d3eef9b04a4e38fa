/**
 * Precision-recall curves by Hamming radius as a hand-written SVG (no plotting dependency), and as
 * PNG rendered from that SVG by sharp (librsvg).
 */
import path from 'node:path';
import { FghError } from '../util/errors.js';
import { writeFileAtomic, withAtomicPath } from '../util/atomic.js';
import type { PrCurve } from './metrics.js';

export interface PlotSeries {
  label: string;
  curve: PrCurve;
}

const W = 640;
const H = 480;
const M = { left: 70, right: 24, top: 48, bottom: 60 };
const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

const fmt = (v: number) => (Math.round(v * 100) / 100).toString();

export function prCurveSvg(series: PlotSeries[], title: string): string {
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const x = (recall: number) => M.left + recall * pw;
  const y = (precision: number) => M.top + (1 - precision) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Arial, Helvetica, sans-serif">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${W / 2}" y="28" font-size="16" text-anchor="middle">${esc(title)}</text>`);
  for (let i = 0; i <= 10; i++) {
    const v = i / 10;
    out.push(`<line x1="${x(v)}" y1="${M.top}" x2="${x(v)}" y2="${M.top + ph}" stroke="#e5e5e5"/>`);
    out.push(`<line x1="${M.left}" y1="${y(v)}" x2="${M.left + pw}" y2="${y(v)}" stroke="#e5e5e5"/>`);
    if (i % 2 === 0) {
      out.push(`<text x="${x(v)}" y="${M.top + ph + 18}" font-size="12" text-anchor="middle">${v.toFixed(1)}</text>`);
      out.push(`<text x="${M.left - 8}" y="${y(v) + 4}" font-size="12" text-anchor="end">${v.toFixed(1)}</text>`);
    }
  }
  out.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#333333"/>`);
  out.push(`<text x="${M.left + pw / 2}" y="${H - 16}" font-size="14" text-anchor="middle">Recall</text>`);
  out.push(`<text transform="translate(20 ${M.top + ph / 2}) rotate(-90)" font-size="14" text-anchor="middle">Precision</text>`);
  series.forEach((s, k) => {
    const colour = COLOURS[k % COLOURS.length]!;
    const pts = s.curve.radius.flatMap((r) => {
      const p = s.curve.precision[r];
      return p === null || p === undefined ? [] : [{ r, px: x(s.curve.recall[r]!), py: y(p) }];
    });
    if (pts.length) out.push(`<polyline fill="none" stroke="${colour}" stroke-width="2" points="${pts.map((p) => `${fmt(p.px)},${fmt(p.py)}`).join(' ')}"/>`);
    // Name the radii where there is room, so the curve reads as "precision within radius r".
    let last: { px: number; py: number } | null = null;
    for (const p of pts) {
      out.push(`<circle cx="${fmt(p.px)}" cy="${fmt(p.py)}" r="2.5" fill="${colour}"/>`);
      if (last && Math.hypot(p.px - last.px, p.py - last.py) < 36) continue;
      const right = p.px > M.left + pw - 50;
      out.push(`<text x="${fmt(right ? p.px - 5 : p.px + 5)}" y="${fmt(p.py - 6)}" font-size="10" fill="${colour}"${right ? ' text-anchor="end"' : ''}>r=${p.r}</text>`);
      last = p;
    }
    const ly = M.top + 20 + 18 * k;
    out.push(`<line x1="${M.left + pw - 190}" y1="${ly - 4}" x2="${M.left + pw - 165}" y2="${ly - 4}" stroke="${colour}" stroke-width="2"/>`);
    out.push(`<text x="${M.left + pw - 158}" y="${ly}" font-size="12">${esc(s.label)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/** Writes the plot as .svg or .png, chosen by the file's extension. */
export async function writePrCurve(file: string, series: PlotSeries[], title: string): Promise<void> {
  const ext = path.extname(file).toLowerCase();
  const svg = prCurveSvg(series, title);
  if (ext === '.svg') {
    await writeFileAtomic(file, svg);
  } else if (ext === '.png') {
    const sharp = (await import('sharp')).default;
    await withAtomicPath(file, async (tmp) => {
      await sharp(Buffer.from(svg), { density: 144 }).png().toFile(tmp);
    });
  } else {
    throw new FghError(`${file}: --pr-curve writes .svg or .png, not "${ext || '(no extension)'}"`);
  }
}
