import type { Command } from 'commander';
import { loadDataset, parseDatasetName } from '../../data/datasets/index.js';
import { DATASET_NAMES } from '../../data/types.js';

export function registerDataset(program: Command): void {
  const dataset = program.command('dataset').description('inspect datasets');
  dataset
    .command('info')
    .description('read a dataset\'s metadata and report its classes, splits, warnings and missing images')
    .requiredOption('--dataset <name>', DATASET_NAMES.join('|'), parseDatasetName)
    .requiredOption('--root <dir>', 'dataset root directory')
    .option('--skip-bad-images', 'skip (and count) images that are missing instead of failing')
    .option('--json', 'print one JSON object on stdout')
    .action((o: { dataset: (typeof DATASET_NAMES)[number]; root: string; skipBadImages?: boolean; json?: boolean }) => {
      const d = loadDataset(o.dataset, { root: o.root, skipBadImages: o.skipBadImages ?? false });
      const splits = Object.fromEntries((['train', 'val', 'test'] as const).filter((k) => d.splits[k]).map((k) => [k, d.splits[k]!.length]));
      if (o.json) {
        process.stdout.write(`${JSON.stringify({ name: d.name, root: d.root, classes: d.classes.length, splits, warnings: d.warnings, skipped: d.skipped.length })}\n`);
        return;
      }
      const lines = [`${d.name} at ${d.root}`, `classes: ${d.classes.length}`, ...Object.entries(splits).map(([k, v]) => `${k}: ${v} images`)];
      if (d.skipped.length) lines.push(`skipped: ${d.skipped.length} missing images (first: ${d.skipped[0]!.path}, declared at ${d.skipped[0]!.source})`);
      for (const w of d.warnings) lines.push(`warning: ${w}`);
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
