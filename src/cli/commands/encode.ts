import { Option, type Command } from 'commander';
import { parseDatasetName, type SplitSelector } from '../../data/datasets/index.js';
import { DATASET_NAMES, type DatasetName } from '../../data/types.js';
import type { EncodeSummary } from '../../encode/encoder.js';
import { parseEp, type EpRequest } from '../../encode/session.js';
import type { EncodeSource } from '../../encode/sources.js';
import { FghError } from '../../util/errors.js';
import { describeRange, parseShard, type ShardSpec } from '../../encode/shards.js';
import { positiveInt } from './eval.js';

interface EncodeCliOptions {
  model: string;
  dataset?: DatasetName;
  root?: string;
  split?: SplitSelector;
  images?: string;
  out: string;
  features?: string;
  ep: EpRequest;
  batch: number;
  threads?: number;
  resume?: boolean;
  shard?: ShardSpec;
  quiet?: boolean;
  commitEvery?: number;
  json?: boolean;
}

function parseSplit(v: string): SplitSelector {
  if (v === 'train' || v === 'test' || v === 'val' || v === 'all') return v;
  throw new FghError(`--split must be train, test, val or all, got "${v}"`);
}

function sourceOf(o: EncodeCliOptions): EncodeSource {
  if (o.images !== undefined) {
    if (o.dataset !== undefined || o.root !== undefined) throw new FghError('give either --images DIR or --dataset D --root DIR, not both');
    return { kind: 'images', dir: o.images };
  }
  if (o.dataset === undefined || o.root === undefined) throw new FghError('give --dataset D --root DIR [--split S], or --images DIR');
  return { kind: 'dataset', dataset: o.dataset, root: o.root, split: o.split ?? 'test' };
}

export function formatEncodeSummary(s: EncodeSummary): string {
  const lines = [
    `${s.complete ? 'wrote' : 'interrupted:'} ${s.out}: ${s.items} ${s.bits}-bit codes (${s.encoded} encoded now, ${s.imagesPerSecond.toFixed(1)} images/s on ${s.ep ?? 'an unrecorded provider'}, ${s.seconds.toFixed(1)} s)`,
  ];
  if (s.shard) lines.push(`shard ${s.shard.index}/${s.shard.count}: ${describeRange(s.shard)} of the listing; join the shards with fgh codes merge`);
  if (s.skipped) lines.push(`skipped ${s.skipped} unreadable or missing image(s)${s.skippedFile ? `: listed in ${s.skippedFile}` : ''}`);
  if (s.features) lines.push(`features: ${s.features}`);
  if (!s.complete) lines.push('run the same command with --resume to continue');
  return lines.join('\n');
}

export function registerEncode(program: Command): void {
  program
    .command('encode')
    .description(
      'encode images into a code store with an exported graph (onnxruntime-node). Images are decoded and preprocessed with the eval ' +
        'transform recorded in the graph, ahead of inference in a bounded queue. Unreadable images are skipped and listed in CODES.skipped.tsv. ' +
        'An interrupted encode (Ctrl-C, kill) continues with --resume.',
    )
    .requiredOption('--model <file.onnx>', 'graph from fgh export --onnx --checkpoint')
    .option('--dataset <name>', DATASET_NAMES.join('|'), parseDatasetName)
    .option('--root <dir>', 'dataset root directory')
    .option('--split <split>', 'train|test|val|all (default test: the queries)', parseSplit)
    .option('--images <dir>', 'every image under DIR (recursively, sorted; ids are relative paths; no labels)')
    .requiredOption('--out <codes>', 'code store to write')
    .option('--features <file.npy>', 'also write the tanh features as float32 [N, bits]')
    .option('--ep <provider>', 'execution provider: cpu, cuda or webgpu (each falls back to cpu, saying why on stderr and in the metadata of the store, shown by fgh codes info), cuda! or webgpu! (no fallback: fails before writing anything)', parseEp, 'cpu')
    .option('--batch <n>', 'images per inference batch', positiveInt('--batch'), 32)
    .option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)', positiveInt('--threads'))
    .option('--resume', 'continue an interrupted encode of the same model and images (with --shard, a shard already finished is left as it is)')
    .option(
      '--shard <I/N>',
      'encode only the I-th of N contiguous, near-equal ranges of the items in the listing\'s order (0 <= I < N); ' +
        'the store records the model, the listing and the range, and fgh codes merge joins the N stores into the one a single run writes',
      parseShard,
    )
    .option('--quiet', 'no progress output')
    .addOption(new Option('--commit-every <n>', 'items per store commit').argParser(positiveInt('--commit-every')).hideHelp())
    .option('--json', 'print a JSON summary on stdout')
    .action(async (o: EncodeCliOptions) => {
      const { encode } = await import('../../encode/encoder.js');
      let stop = false;
      const onSigint = (): void => {
        if (stop) process.exit(130);
        stop = true;
        process.stderr.write('\nstopping after the current batch (Ctrl-C again to quit at once)\n');
      };
      process.on('SIGINT', onSigint);
      try {
        const s = await encode({
          model: o.model,
          source: sourceOf(o),
          out: o.out,
          ...(o.features ? { features: o.features } : {}),
          ep: o.ep,
          batch: o.batch,
          ...(o.threads ? { threads: o.threads } : {}),
          resume: o.resume ?? false,
          ...(o.shard && { shard: o.shard }),
          quiet: o.quiet ?? false,
          ...(o.commitEvery ? { commitEvery: o.commitEvery } : {}),
          shouldStop: () => stop,
        });
        process.stdout.write(o.json ? `${JSON.stringify(s)}\n` : `${formatEncodeSummary(s)}\n`);
        if (!s.complete) process.exitCode = 130;
      } finally {
        process.off('SIGINT', onSigint);
      }
    });
}
