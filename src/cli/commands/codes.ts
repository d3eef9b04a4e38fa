import type { Command } from 'commander';
import path from 'node:path';
import { FghError } from '../../util/errors.js';
import { assertWritableOutput, writeFileAtomic } from '../../util/atomic.js';
import { readNpy, writeNpy } from '../../util/npy.js';
import { codesFromNpy, toPackedBytes, bytesPerCode, type CodeLayout } from '../../retrieval/codes.js';
import { labelsFromNpy, toMultiHot } from '../../retrieval/labels.js';
import { CodeStoreReader, appendToCodeStore, describeLayout, readCodeStore, recoverCodeStore, writeCodeStore, type StoreHeader } from '../../retrieval/code-store.js';
import { readIdsFile } from '../../retrieval/inputs.js';
import { codeLayout, positiveInt } from './eval.js';
import { registerCodesPush } from './codes-push.js';
import { registerCodesMerge } from './codes-merge.js';

interface ImportOpts {
  codes: string;
  labels?: string;
  ids?: string;
  bits?: number;
  layout?: CodeLayout;
  out: string;
  append?: boolean;
  json?: boolean;
}

function headerJson(file: string, h: StoreHeader, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { file, version: h.version, count: h.count, bits: h.bits, labels: h.labels, num_classes: h.numClasses, chunks: h.chunks, bytes: h.end, ...extra };
}

