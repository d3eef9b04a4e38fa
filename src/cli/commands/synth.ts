import type { Command } from 'commander';
import { SYNTH_DEFAULTS, writeSynthDataset, MAX_CLASSES } from '../../data/synth.js';
import { Progress } from '../../util/progress.js';
import { assertWritableOutput } from '../../util/atomic.js';
import { FghError } from '../../util/errors.js';

function integer(name: string): (v: string) => number {
  return (v: string) => {
    if (!/^\d+$/.test(v)) throw new FghError(`--${name} must be a non-negative integer, got "${v}"`);
    return Number(v);
  };
}

export function registerSynth(program: Command): void {
  program
    .command('synth')
    .description(
      'write the embedded synthetic fine-grained dataset in the CUB-200-2011 layout (deterministic per seed). ' +
        `Classes differ only by small parts (crown colour, mark shape and place; at most ${MAX_CLASSES}). ` +
        'DIR must be absent, empty, or an earlier synth output (which is replaced).',
    )
    .requiredOption('--out <dir>', 'output directory')
    .option('--classes <n>', 'number of classes', integer('classes'), SYNTH_DEFAULTS.classes)
    .option('--per-class <n>', 'images per class (about half go to train)', integer('per-class'), SYNTH_DEFAULTS.perClass)
    .option('--size <px>', 'image side in pixels', integer('size'), SYNTH_DEFAULTS.size)
    .option('--seed <s>', 'random seed', integer('seed'), SYNTH_DEFAULTS.seed)
    .option('--json', 'print a JSON summary on stdout')
    .action(async (o: { out: string; classes: number; perClass: number; size: number; seed: number; json?: boolean }) => {
      assertWritableOutput(o.out, 'dir');
      const total = o.classes * o.perClass;
      const progress = new Progress('synth', total, { unit: 'images', quiet: false });
      const s = await writeSynthDataset(o.out, { classes: o.classes, perClass: o.perClass, size: o.size, seed: o.seed }, progress);
      if (o.json) process.stdout.write(`${JSON.stringify(s)}\n`);
      else process.stdout.write(`wrote ${s.images} images (${s.classes} classes, ${s.train} train / ${s.test} test, ${s.size} px, seed ${s.seed}) to ${s.out} in ${s.seconds.toFixed(1)} s\n`);
    });
}
