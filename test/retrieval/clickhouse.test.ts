/**
 * `fgh codes push` and `fgh search --clickhouse` against real ClickHouse servers (Debian's
 * clickhouse-server, started here on loopback ports): one server on its own, and a Distributed
 * table over two shards (the first server and a second one). The server computes every distance
 * itself, so each search is checked against fgh's local search on the same codes, item for item.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fromPackedBytes, type Codes } from '../../src/retrieval/codes.js';
import { readCodeStore, writeCodeStore } from '../../src/retrieval/code-store.js';
import { multiHotLabels, singleLabels, toMultiHot, type Labels } from '../../src/retrieval/labels.js';
import { searchTopK } from '../../src/retrieval/search.js';
import { pushCodes } from '../../src/retrieval/clickhouse/push.js';
import { ClickHouseCodes } from '../../src/retrieval/clickhouse/search.js';
import { createTableSql, tsvRows, insertColumns } from '../../src/retrieval/clickhouse/sql.js';
import { FghError } from '../../src/util/errors.js';
import { Rng } from '../../src/util/rng.js';
import { freePorts, missingClickHouseMessage, referenceClickHouse, sql, startClickHouse, type ClickHouseServer } from '../helpers/clickhouse.js';
import { projectRoot } from '../helpers/cli.js';

const command = referenceClickHouse();
const N = 100_000;
const Q = 16;
const K = 25;
const run = promisify(execFile);
const bin = path.join(projectRoot, 'bin', 'fgh.js');

/** Random codes drawn from `pool` distinct ones, so that equal distances (ties) are everywhere. */
function randomCodes(rng: Rng, bits: number, n: number, pool: number): Codes {
  const bytes = Math.ceil(bits / 8);
  const distinct = new Uint8Array(pool * bytes).map(() => rng.nextU32() & 0xff);
  const packed = new Uint8Array(n * bytes);
  for (let i = 0; i < n; i++) {
    const k = rng.int(pool);
    packed.set(distinct.subarray(k * bytes, (k + 1) * bytes), i * bytes);
  }
  return fromPackedBytes(packed, n, bytes, bits);
}

/** [N, classes] 0/1 with up to 3 classes per item (none: unlabelled). */
function multiHot(rng: Rng, classes: number): Uint8Array {
  const v = new Uint8Array(N * classes);
  for (let i = 0; i < N; i++) for (let j = rng.int(4); j > 0; j--) v[i * classes + rng.int(classes)] = 1;
  return v;
}

/** Ids with the characters TabSeparated must escape, and labels of both layouts (unlabelled items too). */
function storeBatch(rng: Rng, bits: number): { codes: Codes; labels: Labels; ids: string[] } {
  const codes = randomCodes(rng, bits, N, 30_000);
  const ids = Array.from({ length: N }, (_, i) => (i % 997 === 0 ? `odd\t\\ id\n${i} é` : `img/${i}.jpg`));
  const labels =
    bits % 64 === 0
      ? singleLabels(Array.from({ length: N }, (_, i) => (i % 13 === 0 ? -1 : rng.int(200))), 200)
      : multiHotLabels(multiHot(rng, 40), N, 40);
  return { codes, labels, ids };
}

let dir = '';
let a: ClickHouseServer;
let b: ClickHouseServer;
const stores = new Map<number, { file: string; queries: string; codes: Codes; q: Codes; labels: Labels; ids: string[] }>();
const BITS = [32, 48, 64, 128];

