import test from 'ava';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { linePlotSvg, writeLinePlot, writePrCurve } from '../../src/retrieval/plot.js';

const plot = {
  title: 'mAP & bits',
  xLabel: 'bits',
  yLabel: 'mAP',
  xTicks: [12, 24, 32, 48],
  series: [
    { label: 'a', points: [{ x: 12, y: 0.5 }, { x: 24, y: 0.6 }, { x: 32, y: null }, { x: 48, y: 0.7 }] },
    { label: 'b <base>', dashed: true, points: [12, 24, 32, 48].map((x) => ({ x, y: 0.25 })) },
  ],
};

test('line plot: one polyline per unbroken run, y scaled to the rounded-up maximum, x ticks in order, text escaped', (t) => {
  const svg = linePlotSvg(plot);
  // Series a: 12-24 is a line, 48 stands alone after the gap; series b is one dashed line.
  t.is(svg.match(/<polyline /g)?.length, 2);
  t.is(svg.match(/stroke-dasharray/g)?.length, 2); // b's line and its legend entry
  t.is(svg.match(/<circle /g)?.length, 3 + 4);
  t.true(svg.includes('mAP &amp; bits'));
  t.true(svg.includes('b &lt;base&gt;'));
  // The y axis runs 0..0.7 (0.7 rounded up to a tenth): the 0.7 marker sits on the top edge, 0.25 at 25/70 of the height.
  const cy = [...svg.matchAll(/<circle cx="([\d.]+)" cy="([\d.]+)"/g)].map((m) => [Number(m[1]), Number(m[2])] as const);
  const top = 48;
  const height = 480 - 48 - 60;
  t.is(cy[2]![1], top);
  t.true(Math.abs(cy[3]![1] - (top + height * (1 - 0.25 / 0.7))) < 0.01);
  const xs = cy.slice(3).map((c) => c[0]);
  t.deepEqual([...xs].sort((p, q) => p - q), xs);
  t.true(xs[0]! > 70 && (xs[1]! - xs[0]!) / (xs[3]! - xs[0]!) > 0.33 && (xs[1]! - xs[0]!) / (xs[3]! - xs[0]!) < 0.34, 'x is linear in the value: 24 is a third of the way from 12 to 48');
});

test('line plot and PR curve files: .svg as text, .png rendered, other extensions refused', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-plot-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await writeLinePlot(path.join(dir, 'q.svg'), plot);
  t.is(readFileSync(path.join(dir, 'q.svg'), 'utf8'), linePlotSvg(plot));
  await writeLinePlot(path.join(dir, 'q.png'), plot);
  const meta = await sharp(path.join(dir, 'q.png')).metadata();
  t.is(meta.format, 'png');
  t.is(meta.height, 960);
  await t.throwsAsync(writeLinePlot(path.join(dir, 'q.jpg'), plot), { message: /writes \.svg or \.png/ });
  const curve = { radius: [0, 1, 2], precision: [1, 0.5, null], recall: [0.1, 0.5, 1], queries: 3 };
  await writePrCurve(path.join(dir, 'pr.png'), [{ label: 'x', curve }], 'pr');
  t.is((await sharp(path.join(dir, 'pr.png')).metadata()).width, 1280);
  await t.throwsAsync(writePrCurve(path.join(dir, 'pr.gif'), [{ label: 'x', curve }], 'pr'), { message: /--pr-curve writes \.svg or \.png, not "\.gif"/ });
});
