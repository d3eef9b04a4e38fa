import { Option, type Command } from 'commander';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { loadDataset, parseDatasetName, split } from '../../data/datasets/index.js';
import { findBadImages } from '../../data/check-images.js';
import { DATASET_NAMES, type Dataset, type DatasetName } from '../../data/types.js';
import { HASH_METHODS, type HashMethod } from '../../models/hashing.js';
import { semiconSplit } from '../../models/semicon-split.js';
import type { TrainData, TrainRunResult } from '../../train/srlh.js';
import type { SrlhHyper } from '../../train/srlh-hyper.js';
import type { SemiconHyper } from '../../train/semicon-hyper.js';
import type { HyperField, HyperValue } from '../../train/hyper.js';
import { RECIPES, recipeDefaults, type RecipeName } from '../../train/recipes.js';
import {
  completeRunConfig,
  conflicts,
  methodFields,
  readRunConfig,
  readRunConfigLayer,
  resolveRunConfig,
  runConfigJson,
  runConfigPath,
  writeRunConfig,
  RUN_CONFIG_FILE,
  type RunConfig,
  type RunConfigLayer,
} from '../../train/run-config.js';
import { assertWritableDir } from '../../util/atomic.js';
import { explainOutOfMemory, FghError } from '../../util/errors.js';
import { acquireLock } from '../../util/lock.js';
import { Progress } from '../../util/progress.js';
import { intList, positiveInt } from './eval.js';

interface TrainCliOptions {
  method?: HashMethod;
  dataset?: DatasetName;
  root?: string;
  bits?: number[];
  out?: string;
  init?: string;
  size?: number;
  recipe?: RecipeName;
  config?: string;
  printConfig?: boolean;
  fixedCentres?: boolean;
  resume?: boolean;
  skipBadImages?: boolean;
  quiet?: boolean;
  json?: boolean;
}

function parseRecipe(v: string): RecipeName {
  if ((RECIPES as readonly string[]).includes(v)) return v as RecipeName;
  throw new FghError(`--recipe must be ${RECIPES.join(' or ')}, got "${v}"`);
}

function parseMethod(v: string): HashMethod {
  if ((HASH_METHODS as readonly string[]).includes(v)) return v as HashMethod;
  throw new FghError(`--method must be ${HASH_METHODS.join(' or ')}, got "${v}"`);
}

export type SkippedImage = Dataset['skipped'][number];

/** Per-image warnings beyond these go to the --json summary only. */
const SKIPPED_SHOWN = 10;

/**
 * A run's data, every image it trains on (and, if it `evaluates`, the test split's too) checked
 * before the first step: an unreadable one stops the run here, in one line, rather than when a
 * batch or the evaluation after an epoch reaches it; with --skip-bad-images it is left out, named
 * on stderr with the reason, and listed in `skipped` (with the missing ones).
 */
export async function loadTrainData(dataset: DatasetName, root: string, skipBadImages: boolean, opts: { evaluates?: boolean; quiet?: boolean } = {}): Promise<{ data: TrainData; skipped: SkippedImage[] }> {
  const d = loadDataset(dataset, { root, skipBadImages });
  for (const w of d.warnings) process.stderr.write(`warning: ${w}\n`);
  let train = split(d, 'train');
  let test = split(d, 'test');
  const checked = opts.evaluates === false ? train : [...train, ...test];
  const bad = await findBadImages(checked, { progress: new Progress('checking images', checked.length, { unit: 'images', quiet: opts.quiet ?? false }) });
  if (bad.length > 0 && !skipBadImages) {
    const b = bad[0]!;
    const more = bad.length > 1 ? ` (and ${bad.length - 1} more)` : '';
    throw new FghError(`${b.source ? `${b.source}: ` : ''}${b.path}: ${b.reason}${more}; --skip-bad-images leaves such images out`);
  }
  const skipped: SkippedImage[] = [...d.skipped, ...bad];
  if (bad.length > 0) {
    const out = new Set(bad.map((b) => b.path));
    train = train.filter((s) => !out.has(s.path));
    test = test.filter((s) => !out.has(s.path));
  }
  for (const s of skipped.slice(0, SKIPPED_SHOWN)) process.stderr.write(`warning: skipped ${s.path}${s.source ? ` (${s.source})` : ''}: ${s.reason}\n`);
  if (skipped.length > SKIPPED_SHOWN) process.stderr.write(`warning: ... and ${skipped.length - SKIPPED_SHOWN} more skipped images (all of them in the --json summary)\n`);
  if (bad.length > 0) process.stderr.write(`warning: skipped ${bad.length} unreadable or oversized image(s)\n`);
  if (train.length === 0 || test.length === 0) throw new FghError(`${root}: training needs non-empty train and test splits (got ${train.length} and ${test.length})`);
  return { data: { train, test, classes: d.classes.length, info: { name: dataset, root: path.resolve(root) } }, skipped };
}

/** Every hyper-parameter flag of both methods, once each: [flag, fields by method]. */
function hyperFlags(): Map<string, { srlh?: HyperField; semicon?: HyperField }> {
  const flags = new Map<string, { srlh?: HyperField; semicon?: HyperField }>();
  for (const method of HASH_METHODS) {
    for (const f of methodFields(method)) flags.set(f.flag, { ...flags.get(f.flag), [method]: f });
  }
  return flags;
}

