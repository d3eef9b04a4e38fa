import path from 'node:path';
import type { Command } from 'commander';
import { DEMO_DEFAULTS } from '../../demo/defaults.js';
import { positiveInt } from './eval.js';

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description(
      'the whole pipeline on the embedded synthetic dataset, offline and without pretrained weights: make the dataset, train sRLH, ' +
        'export to ONNX, encode query and database images with onnxruntime, and print mAP@all next to a random-projection baseline; ' +
        'leaves a precision-recall curve image. About 2.5 minutes on 2 cores with the defaults.',
    )
    .option('--out <dir>', 'working directory', 'fgh-demo')
    .option('--bits <n>', 'code length', positiveInt('--bits'), DEMO_DEFAULTS.bits)
    .option('--size <px>', 'input size for training and encoding', positiveInt('--size'), DEMO_DEFAULTS.size)
    .option('--epochs <n>', 'training epochs', positiveInt('--epochs'), DEMO_DEFAULTS.epochs)
    .option('--seed <n>', 'seed of the dataset and the run', positiveInt('--seed'), DEMO_DEFAULTS.seed)
    .option('--resume', 'continue an interrupted demo in the same --out')
    .option('--quiet', 'no progress bars')
    .option('--json', 'print a JSON summary on stdout')
    .action(async (o: { out: string; bits: number; size: number; epochs: number; seed: number; resume?: boolean; quiet?: boolean; json?: boolean }) => {
      const [{ describeBackend, selectBackend }, { runDemo }, { StopSignal }] = await Promise.all([
        import('../../backend/select.js'),
        import('../../demo/demo.js'),
        import('../../train/run.js'),
      ]);
      const backend = await selectBackend();
      process.stderr.write(`TensorFlow.js backend: ${describeBackend(backend)}\n`);
      const stop = new StopSignal();
      const uninstall = stop.install();
      try {
        const s = await runDemo({ ...DEMO_DEFAULTS, out: o.out, bits: o.bits, size: o.size, epochs: o.epochs, seed: o.seed, resume: o.resume ?? false, quiet: o.quiet ?? false, stop });
        if (o.json) {
          process.stdout.write(`${JSON.stringify(s)}\n`);
        } else if (!s.complete) {
          process.stdout.write(`interrupted; the run is saved in ${o.out}: fgh demo --out ${o.out} --resume continues it\n`);
        } else {
          process.stdout.write(
            [
              `mAP@all, ${s.bits} bits, ${s.queries} queries over ${s.database} database images:`,
              `  sRLH (trained here, ${Math.round(s.trainSeconds)} s)  ${s.map.toFixed(4)}`,
              `  random projection (LSH)        ${s.baselineMap.toFixed(4)}`,
              `distinct database codes: ${s.distinctCodes} of ${s.database}${s.distinctCodes < s.database / 10 ? ' (collapsed: the mAP above then reflects the database order, not the codes)' : ''}`,
              `precision-recall curves: ${s.prCurve}`,
              `model: ${s.model}  (fgh encode --model ${s.model} --images DIR --out CODES)`,
              `in the browser: npx fgh serve --model ${s.model} --db ${path.join(s.out, 'db.codes')} --images ${path.join(s.out, 'data')} --dataset cub --query ${path.join(s.out, 'query.codes')} --runs ${path.join(s.out, 'model')}`,
              `total ${Math.round(s.totalSeconds)} s`,
            ].join('\n') + '\n',
          );
        }
        if (!s.complete) process.exitCode = 130;
      } finally {
        uninstall();
      }
    });
}
