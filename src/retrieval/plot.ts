/**
 * Precision-recall curves by Hamming radius, and plain line plots (e.g. mAP against code length),
 * as hand-written SVG (no plotting dependency), and as PNG rendered from that SVG by sharp (librsvg).
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

/** Writes an SVG document as .svg, or as .png rendered by sharp, chosen by the file's extension. */
async function writeSvgOrPng(file: string, svg: string, flag: string): Promise<void> {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.svg') {
    await writeFileAtomic(file, svg);
  } else if (ext === '.png') {
    const sharp = (await import('sharp')).default;
    await withAtomicPath(file, async (tmp) => {
      await sharp(Buffer.from(svg), { density: 144 }).png().toFile(tmp);
    });
  } else {
    throw new FghError(`${file}: ${flag} writes .svg or .png, not "${ext || '(no extension)'}"`);
  }
}

/** Writes the plot as .svg or .png, chosen by the file's extension. */
export async function writePrCurve(file: string, series: PlotSeries[], title: string): Promise<void> {
  await writeSvgOrPng(file, prCurveSvg(series, title), '--pr-curve');
}

export interface LineSeries {
  label: string;
  /** Points in x order; y null leaves a gap (e.g. a run that failed). */
  points: Array<{ x: number; y: number | null }>;
  /** Drawn dashed (e.g. baselines, next to the trained methods drawn solid). */
  dashed?: boolean;
  /** CSS colour (default: the next of the palette). */
  colour?: string;
}

export interface LinePlot {
  title: string;
  xLabel: string;
  yLabel: string;
  series: LineSeries[];
  /** x values to label (default: every x of the series). */
  xTicks?: number[];
  /** y axis range (default: 0 to the largest y rounded up to a tenth, at least 0.1). */
  yRange?: [number, number];
}

const LINE_W = 720;
const LINE_M = { left: 70, right: 150, top: 48, bottom: 60 };

/** A line plot with markers and the legend to the right of the axes. */
export function linePlotSvg(plot: LinePlot): string {
  const xs = [...new Set(plot.xTicks ?? plot.series.flatMap((s) => s.points.map((p) => p.x)))].sort((a, b) => a - b);
  const ys = plot.series.flatMap((s) => s.points.flatMap((p) => (p.y === null ? [] : [p.y])));
  const [y0, y1] = plot.yRange ?? [0, Math.max(0.1, Math.ceil(Math.max(0, ...ys) * 10 - 1e-9) / 10)];
  // A margin of 4% of the range on each side keeps the end markers off the frame.
  const lo = xs.length ? xs[0]! : 0;
  const hi = xs.length ? xs[xs.length - 1]! : 1;
  const pad = hi > lo ? 0.04 * (hi - lo) : 1;
  const [x0, x1] = [lo - pad, hi + pad];
  // The legend sits right of the axes, as wide as its longest label (about 7 px a character at 12 px).
  const right = Math.max(LINE_M.right, 60 + Math.ceil(7.2 * Math.max(0, ...plot.series.map((s) => s.label.length))));
  const width = LINE_W - LINE_M.right + right;
  const pw = width - LINE_M.left - right;
  const ph = H - LINE_M.top - LINE_M.bottom;
  const px = (v: number) => LINE_M.left + ((v - x0) / (x1 - x0)) * pw;
  const py = (v: number) => LINE_M.top + (1 - (v - y0) / (y1 - y0)) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${H}" viewBox="0 0 ${width} ${H}" font-family="DejaVu Sans, Arial, Helvetica, sans-serif">`);
  out.push(`<rect width="${width}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${LINE_M.left + pw / 2}" y="28" font-size="16" text-anchor="middle">${esc(plot.title)}</text>`);
  for (let i = 0; i <= 10; i++) {
    const v = y0 + ((y1 - y0) * i) / 10;
    out.push(`<line x1="${LINE_M.left}" y1="${fmt(py(v))}" x2="${LINE_M.left + pw}" y2="${fmt(py(v))}" stroke="#e5e5e5"/>`);
    if (i % 2 === 0) out.push(`<text x="${LINE_M.left - 8}" y="${fmt(py(v) + 4)}" font-size="12" text-anchor="end">${fmt(v)}</text>`);
  }
  for (const v of xs) {
    out.push(`<line x1="${fmt(px(v))}" y1="${LINE_M.top}" x2="${fmt(px(v))}" y2="${LINE_M.top + ph}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${fmt(px(v))}" y="${LINE_M.top + ph + 18}" font-size="12" text-anchor="middle">${v}</text>`);
  }
  out.push(`<rect x="${LINE_M.left}" y="${LINE_M.top}" width="${pw}" height="${ph}" fill="none" stroke="#333333"/>`);
  out.push(`<text x="${LINE_M.left + pw / 2}" y="${H - 16}" font-size="14" text-anchor="middle">${esc(plot.xLabel)}</text>`);
  out.push(`<text transform="translate(20 ${LINE_M.top + ph / 2}) rotate(-90)" font-size="14" text-anchor="middle">${esc(plot.yLabel)}</text>`);
  plot.series.forEach((s, k) => {
    const colour = s.colour ?? COLOURS[k % COLOURS.length]!;
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    // Consecutive defined points form one polyline; a null y breaks the line.
    const runs: Array<Array<{ x: number; y: number }>> = [[]];
    for (const p of [...s.points].sort((a, b) => a.x - b.x)) {
      if (p.y === null) runs.push([]);
      else runs[runs.length - 1]!.push({ x: p.x, y: p.y });
    }
    for (const run of runs) {
      if (run.length > 1) out.push(`<polyline fill="none" stroke="${colour}" stroke-width="2"${dash} points="${run.map((p) => `${fmt(px(p.x))},${fmt(py(p.y))}`).join(' ')}"/>`);
      for (const p of run) out.push(`<circle cx="${fmt(px(p.x))}" cy="${fmt(py(p.y))}" r="3" fill="${colour}"/>`);
    }
    const ly = LINE_M.top + 12 + 20 * k;
    const lx = LINE_M.left + pw + 14;
    out.push(`<line x1="${lx}" y1="${ly - 4}" x2="${lx + 26}" y2="${ly - 4}" stroke="${colour}" stroke-width="2"${dash}/>`);
    out.push(`<text x="${lx + 32}" y="${ly}" font-size="12">${esc(s.label)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/** Writes a line plot as .svg or .png, chosen by the file's extension. */
export async function writeLinePlot(file: string, plot: LinePlot): Promise<void> {
  await writeSvgOrPng(file, linePlotSvg(plot), 'a line plot');
}