if (command) {
  test.before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-clickhouse-'));
    const [h1, t1, h2, t2] = await freePorts(4);
    const shards = { fgh_two: [{ http: h1!, tcp: t1! }, { http: h2!, tcp: t2! }] };
    const starting = Promise.all([startClickHouse(command, path.join(dir, 'a'), shards.fgh_two[0]!, shards), startClickHouse(command, path.join(dir, 'b'), shards.fgh_two[1]!, shards)]);
    const rng = new Rng(20);
    for (const bits of BITS) {
      const batch = storeBatch(rng, bits);
      const file = path.join(dir, `db${bits}.fghc`);
      await writeCodeStore(file, batch);
      // Queries: random codes, and a few of the database's own (distance 0, with duplicates).
      const q = randomCodes(rng, bits, Q, 1_000_000);
      for (let i = 0; i < 4; i++) q.data.set(batch.codes.data.subarray(i * 7919 * q.stride, (i * 7919 + 1) * q.stride), i * q.stride);
      const queries = path.join(dir, `q${bits}.fghc`);
      await writeCodeStore(queries, { codes: q });
      stores.set(bits, { file, queries, q, ...batch });
    }
    [a, b] = await starting;
  });
  test.after.always(() => {
    a?.stop();
    b?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
}

/** The Distributed table `name` over local tables `name_local` on both servers, sharded by item. */
async function distributed(name: string, bits: number): Promise<void> {
  for (const s of [a, b]) await sql(s, createTableSql(`${name}_local`, bits));
  await sql(a, createTableSql(name, bits, `Distributed(fgh_two, default, ${name}_local, item)`));
}

async function sameAsLocal(t: import('ava').ExecutionContext, url: string, table: string, bits: number): Promise<void> {
  const s = stores.get(bits)!;
  const local = await searchTopK(s.codes, s.q, K, { threads: 1 });
  const remote = await ClickHouseCodes.open(url, table);
  try {
    t.is(remote.bits, bits);
    t.is(remote.count, N);
    const r = await remote.search(s.q, K, { perStatement: 5 });
    t.is(r.k, K);
    t.deepEqual(Array.from(r.distances), Array.from(local.distances), `${table}: distances`);
    t.deepEqual(Array.from(r.indices), Array.from(local.indices), `${table}: items, ties by index`);
    t.deepEqual(r.ids, Array.from(local.indices, (j) => s.ids[j]!), `${table}: ids`);
    // A tie at the K-th distance would be cut arbitrarily by a wrong order: there must be some.
    t.true(Array.from({ length: Q }, (_, i) => local.distances[i * K + K - 1] === local.distances[i * K + K - 2]).some(Boolean));
  } finally {
    await remote.close();
  }
}

for (const bits of BITS) {
  (command ? test : test.skip)(`${bits}-bit codes: push to one server, search it: the same top-${K} as local search${command ? '' : ` (${missingClickHouseMessage})`}`, async (t) => {
    const s = stores.get(bits)!;
    const table = `single_${bits}`;
    const r = await pushCodes(s.file, a.url, table, { batch: 30_000 });
    t.like(r, { created: true, inserted: N, present: 0, bits, count: N, engine: 'ReplacingMergeTree' });
    await sameAsLocal(t, a.url, table, bits);
    // Ids and labels went in as the store holds them (TabSeparated escapes, both label layouts).
    const rows = JSON.parse(`[${(await sql(a, `SELECT item, id, labels FROM ${table} WHERE item IN (0, 997, 1994, 5, 13) ORDER BY item FORMAT JSONEachRow`)).trim().split('\n').join(',')}]`) as Array<{ item: string; id: string; labels: number[] }>;
    const hot = toMultiHot(s.labels);
    const classes = (i: number) => Array.from({ length: s.labels.numClasses }, (_, c) => c).filter((c) => hot[i * s.labels.numClasses + c] === 1);
    t.deepEqual(rows.map((x) => [Number(x.item), x.id, x.labels]), [0, 5, 13, 997, 1994].map((i) => [i, s.ids[i], classes(i)]));
    t.true(rows.some((x) => x.id.includes('\t') && x.id.includes('\n')));
  });

  (command ? test : test.skip)(`${bits}-bit codes: push through a Distributed table over two shards, search it: the same top-${K} as local search${command ? '' : ` (${missingClickHouseMessage})`}`, async (t) => {
    const s = stores.get(bits)!;
    const table = `dist_${bits}`;
    await distributed(table, bits);
    if (bits === 128) {
      // Once through the commands themselves: the same JSON as fgh search --db, byte for byte.
      const push = await run(process.execPath, [bin, 'codes', 'push', s.file, '--clickhouse', a.url, '--table', table, '--json']);
      t.like(JSON.parse(push.stdout), { table, engine: 'Distributed', bits, count: N, inserted: N, created: false });
      t.regex(push.stderr, /push: 100000\/100000 codes/);
      const [remote, local] = await Promise.all([
        run(process.execPath, [bin, 'search', '--clickhouse', a.url, '--table', table, '--query-codes', s.queries, '--topk', String(K), '--json'], { maxBuffer: 1 << 26 }),
        run(process.execPath, [bin, 'search', '--db', s.file, '--query-codes', s.queries, '--topk', String(K), '--json'], { maxBuffer: 1 << 26 }),
      ]);
      t.is(remote.stdout, local.stdout);
      t.is(JSON.parse(remote.stdout).results.length, Q);
    } else {
      const r = await pushCodes(s.file, a.url, table);
      t.like(r, { created: false, inserted: N, engine: 'Distributed' });
    }
    // Both shards hold their half, nothing is queued on the first server.
    t.is((await sql(a, `SELECT count() FROM ${table}_local`)).trim(), String(N / 2));
    t.is((await sql(b, `SELECT count() FROM ${table}_local`)).trim(), String(N / 2));
    await sameAsLocal(t, a.url, table, bits);
  });
}

(command ? test : test.skip)(`push after a kill inserts only what is missing, also what reached one shard only${command ? '' : ` (${missingClickHouseMessage})`}`, async (t) => {
  const s = stores.get(64)!;
  const table = 'resume_64';
  await distributed(table, 64);
  const killed = await run(process.execPath, [bin, 'codes', 'push', s.file, '--clickhouse', a.url, '--table', table, '--batch', '10000'], { env: { ...process.env, FGH_TEST_KILL_AFTER_PUSH: '3' } }).catch((e: { signal?: string }) => e);
  t.is((killed as { signal?: string }).signal, 'SIGKILL');
  t.is((await sql(a, `SELECT count(), uniqExact(item), max(item) FROM ${table}`)).trim(), '30000\t30000\t29999');
  // An insert that reached the second shard only: the odd items of [40000, 50000).
  const store = readCodeStore(s.file);
  const odd = Array.from({ length: 5000 }, (_, j) => 40001 + 2 * j);
  await sql(b, `INSERT INTO ${table}_local (${insertColumns(64).join(', ')}) FORMAT TabSeparated\n${tsvRows(store.codes, store.labels, store.ids, 0, odd)}`);
  const again = await run(process.execPath, [bin, 'codes', 'push', s.file, '--clickhouse', a.url, '--table', table, '--batch', '10000', '--json']);
  t.like(JSON.parse(again.stdout), { inserted: N - 35000, already_present: 35000, count: N });
  t.is((await sql(a, `SELECT count(), uniqExact(item) FROM ${table}`)).trim(), `${N}\t${N}`);
  // A third run finds everything there.
  const third = await pushCodes(s.file, a.url, table, { batch: 7000 });
  t.like(third, { inserted: 0, present: N });
  await sameAsLocal(t, a.url, table, 64);
});

(command ? test : test.skip)(`push refuses a table of another code length or another store, in one line${command ? '' : ` (${missingClickHouseMessage})`}`, async (t) => {
  const rng = new Rng(99);
  const [mine, other, longer] = ['mine32', 'other32', 'other48'].map((f) => path.join(dir, `${f}.fghc`)) as [string, string, string];
  await writeCodeStore(mine, { codes: randomCodes(rng, 32, 1000, 1000), ids: Array.from({ length: 1000 }, (_, i) => `m${i}`) });
  await writeCodeStore(other, { codes: randomCodes(rng, 32, 1000, 1000) });
  await writeCodeStore(longer, { codes: randomCodes(rng, 48, 1000, 1000) });
  await pushCodes(mine, a.url, 'guard_32');
  const e1 = await t.throwsAsync(pushCodes(longer, a.url, 'guard_32'), { instanceOf: FghError });
  t.regex(e1!.message, /^table guard_32 holds 32-bit codes, .*other48\.fghc 48-bit codes$/);
  // Same length, other codes: the first item present differs.
  const e2 = await t.throwsAsync(pushCodes(other, a.url, 'guard_32'), { instanceOf: FghError });
  t.regex(e2!.message, /^table guard_32 holds another item 0 than .*other32\.fghc/);
  const e3 = await t.throwsAsync(ClickHouseCodes.open(a.url, 'no_such_table'), { instanceOf: FghError });
  t.regex(e3!.message, /has no table no_such_table/);
  const e4 = await t.throwsAsync(pushCodes(other, a.url, 'x; DROP TABLE guard_32'), { instanceOf: FghError });
  t.regex(e4!.message, /^--table "x; DROP TABLE guard_32": give a table name/);
  t.false(e1!.message.includes('\n') || e2!.message.includes('\n'));
});