function camel(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

function flagHelp(by: { srlh?: HyperField; semicon?: HyperField }): string {
  const part = (name: string, f: HyperField): string => `${name}: ${f.help}${f.reference ? ` [reference: ${f.reference}]` : ''}`;
  if (by.srlh && by.semicon) {
    if (by.srlh.help !== by.semicon.help) return `${part('sRLH', by.srlh)}; ${part('SEMICON', by.semicon)}`;
    const refs = [by.srlh.reference && `sRLH ${by.srlh.reference}`, by.semicon.reference && `SEMICON ${by.semicon.reference}`].filter(Boolean);
    return `${by.srlh.help}${refs.length ? ` [reference: ${refs.join(', ')}]` : ''}`;
  }
  return by.srlh ? part('sRLH', by.srlh) : part('SEMICON', by.semicon!);
}

/** The hyper-parameters set by flags on the command line, as raw values for parseHyper. */
function hyperFromFlags(cmd: Command, method: HashMethod, o: TrainCliOptions): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  for (const [flag, by] of hyperFlags()) {
    const key = camel(flag);
    if (cmd.getOptionValueSource(key) !== 'cli') continue;
    const f = by[method];
    const typed = cmd.getOptionValue(key) === false ? `--no-${flag}` : `--${flag}`;
    if (!f) throw new FghError(`${typed} is ${method === 'srlh' ? 'a SEMICON' : 'an sRLH'} option (see fgh train --print-config --method ${method})`);
    raw[f.key] = cmd.getOptionValue(key);
  }
  if (o.fixedCentres) {
    if (method !== 'srlh') throw new FghError('--fixed-centres is an sRLH option');
    raw.updateCentres = false;
  }
  return raw;
}

function valueName(f: HyperField): string {
  return f.kind === 'ints' ? 'list' : f.kind === 'choice' ? f.choices!.join('|') : f.kind === 'int' ? 'n' : 'x';
}

/** The run-defining values given as flags (undefined where not given). */
function flagLayer(cmd: Command, o: TrainCliOptions, method: HashMethod | undefined): RunConfigLayer {
  const layer: RunConfigLayer = {};
  if (o.method) layer.method = o.method;
  if (o.dataset) layer.dataset = o.dataset;
  if (o.root) layer.root = o.root;
  if (o.bits) layer.bits = o.bits;
  if (o.size) layer.size = o.size;
  if (o.init) layer.init = o.init;
  if (o.recipe) layer.recipe = o.recipe;
  if (method) {
    const hyper = hyperFromFlags(cmd, method, o);
    if (Object.keys(hyper).length) layer.hyper = hyper as Record<string, HyperValue>;
  }
  return layer;
}

/** --print-config without --method: both methods under both recipes. */
function allRecipes(): Record<string, Record<string, Record<string, HyperValue>>> {
  const out: Record<string, Record<string, Record<string, HyperValue>>> = {};
  for (const m of HASH_METHODS) {
    out[m] = {};
    for (const r of RECIPES) out[m][r] = recipeDefaults(m, r);
  }
  return out;
}

