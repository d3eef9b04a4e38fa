import type { Command } from 'commander';
import path from 'node:path';
import { parseDatasetName } from '../../data/datasets/index.js';
import { DATASET_NAMES, type DatasetName } from '../../data/types.js';
import { RESNET_ARCHS, type ResNetArch } from '../../models/resnet-archs.js';
import { assertWritableOutput } from '../../util/atomic.js';
import { explainOutOfMemory, FghError } from '../../util/errors.js';
import { acquireLock } from '../../util/lock.js';
import { positiveInt } from './eval.js';
import { loadTrainData } from './train.js';

interface FinetuneCli {
  dataset: DatasetName;
  root: string;
  arch: ResNetArch;
  pretrained?: string;
  out: string;
  epochs: number;
  batch: number;
  lr: number;
  size: number;
  seed: number;
  resume?: boolean;
  skipBadImages?: boolean;
  quiet?: boolean;
  json?: boolean;
}

function parseArch(v: string): ResNetArch {
  if (!(RESNET_ARCHS as readonly string[]).includes(v)) throw new FghError(`--arch must be ${RESNET_ARCHS.join(' or ')}, got "${v}"`);
  return v as ResNetArch;
}

function positiveNumber(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new FghError(`--lr must be a positive number, got "${v}"`);
  return n;
}

export function registerFinetune(program: Command): void {
  program
    .command('finetune')
    .description(
      'classification finetuning of a ResNet (sRLH\'s first stage): cross entropy, SGD lr 0.01 momentum 0.9 weight decay 1e-4, batch 32, ' +
        'Dropout(0.5) before the new classifier. OUT keeps the epoch with the lowest training loss (and says which); OUT.run holds the latest ' +
        'state for --resume. Use OUT as `fgh train --init`.',
    )
    .requiredOption('--dataset <name>', DATASET_NAMES.join('|'), parseDatasetName)
    .requiredOption('--root <dir>', 'dataset root directory')
    .requiredOption('--arch <arch>', RESNET_ARCHS.join('|'), parseArch)
    .option('--pretrained <ckpt>', 'ImageNet weights from fgh convert-weights (without it: from scratch)')
    .requiredOption('--out <ckpt>', 'checkpoint directory to write')
    .option('--epochs <n>', 'epochs (reference 500)', positiveInt('--epochs'), 500)
    .option('--batch <n>', 'batch size', positiveInt('--batch'), 32)
    .option('--lr <x>', 'learning rate', positiveNumber, 0.01)
    .option('--size <px>', 'input size', positiveInt('--size'), 224)
    .option('--seed <n>', 'seed', positiveInt('--seed'), 100)
    .option('--resume', 'continue from OUT.run')
    .option('--skip-bad-images', 'leave out (and list) missing, unreadable or oversized images instead of failing; every image is checked before the first epoch')
    .option('--quiet', 'no progress bars')
    .option('--json', 'print a JSON summary on stdout')
    .action(async (o: FinetuneCli) => {
      // OUT and OUT.run are written beside each other; an unwritable place would lose every epoch.
      assertWritableOutput(o.out, 'dir');
      // One run per checkpoint at a time: a second would overwrite the first's saves.
      const unlock = acquireLock(path.resolve(o.out), 'fgh finetune');
      try {
        const [{ describeBackend, selectBackend }, { finetune }, { StopSignal }] = await Promise.all([
          import('../../backend/select.js'),
          import('../../train/finetune.js'),
          import('../../train/run.js'),
        ]);
        const choice = await selectBackend();
        // Finetuning never evaluates: only the images it trains on are checked.
        const { data, skipped } = await loadTrainData(o.dataset, o.root, o.skipBadImages ?? false, { evaluates: false, quiet: o.quiet ?? false });
        const stop = new StopSignal();
        const uninstall = stop.install();
        try {
          const settings = `--batch ${o.batch} at --size ${o.size} on the ${describeBackend(choice)} backend`;
          const r = await explainOutOfMemory(settings, 'lower --batch or --size', () =>
            finetune({ data, arch: o.arch, ...(o.pretrained ? { pretrained: o.pretrained } : {}), out: o.out, size: o.size, epochs: o.epochs, batch: o.batch, lr: o.lr, seed: o.seed, resume: o.resume ?? false, quiet: o.quiet ?? false, stop }),
          );
          if (o.json) process.stdout.write(`${JSON.stringify({ ...r, skipped })}\n`);
          else if (r.complete) process.stdout.write(`finetuned ${o.arch}: ${o.out} holds epoch ${r.bestEpoch} (lowest training loss ${r.bestLoss?.toFixed(4)})\n`);
          else process.stdout.write(`saved (interrupted); --resume continues\n`);
          if (!r.complete) process.exitCode = 130;
        } finally {
          uninstall();
        }
      } finally {
        unlock();
      }
    });
}
