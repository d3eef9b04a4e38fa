import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeCodeStore } from '../../src/retrieval/code-store.js';
import { packSigns } from '../../src/retrieval/codes.js';
import { writeNpySync } from '../../src/util/npy.js';
import { fgh } from '../helpers/cli.js';

/**
 * `fgh search` has no --bits: when the query codes are of another length than the database's,
 * the message says the length came from the database, not from a "--bits" nobody gave.
 */

let dir: string;
let db: string;

const signs = (n: number, bits: number): Float32Array => Float32Array.from({ length: n * bits }, (_, k) => ((k * 7) % 3 === 0 ? 1 : -1));

test.before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-search-lengths-'));
  db = path.join(dir, 'db.fghc');
  await writeCodeStore(db, { codes: packSigns(signs(5, 12), 5, 12) });
});

test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function refused(t: import('ava').ExecutionContext, query: string, message: string): void {
  const r = fgh('search', '--db', db, '--query-codes', query, '--topk', '2');
  t.is(r.status, 1, r.stderr);
  t.is(r.stderr, `fgh: ${message}\n`);
  t.notRegex(r.stderr, /--bits/);
}

test('a query store of another length: the message names the database as the source of 12 bits; the same length is searched', async (t) => {
  const q = path.join(dir, 'q16.fghc');
  await writeCodeStore(q, { codes: packSigns(signs(2, 16), 2, 16) });
  refused(t, q, `${q}: holds 16-bit codes, ${db} holds 12-bit codes`);
  // And one of the same length is searched.
  const q12 = path.join(dir, 'q12.npy');
  writeNpySync(q12, { dtype: 'f4', shape: [1, 12], data: signs(1, 12) });
  const r = fgh('search', '--db', db, '--query-codes', q12, '--topk', '2', '--json');
  t.is(r.status, 0, r.stderr);
  t.deepEqual(JSON.parse(r.stdout).results[0].distances, [0, 0]);
});

test('query .npy codes of another length (one column per bit, or packed bytes): the same', (t) => {
  const floats = path.join(dir, 'q16.npy');
  writeNpySync(floats, { dtype: 'f4', shape: [2, 16], data: signs(2, 16) });
  refused(t, floats, `${floats}: 16 columns (one per bit), but ${db} holds 12-bit codes`);
  const packed = path.join(dir, 'q24-packed.npy');
  writeNpySync(packed, { dtype: 'u1', shape: [2, 3], data: new Uint8Array(6) });
  refused(t, packed, `${packed}: 3 bytes per row (packed codes), but ${db} holds 12-bit codes (2 bytes per row)`);
});