export function registerTrain(program: Command): void {
  const cmd = program
    .command('train')
    .description(
      'train a hashing model per code length, writing DIR/<bits>/ (a checkpoint with its training state and log.jsonl, saved atomically ' +
        'after every epoch) and DIR/train-config.json (everything that defines the run; --resume reads it, and it is a valid --config). ' +
        'Values come from the recipe, then --config, then flags. Recipes: "reference" (the authors\' hyper-parameters, for starting from ' +
        'ImageNet or fine-tuned weights; the default with --init) and "scratch" (from random weights on small, few-class data; the default ' +
        'without --init). --print-config shows the resolved values. Ctrl-C saves and stops; --resume continues an interrupted run, also after a kill.',
    )
    .option('--method <m>', HASH_METHODS.join('|'), parseMethod)
    .option('--dataset <name>', DATASET_NAMES.join('|'), parseDatasetName)
    .option('--root <dir>', 'dataset root directory')
    .option('--bits <list>', 'code lengths, e.g. 12,24,32,48 (trained one after the other)', intList('--bits'))
    .option('--out <dir>', 'output directory (one checkpoint per code length, and train-config.json)')
    .option('--init <ckpt>', 'starting weights: a backbone checkpoint (fgh convert-weights / fgh finetune) or a checkpoint of the same method')
    .option('--size <px>', 'input size (default 224)', positiveInt('--size'))
    .option('--recipe <name>', `set of defaults: ${RECIPES.join('|')} (default: scratch without --init, reference with it)`, parseRecipe)
    .option('--config <file>', 'a JSON file of run settings and hyper-parameters (the format of train-config.json; every key optional)')
    .option('--print-config', 'print the resolved configuration as JSON and exit (without --method: every recipe of both methods)');
  for (const [flag, by] of hyperFlags()) {
    const f = (by.srlh ?? by.semicon)!;
    if (f.kind === 'bool') {
      cmd.option(`--${flag}`, flagHelp(by));
      cmd.option(`--no-${flag}`, `the opposite of --${flag}`);
    } else {
      // Raw strings: parseHyper checks them against the method's field once the method is known.
      cmd.option(`--${flag} <${valueName(f)}>`, flagHelp(by));
    }
  }
  cmd
    .option('--fixed-centres', 'sRLH: same as --no-update-centres')
    .option('--resume', 'continue the runs saved under --out, with their saved configuration')
    .option('--skip-bad-images', 'leave out (and list) missing, unreadable or oversized images instead of failing; every image is checked before the first epoch')
    .option('--quiet', 'no progress bars')
    .addOption(new Option('--json', 'print a JSON summary on stdout'))
    .action(async (o: TrainCliOptions) => {
      const fileLayer = o.config ? readRunConfigLayer(o.config) : {};
      const saved = o.resume && o.out ? readRunConfig(o.out) : null;
      const method = o.method ?? fileLayer.method ?? saved?.method;
      if (o.printConfig && !method) {
        process.stdout.write(`${JSON.stringify(allRecipes(), null, 2)}\n`);
        return;
      }
      const flags = flagLayer(cmd, o, method);
      let cfg: RunConfig;
      if (saved) {
        const clash = [...(o.config ? conflicts(saved, fileLayer) : []), ...conflicts(saved, flags)];
        if (clash.length) throw new FghError(`${runConfigPath(o.out!)}: --resume continues the saved configuration, but the command asks for ${clash.join('; ')}; drop those flags or train into a new --out`);
        cfg = saved;
      } else {
        const resolved = resolveRunConfig([
          { layer: fileLayer, where: o.config ?? '--config' },
          { layer: flags, where: 'flags' },
        ]);
        if (o.printConfig) {
          process.stdout.write(`${JSON.stringify(resolved, null, 2)}\n`);
          return;
        }
        cfg = completeRunConfig(resolved);
      }
      if (o.printConfig) {
        process.stdout.write(runConfigJson(cfg));
        return;
      }
      if (!o.out) throw new FghError('--out is required');
      if (!saved && existsSync(runConfigPath(o.out))) throw new FghError(`${o.out} already holds a training run (${RUN_CONFIG_FILE}); --resume continues it, or train into a new --out`);
      // Before the backend, the dataset and the first epoch: an unwritable --out would lose them all.
      assertWritableDir(o.out);
      // One run per folder at a time: a second would overwrite the first's checkpoints.
      const unlock = acquireLock(path.resolve(o.out), 'fgh train');
      try {
        if (cfg.method === 'semicon') for (const b of cfg.bits) semiconSplit(b);
        const srlhHyper = cfg.hyper as unknown as SrlhHyper;
        const semiconHyper = cfg.hyper as unknown as SemiconHyper;
        const [{ describeBackend, selectBackend }, { checkSrlhSize, trainSrlh }, { trainSemicon }, { StopSignal }] = await Promise.all([
          import('../../backend/select.js'),
          import('../../train/srlh.js'),
          import('../../train/semicon.js'),
          import('../../train/run.js'),
        ]);
        if (cfg.method === 'srlh') checkSrlhSize(cfg.size, srlhHyper.numParts);
        const choice = await selectBackend();
        process.stderr.write(`training on the ${describeBackend(choice)} backend, recipe ${cfg.recipe}\n`);
        const { data, skipped } = await loadTrainData(cfg.dataset, cfg.root, o.skipBadImages ?? false, { quiet: o.quiet ?? false });
        if (!saved) {
          mkdirSync(o.out, { recursive: true });
          writeRunConfig(o.out, cfg);
        }
        const stop = new StopSignal();
        const uninstall = stop.install();
        const results: TrainRunResult[] = [];
        try {
          for (const bits of cfg.bits) {
            const run = { data, bits, out: path.join(o.out, String(bits)), size: cfg.size, ...(cfg.init ? { init: cfg.init } : {}), resume: o.resume ?? false, quiet: o.quiet ?? false, stop };
            const batch = cfg.method === 'srlh' ? srlhHyper.batch : semiconHyper.batch;
            const settings = `--batch ${batch} at --size ${cfg.size} on the ${describeBackend(choice)} backend`;
            const r: TrainRunResult = await explainOutOfMemory(settings, 'lower --batch or --size', () => (cfg.method === 'srlh' ? trainSrlh(run, srlhHyper) : trainSemicon(run, semiconHyper)));
            results.push(r);
            if (!r.complete) break;
          }
        } finally {
          uninstall();
        }
        if (o.json) process.stdout.write(`${JSON.stringify({ runs: results, skipped })}\n`);
        else for (const r of results) process.stdout.write(`${r.complete ? 'trained' : 'saved (interrupted)'} ${r.out}: ${r.epochs} epochs${r.lastMap !== null ? `, mAP@all ${r.lastMap.toFixed(4)}` : ''}, ${r.seconds.toFixed(0)} s\n`);
        if (results.some((r) => !r.complete)) process.exitCode = 130;
      } finally {
        unlock();
      }
    });
}
