import type { Command } from 'commander';
import { parseDatasetName } from '../../data/datasets/index.js';
import { checkAllowHost } from '../../serve/hosts.js';
import type { ServeOptions } from '../../serve/server.js';
import { FghError } from '../../util/errors.js';

function parsePort(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new FghError(`--port must be an integer in 0..65535, got "${v}"`);
  return n;
}

type ServeFlags = ServeOptions & { host: string; port: number; allowHost: string[]; json?: boolean };

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description(
      'serve a retrieval page: the browser loads the graph with onnxruntime-web (WebGPU where present, else wasm) and the code store, ' +
        'encodes a picked or dropped image itself (the same preprocessing as fgh encode) and shows the top-K gallery images with their ' +
        'Hamming distances, labels and the time of each step. A second view shows mAP per code length (--runs) and the PR curve (--query). ' +
        'Only files under --images are served. Stop with Ctrl-C.',
    )
    .requiredOption('--model <file.onnx>', 'hashing graph from fgh export --onnx --checkpoint')
    .requiredOption('--db <codes>', 'gallery code store from fgh encode (same model)')
    .requiredOption('--images <dir>', 'folder the gallery images are under (fgh encode --images DIR, or the dataset root with --dataset)')
    .option('--dataset <name>', 'the gallery was encoded from this dataset (with --root = --images): map its ids to files and name classes', parseDatasetName)
    .option('--query <codes>', 'query code store (e.g. the test split): the evaluation view scores it against --db')
    .option('--runs <dir>', 'a fgh train --out folder: the evaluation view lists mAP per code length from its logs')
    .option('--host <addr>', 'address to bind (anything but localhost exposes the gallery to the network); a name given here is also accepted as Host', '127.0.0.1')
    .option(
      '--allow-host <name>',
      'accept requests for this host name too (repeatable); only localhost, IP addresses and --host are accepted otherwise, against DNS rebinding',
      (v: string, all: string[]) => [...all, checkAllowHost(v)],
      [] as string[],
    )
    .option('--port <n>', 'port (0: any free port)', parsePort, 8080)
    .option('--json', 'print {"url": ...} on stdout once listening')
    .action(async (o: ServeFlags) => {
      const { startServer } = await import('../../serve/server.js');
      const s = await startServer({
        model: o.model,
        db: o.db,
        images: o.images,
        host: o.host,
        port: o.port,
        allowHosts: o.allowHost,
        ...(o.dataset ? { dataset: o.dataset } : {}),
        ...(o.query ? { query: o.query } : {}),
        ...(o.runs ? { runs: o.runs } : {}),
      });
      if (o.json) process.stdout.write(`${JSON.stringify({ url: s.url, model: s.info.model, db: s.info.db })}\n`);
      else process.stdout.write(`serving ${s.info.db.count} ${s.info.db.bits}-bit codes (${s.info.db.withImages} with images) at ${s.url}  (Ctrl-C stops)\n`);
      const stop = (): void => {
        void s.close().then(() => process.exit(0));
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
}
