/**
 * bench:clickhouse: 1,000,000 random 64-bit codes pushed with `fgh codes push`'s code through a
 * Distributed table over two ClickHouse shards (two servers started here on loopback ports), then
 * top-100 of 1,000 queries searched there and by fgh's local search in the same run; prints both
 * times, their ratio, the insert throughput, and whether the results are identical.
 * Options: --n N, --queries N, --k N, --batch N, --per-statement N.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeCodeStore } from '../../src/retrieval/code-store.js';
import { searchTopK } from '../../src/retrieval/search.js';
import { pushCodes } from '../../src/retrieval/clickhouse/push.js';
import { ClickHouseCodes } from '../../src/retrieval/clickhouse/search.js';
import { createTableSql } from '../../src/retrieval/clickhouse/sql.js';
import { Rng } from '../../src/util/rng.js';
import { clickhouseServerCommand, freePorts, sql, startClickHouse, type ClickHouseServer } from '../helpers/clickhouse.js';
import { numberArg, randomCodes } from '../helpers/bench.js';


const N = numberArg('n', 1_000_000);
const Q = numberArg('queries', 1000);
const K = numberArg('k', 100);
const BATCH = numberArg('batch', 65536);
const PER_STATEMENT = numberArg('per-statement', 64);
const BITS = 64;


const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

async function main(): Promise<void> {
  const command = clickhouseServerCommand();
  if (!command) throw new Error('no ClickHouse server (Debian: apt-get install clickhouse-server)');
  const rng = new Rng(2024);
  const db = randomCodes(rng, N, BITS);
  const q = randomCodes(rng, Q, BITS);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fgh-bench-clickhouse-'));
  const servers: ClickHouseServer[] = [];
  try {
    const [h1, t1, h2, t2] = await freePorts(4);
    const shards = { fgh_two: [{ http: h1!, tcp: t1! }, { http: h2!, tcp: t2! }] };
    servers.push(...(await Promise.all(shards.fgh_two.map((p, i) => startClickHouse(command, path.join(dir, `s${i}`), p, shards)))));
    const [a, b] = servers as [ClickHouseServer, ClickHouseServer];
    const version = (await sql(a, 'SELECT version()')).trim();
    console.log(`bench:clickhouse  top-${K} of ${Q} queries over ${N.toLocaleString('en-US')} random ${BITS}-bit codes; ClickHouse ${version}, 2 shards (2 servers on this machine), ${os.availableParallelism()} cores, node ${process.version}`);

    const store = path.join(dir, 'db.fghc');
    await writeCodeStore(store, { codes: db });
    for (const srv of [a, b]) await sql(srv, createTableSql('codes_local', BITS));
    await sql(a, createTableSql('codes', BITS, 'Distributed(fgh_two, default, codes_local, item)'));
    let t = performance.now();
    const pushed = await pushCodes(store, a.url, 'codes', { batch: BATCH });
    const pushMs = performance.now() - t;
    console.log(`push through the Distributed table: ${pushed.inserted.toLocaleString('en-US')} codes in ${s(pushMs)}, ${Math.round(pushed.inserted / (pushMs / 1000)).toLocaleString('en-US')} codes/s (batches of ${BATCH})`);

    t = performance.now();
    const one = await searchTopK(db, q, K, { threads: 1 });
    const localOne = performance.now() - t;
    t = performance.now();
    const all = await searchTopK(db, q, K);
    const localAll = performance.now() - t;
    console.log(`fgh search (local), 1 thread:   ${s(localOne)}  (${(localOne / Q).toFixed(2)} ms a query)`);
    console.log(`fgh search (local), ${all.threads} threads:  ${s(localAll)}  (${(localAll / Q).toFixed(2)} ms a query)`);

    const remote = await ClickHouseCodes.open(a.url, 'codes');
    try {
      t = performance.now();
      const r = await remote.search(q, K, { perStatement: PER_STATEMENT });
      const chMs = performance.now() - t;
      console.log(`fgh search --clickhouse (2 shards): ${s(chMs)}  (${(chMs / Q).toFixed(2)} ms a query, ${PER_STATEMENT} queries a statement)`);
      console.log(`ratio ClickHouse / local: ${(chMs / localOne).toFixed(1)}x the 1-thread time, ${(chMs / localAll).toFixed(1)}x the ${all.threads}-thread time`);
      const same = r.k === one.k && r.indices.every((v, i) => v === one.indices[i]) && r.distances.every((v, i) => v === one.distances[i]);
      console.log(same ? `results identical: the same ${Q} x ${K} items and distances` : 'MISMATCH between ClickHouse and local results');
      if (!same) process.exitCode = 1;
    } finally {
      await remote.close();
    }
    const sizes = (await sql(a, "SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND table = 'codes_local'")).trim();
    console.log(`shard 1 holds ${Number(sizes).toLocaleString('en-US')} bytes on disk for its half (local memory: ${(N * 8).toLocaleString('en-US')} bytes of codes)`);
  } finally {
    for (const srv of servers) srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
