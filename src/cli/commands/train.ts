import { Option, type Command } from 'commander';
import path from 'node:path';
import { describeBackend, selectBackend } from '../../backend/select.js';
import { loadDataset, parseDatasetName, split } from '../../data/datasets/index.js';
import { DATASET_NAMES, type DatasetName } from '../../data/types.js';
import { HASH_METHODS, type HashMethod } from '../../models/hashing.js';
import { semiconSplit } from '../../models/semicon.js';
import { StopSignal } from '../../train/run.js';
import { checkSrlhSize, trainSrlh, SRLH_DEFAULTS, type SrlhHyper, type TrainData, type TrainRunResult } from '../../train/srlh.js';
import { trainSemicon, SEMICON_DEFAULTS, type SemiconHyper } from '../../train/semicon.js';
import { explainOutOfMemory, FghError } from '../../util/errors.js';
import { intList, positiveInt } from './eval.js';

interface TrainCliOptions {
  method: HashMethod;
  dataset: DatasetName;
  root: string;
  bits: number[];
  out: string;
  init?: string;
  size: number;
  epochs?: number;
  batch?: number;
  lr?: number;
  evalEvery?: number;
  samplesPerEpoch?: number;
  /** false with --no-dropout (commander negates the flag). */
  dropout?: boolean;
  fixedCentres?: boolean;
  maxIter?: number;
  maxEpoch?: number;
  numSamples?: number;
  seed?: number;
  resume?: boolean;
  skipBadImages?: boolean;
  quiet?: boolean;
  json?: boolean;
}

function parseMethod(v: string): HashMethod {
  if ((HASH_METHODS as readonly string[]).includes(v)) return v as HashMethod;
  throw new FghError(`--method must be ${HASH_METHODS.join(' or ')}, got "${v}"`);
}

function positiveNumber(flag: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new FghError(`${flag} must be a positive number, got "${v}"`);
    return n;
  };
}

export function loadTrainData(dataset: DatasetName, root: string, skipBadImages: boolean): TrainData {
  const d = loadDataset(dataset, { root, skipBadImages });
  for (const w of d.warnings) process.stderr.write(`warning: ${w}\n`);
  const train = split(d, 'train');
  const test = split(d, 'test');
  if (train.length === 0 || test.length === 0) throw new FghError(`${root}: training needs non-empty train and test splits (got ${train.length} and ${test.length})`);
  return { train, test, classes: d.classes.length, info: { name: dataset, root: path.resolve(root) } };
}