export function registerCodes(program: Command): void {
  const codes = program.command('codes').description('code stores: import from / export to NumPy, inspect');
  registerCodesPush(codes);

  codes
    .command('import')
    .description('make a code store from .npy codes (packed uint8 [N,bytes], ±1 float or {0,1} [N,bits]), labels and ids')
    .requiredOption('--codes <file.npy>', 'the codes')
    .option('--labels <file.npy>', '[N] class ids or [N, classes] one-hot/multi-hot')
    .option('--ids <file.txt>', 'one item id per line (default: 0, 1, 2, ...)')
    .option('--bits <n>', 'bits used of packed uint8 codes (default all)', positiveInt('--bits'))
    .option('--layout <l>', 'how uint8 codes are laid out: auto (packed), packed, bits', codeLayout)
    .requiredOption('--out <codes>', 'the code store to write')
    .option('--append', 'append to an existing store at --out instead of replacing it')
    .option('--json', 'print one JSON object on stdout')
    .action(async (o: ImportOpts) => {
      // Before reading a large input: an unwritable --out fails at once.
      if (!o.append) assertWritableOutput(o.out, 'file');
      const c = codesFromNpy(readNpy(o.codes), o.codes, { ...(o.bits !== undefined && { bits: o.bits }), ...(o.layout && { layout: o.layout }) });
      const labels = o.labels ? labelsFromNpy(readNpy(o.labels), o.labels) : null;
      if (labels && labels.count !== c.count) throw new FghError(`${o.labels}: ${labels.count} labels for ${c.count} codes`);
      const ids = o.ids ? readIdsFile(o.ids) : undefined;
      if (ids && ids.length !== c.count) throw new FghError(`${o.ids}: ${ids.length} lines for ${c.count} codes`);
      const batch = { codes: c, labels, ...(ids && { ids }) };
      const h = o.append ? appendToCodeStore(o.out, batch) : await writeCodeStore(o.out, batch);
      if (o.json) process.stdout.write(`${JSON.stringify(headerJson(o.out, h, { added: c.count }))}\n`);
      else process.stdout.write(`${o.append ? 'appended' : 'wrote'} ${c.count} items to ${o.out}: ${describeLayout(h)}\n`);
    });

  codes
    .command('export')
    .description('write PREFIX.codes.npy (packed uint8 [N, ceil(bits/8)]), PREFIX.labels.npy and PREFIX.ids.txt')
    .argument('<codes>', 'the code store')
    .requiredOption('--npy <prefix>', 'output prefix')
    .option('--json', 'print one JSON object on stdout')
    .action(async (file: string, o: { npy: string; json?: boolean }) => {
      const s = readCodeStore(file);
      const n = s.header.count;
      for (let i = 0; i < n; i++) {
        if (/[\r\n]/.test(s.ids[i]!)) throw new FghError(`${file}: item ${i} has an id with a line break; it cannot be written to ${o.npy}.ids.txt`);
      }
      const written: string[] = [];
      const codesFile = `${o.npy}.codes.npy`;
      await writeNpy(codesFile, { dtype: 'u1', shape: [n, bytesPerCode(s.header.bits)], data: toPackedBytes(s.codes) });
      written.push(codesFile);
      if (s.labels) {
        const labelsFile = `${o.npy}.labels.npy`;
        if (s.labels.kind === 'single') await writeNpy(labelsFile, { dtype: 'i4', shape: [n], data: s.labels.ids });
        else await writeNpy(labelsFile, { dtype: 'u1', shape: [n, s.labels.numClasses], data: toMultiHot(s.labels) });
        written.push(labelsFile);
      }
      const idsFile = `${o.npy}.ids.txt`;
      await writeFileAtomic(idsFile, s.ids.map((x) => `${x}\n`).join(''));
      written.push(idsFile);
      if (o.json) process.stdout.write(`${JSON.stringify({ files: written, count: n, bits: s.header.bits, labels: s.header.labels })}\n`);
      else process.stdout.write(`wrote ${written.map((f) => path.basename(f)).join(', ')} (${describeLayout(s.header)})${s.labels ? '' : '; the store has no labels'}\n`);
    });

  codes
    .command('info')
    .description('check a code store (every checksum) and describe it')
    .argument('<codes>', 'the code store')
    .option('--json', 'print one JSON object on stdout')
    .action((file: string, o: { json?: boolean }) => {
      const r = CodeStoreReader.open(file);
      try {
        for (const chunk of r.chunks()) void chunk; // reading checks every chunk
        const h = r.header;
        if (o.json) {
          process.stdout.write(`${JSON.stringify(headerJson(file, h, { uncommitted_bytes: r.uncommittedBytes, damage: r.damage, metadata: r.metadata }))}\n`);
          return;
        }
        const lines = [`${file}: fgh code store version ${h.version}, ${describeLayout(h)}`, `${h.chunks} chunks, ${h.end} bytes, all checksums valid`];
        if (r.metadata) lines.push(`metadata: ${JSON.stringify(r.metadata)}`);
        if (r.damage) lines.push(`warning: ${r.damage}`);
        if (r.uncommittedBytes > 0) lines.push(`${r.uncommittedBytes} bytes after the committed end (an interrupted append; ignored, removed by the next append)`);
        process.stdout.write(`${lines.join('\n')}\n`);
      } finally {
        r.close();
      }
    });

  codes
    .command('recover')
    .description('rescue a damaged code store: every complete, checksummed chunk from the start, written as a new store')
    .argument('<codes>', 'the damaged code store (left as it is)')
    .requiredOption('--out <codes>', 'the new store')
    .option('--json', 'print one JSON object on stdout')
    .action(async (file: string, o: { out: string; json?: boolean }) => {
      const r = await recoverCodeStore(file, o.out);
      if (o.json) {
        process.stdout.write(`${JSON.stringify({ file, out: o.out, items: r.items, chunks: r.chunks, recorded: r.recorded, dropped_bytes: r.droppedBytes, stopped_by: r.stoppedBy })}\n`);
        return;
      }
      const lines = [`wrote ${o.out}: ${r.items} items from ${r.chunks} intact chunks of ${file}${r.recorded === null ? ' (neither superblock was readable)' : ` (its readable superblock recorded ${r.recorded})`}`];
      if (r.droppedBytes > 0) lines.push(`dropped ${r.droppedBytes} bytes after the last intact chunk${r.stoppedBy ? `: ${r.stoppedBy}` : ''}`);
      process.stdout.write(`${lines.join('\n')}\n`);
    });

  registerCodesMerge(codes);
}
