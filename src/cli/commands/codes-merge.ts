import type { Command } from 'commander';
import { mergeShards } from '../../encode/merge.js';

/** `fgh codes merge SHARD... --out STORE` (see src/encode/merge.ts). */
export function registerCodesMerge(codes: Command): void {
  codes
    .command('merge')
    .description(
      'join the stores of fgh encode --shard I/N into the store a single fgh encode writes (same items, order, codes, labels, ids and metadata, ' +
        'without the shard); refuses shards of another model, bit length or listing, gaps, overlaps, repeats and unfinished shards. ' +
        'The shards\' skip lists are joined into STORE.skipped.tsv',
    )
    .argument('<shards...>', 'the shard stores, in any order')
    .requiredOption('--out <codes>', 'the merged store (written atomically)')
    .option('--quiet', 'no progress output')
    .option('--json', 'print one JSON object on stdout')
    .action(async (files: string[], o: { out: string; quiet?: boolean; json?: boolean }) => {
      const s = await mergeShards(files, o.out, { quiet: o.quiet ?? false });
      if (o.json) {
        process.stdout.write(`${JSON.stringify(s)}\n`);
        return;
      }
      const lines = [`wrote ${s.out}: ${s.items} ${s.bits}-bit codes from ${s.shards} shards of "${s.listing.source}" (${s.listing.count} items)`];
      if (s.skipped) lines.push(`skipped ${s.skipped} unreadable or missing image(s): listed in ${s.skippedFile}`);
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
