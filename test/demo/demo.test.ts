import test from 'ava';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readCodeStore } from '../../src/retrieval/code-store.js';
import { fgh } from '../helpers/cli.js';

/**
 * `fgh demo`, the README's first command, end to end at a reduced length (4 of its 12 epochs, the
 * same data): every output it announces exists and is what it says, and the codes it trained rank
 * clearly better than the random-projection baseline it computes on the same images.
 */
test('fgh demo (4 epochs): the model, code stores, curve and configuration it names exist, and its codes beat random projections', (t) => {
  const work = mkdtempSync(path.join(os.tmpdir(), 'fgh-demo-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const out = path.join(work, 'demo');
  const r = fgh('demo', '--out', out, '--epochs', '4', '--quiet', '--json');
  t.is(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout) as { bits: number; map: number; baselineMap: number; queries: number; database: number; model: string; prCurve: string; distinctCodes: number; complete: boolean };
  t.true(s.complete);
  t.is(s.bits, 32);
  t.true(existsSync(s.model), 'the ONNX model');
  t.true(readFileSync(s.prCurve).subarray(1, 4).toString() === 'PNG', 'the precision-recall curve is a PNG');
  const db = readCodeStore(path.join(out, 'db.codes'));
  const query = readCodeStore(path.join(out, 'query.codes'));
  t.is(db.header.count, s.database);
  t.is(query.header.count, s.queries);
  t.is(db.header.bits, 32);
  t.true(existsSync(path.join(out, 'model', 'train-config.json')), 'the resolved training configuration');
  t.log(`mAP@all ${s.map.toFixed(4)} against the baseline's ${s.baselineMap.toFixed(4)}; ${s.distinctCodes} distinct database codes`);
  // One run here: 0.142 against 0.058 (8 epochs: 0.39; the full 12: 0.615).
  t.true(s.map > 1.8 * s.baselineMap, `the trained codes (${s.map}) rank well above random projections (${s.baselineMap})`);
  t.true(s.distinctCodes > 1, 'more than one code');
});