export function registerTrain(program: Command): void {
  program
    .command('train')
    .description(
      'train a hashing model per code length, writing DIR/<bits>/ (a checkpoint with its training state and log.jsonl, saved atomically ' +
        'after every epoch). Defaults are the reference hyper-parameters (sRLH: 300 epochs, batch 64, lr 0.001, 3000 images per epoch, ' +
        'evaluation every 50 epochs; SEMICON: 40 iterations of 30 epochs over 2000 sampled images, batch 16, lr 2.5e-4, Nesterov SGD). Ctrl-C saves and stops; --resume continues an interrupted run, also after a kill.',
    )
    .requiredOption('--method <m>', HASH_METHODS.join('|'), parseMethod)
    .requiredOption('--dataset <name>', DATASET_NAMES.join('|'), parseDatasetName)
    .requiredOption('--root <dir>', 'dataset root directory')
    .requiredOption('--bits <list>', 'code lengths, e.g. 12,24,32,48 (trained one after the other)', intList('--bits'))
    .requiredOption('--out <dir>', 'output directory (one checkpoint per code length)')
    .option('--init <ckpt>', 'starting weights: a backbone checkpoint (fgh convert-weights / fgh finetune) or a checkpoint of the same method')
    .option('--size <px>', 'input size', positiveInt('--size'), 224)
    .option('--epochs <n>', `epochs (sRLH default ${SRLH_DEFAULTS.epochs})`, positiveInt('--epochs'))
    .option('--batch <n>', `batch size (sRLH default ${SRLH_DEFAULTS.batch})`, positiveInt('--batch'))
    .option('--lr <x>', `learning rate (sRLH default ${SRLH_DEFAULTS.lr})`, positiveNumber('--lr'))
    .option('--eval-every <n>', `epochs between mAP evaluations (sRLH default ${SRLH_DEFAULTS.evalEvery}; always after the last)`, positiveInt('--eval-every'))
    .option('--samples-per-epoch <n>', `training images sampled per epoch (sRLH default ${SRLH_DEFAULTS.samplesPerEpoch})`, positiveInt('--samples-per-epoch'))
    .option('--no-dropout', 'sRLH: no dropout on the features (the reference has it, for starting from ImageNet weights; from scratch it stalls learning)')
    .option('--fixed-centres', 'sRLH: keep the Hadamard hash centres instead of moving them to the class means of the codes after each epoch (from scratch, that update can collapse the centres onto a few codes)')
    .option('--max-iter <n>', `SEMICON outer iterations (default ${SEMICON_DEFAULTS.maxIter})`, positiveInt('--max-iter'))
    .option('--max-epoch <n>', `SEMICON epochs per iteration (default ${SEMICON_DEFAULTS.maxEpoch})`, positiveInt('--max-epoch'))
    .option('--num-samples <n>', `SEMICON images sampled per iteration (default ${SEMICON_DEFAULTS.numSamples})`, positiveInt('--num-samples'))
    .option('--seed <n>', `seed (sRLH default ${SRLH_DEFAULTS.seed}, SEMICON ${SEMICON_DEFAULTS.seed})`, positiveInt('--seed'))
    .option('--resume', 'continue the runs saved under --out')
    .option('--skip-bad-images', 'skip (and count) missing images instead of failing')
    .option('--quiet', 'no progress bars')
    .addOption(new Option('--json', 'print a JSON summary on stdout'))
    .action(async (o: TrainCliOptions) => {
      if (o.method === 'semicon') for (const b of o.bits) semiconSplit(b);
      if (o.method === 'srlh' && (o.maxIter || o.maxEpoch || o.numSamples)) throw new FghError('--max-iter, --max-epoch and --num-samples are SEMICON options');
      if (o.method === 'semicon' && o.dropout === false) throw new FghError('--no-dropout is an sRLH option');
      if (o.method === 'semicon' && o.fixedCentres) throw new FghError('--fixed-centres is an sRLH option');
      if (o.method === 'srlh') checkSrlhSize(o.size, SRLH_DEFAULTS.numParts);
      if (o.method === 'semicon' && (o.epochs || o.samplesPerEpoch)) throw new FghError('--epochs and --samples-per-epoch are sRLH options (SEMICON: --max-iter, --max-epoch, --num-samples)');
      const choice = await selectBackend();
      process.stderr.write(`training on the ${describeBackend(choice)} backend\n`);
      const data = loadTrainData(o.dataset, o.root, o.skipBadImages ?? false);
      const stop = new StopSignal();
      const uninstall = stop.install();
      const results: TrainRunResult[] = [];
      try {
        for (const bits of o.bits) {
          const common = {
            ...(o.batch ? { batch: o.batch } : {}),
            ...(o.lr ? { lr: o.lr } : {}),
            ...(o.evalEvery ? { evalEvery: o.evalEvery } : {}),
            ...(o.seed ? { seed: o.seed } : {}),
          };
          const run = { data, bits, out: path.join(o.out, String(bits)), size: o.size, ...(o.init ? { init: o.init } : {}), resume: o.resume ?? false, quiet: o.quiet ?? false, stop };
          const batch = o.batch ?? (o.method === 'srlh' ? SRLH_DEFAULTS.batch : SEMICON_DEFAULTS.batch);
          const settings = `--batch ${batch} at --size ${o.size} on the ${describeBackend(choice)} backend`;
          const r: TrainRunResult = await explainOutOfMemory(settings, 'lower --batch or --size', async () => {
            if (o.method === 'srlh') {
              const hyper: Partial<SrlhHyper> = { ...common, ...(o.epochs ? { epochs: o.epochs } : {}), ...(o.samplesPerEpoch ? { samplesPerEpoch: o.samplesPerEpoch } : {}), ...(o.dropout === false ? { dropout: false } : {}), ...(o.fixedCentres ? { updateCentres: false } : {}) };
              return trainSrlh(run, hyper);
            }
            const hyper: Partial<SemiconHyper> = { ...common, ...(o.maxIter ? { maxIter: o.maxIter } : {}), ...(o.maxEpoch ? { maxEpoch: o.maxEpoch } : {}), ...(o.numSamples ? { numSamples: o.numSamples } : {}) };
            return trainSemicon(run, hyper);
          });
          results.push(r);
          if (!r.complete) break;
        }
      } finally {
        uninstall();
      }
      if (o.json) process.stdout.write(`${JSON.stringify({ runs: results })}\n`);
      else for (const r of results) process.stdout.write(`${r.complete ? 'trained' : 'saved (interrupted)'} ${r.out}: ${r.epochs} epochs${r.lastMap !== null ? `, mAP@all ${r.lastMap.toFixed(4)}` : ''}, ${r.seconds.toFixed(0)} s\n`);
      if (results.some((r) => !r.complete)) process.exitCode = 130;
    });
}
