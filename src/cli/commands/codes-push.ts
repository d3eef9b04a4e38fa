import type { Command } from 'commander';
import { Progress } from '../../util/progress.js';
import { positiveInt } from './eval.js';

interface PushOpts {
  clickhouse: string;
  table: string;
  batch?: number;
  json?: boolean;
}

/** `fgh codes push`: a code store into a ClickHouse table (see src/retrieval/clickhouse/push.ts). */
export function registerCodesPush(codes: Command): void {
  codes
    .command('push')
    .description('insert a code store into a ClickHouse table (made if absent), for fgh search --clickhouse; resumable: a re-run inserts only what is missing')
    .argument('<codes>', 'the code store')
    .requiredOption('--clickhouse <url>', "the server's HTTP interface, e.g. http://127.0.0.1:8123 (user:password@ and /database may be in the URL)")
    .requiredOption('--table <name>', 'the table (or database.table); an existing one must be an fgh codes table of the same code length, or a Distributed table over such tables')
    .option('--batch <n>', 'items per INSERT (default 65536, at most 1000000)', positiveInt('--batch'))
    .option('--json', 'print one JSON object on stdout')
    .action(async (file: string, o: PushOpts) => {
      let bar: Progress | null = null;
      const { pushCodes } = await import('../../retrieval/clickhouse/push.js');
      const r = await pushCodes(file, o.clickhouse, o.table, {
        ...(o.batch !== undefined && { batch: o.batch }),
        progress: (done, total, inserted) => {
          bar ??= new Progress('push', total, { unit: 'codes' });
          bar.status(`${inserted} inserted`);
          bar.tick(done - bar.count);
        },
      });
      (bar as Progress | null)?.finish();
      if (o.json) {
        process.stdout.write(`${JSON.stringify({ table: r.table, engine: r.engine, bits: r.bits, count: r.count, created: r.created, inserted: r.inserted, already_present: r.present })}\n`);
        return;
      }
      const how = r.present ? `; ${r.present} were already there (an earlier push)` : '';
      process.stdout.write(`${r.created ? 'created' : 'pushed to'} ${r.table} (${r.engine}, ${r.bits}-bit codes): inserted ${r.inserted} of ${r.count} items${how}\n`);
    });
}
