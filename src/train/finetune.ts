import { existsSync } from 'node:fs';
import { tf } from '../backend/tf.js';
import type { Tensor2D } from '../backend/tf.js';
import { Dropout } from '../models/layers.js';
import { ResNet, type ResNetArch } from '../models/resnet.js';
import { Progress } from '../util/progress.js';
import { mixSeed, Rng } from '../util/rng.js';
import { newCheckpointConfig, saveModelCheckpoint, type CheckpointConfig } from '../weights/checkpoint.js';
import { srlhAugment } from './augment.js';
import { epochBatches } from './data.js';
import { crossEntropy } from './losses.js';
import { loadInitWeights } from './init.js';
import { epochSums, hasRun, loadRun, saveRun, type Position, type StopSignal } from './run.js';
import { Sgd } from './sgd.js';
import type { TrainData } from './srlh.js';

/**
 * sRLH's first stage (finetune_cub.py, networks/fine_tune.py): a ResNet from ImageNet weights with a
 * new classifier on Dropout(0.5) of the pooled vector, cross entropy, SGD lr 0.01 momentum 0.9
 * weight decay 1e-4, batch 32. The reference snapshots every 10 epochs and the user keeps the one
 * with the lowest loss; here the lowest-loss epoch is kept in OUT automatically, and the latest
 * state (for --resume) lives in OUT.run.
 */
export interface FinetuneOptions {
  data: TrainData;
  arch: ResNetArch;
  pretrained?: string;
  out: string;
  size: number;
  epochs: number;
  batch: number;
  lr: number;
  seed: number;
  resume?: boolean;
  quiet?: boolean;
  stop?: StopSignal;
  log?: (line: string) => void;
}

export interface FinetuneResult {
  out: string;
  complete: boolean;
  bestEpoch: number | null;
  bestLoss: number | null;
  epochs: number;
}

export async function finetune(o: FinetuneOptions): Promise<FinetuneResult> {
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const C = o.data.classes;
  const model = new ResNet(new Rng(mixSeed(o.seed, 1)), o.arch, { numClasses: C }).assignNames();
  const model2 = Object.assign(model, { method: 'backbone' });
  const dropout = new Dropout(0.5);
  const opt = new Sgd(model.parameters().filter((p) => p.trainable), { lr: o.lr, momentum: 0.9, weightDecay: 1e-4 });
  const runDir = `${o.out}.run`;
  let position: Position = { iter: 0, epoch: 0, batch: 0 };
  let logLines: string[] = [];
  let config: CheckpointConfig = newCheckpointConfig({
    method: 'backbone',
    arch: o.arch,
    classes: C,
    inputSize: o.size,
    transform: 'resize-224',
    dataset: o.data.info,
    training: { epoch: 0, epochs: o.epochs, step: 0, seed: o.seed, rngState: null, complete: false, bestMap: null, hyper: { method: 'finetune', lr: o.lr, batch: o.batch, bestEpoch: null, bestLoss: null } },
  });
  const best = (): { epoch: number | null; loss: number | null } => ({ epoch: (config.training!.hyper.bestEpoch as number | null) ?? null, loss: (config.training!.hyper.bestLoss as number | null) ?? null });
  try {
    if (o.resume && hasRun(runDir)) {
      const saved = await loadRun(runDir, model);
      ({ config, position } = saved);
      logLines = saved.log;
      opt.importState(saved.tensors);
      if (config.training!.complete) return { out: o.out, complete: true, bestEpoch: best().epoch, bestLoss: best().loss, epochs: o.epochs };
      log(`resuming ${runDir} at epoch ${position.epoch + 1}`);
    } else if (o.pretrained) {
      // ImageNet's fc (1000 classes) does not fit the new classifier and is left out.
      log(`initialised from ${o.pretrained}: ${await loadInitWeights(model2, o.pretrained, '')}`);
    }
    const save = async (p: Position): Promise<void> => {
      config = { ...config, training: { ...config.training!, epoch: p.epoch, step: opt.steps } };
      await saveRun(runDir, config, model, p, opt.exportState(), logLines);
    };
    for (let epoch = position.epoch; epoch < o.epochs; epoch++) {
      const t0 = Date.now();
      const order = new Rng(mixSeed(o.seed, 3, epoch)).shuffle(o.data.train.map((_, i) => i));
      const fromBatch = epoch === position.epoch ? position.batch : 0;
      const bar = new Progress(`epoch ${epoch + 1}/${o.epochs}`, order.length, { unit: 'images', quiet: o.quiet ?? false });
      const sums = epochSums({ loss: 0, n: 0, correct: 0 }, position, 0, epoch);
      for await (const b of epochBatches({ samples: o.data.train, order, batchSize: o.batch, fromBatch, size: o.size, mean: config.mean, std: config.std, seed: o.seed, epochKey: epoch, augment: srlhAugment(o.size) })) {
        const y = b.positions.map((p) => o.data.train[order[p]!]!.labels[0]!);
        const ctx = { training: true, rng: new Rng(mixSeed(o.seed, 4, epoch, b.k)) };
        let hits = 0;
        const { value, grads } = tf.variableGrads(() => {
          const logits = model.logits(dropout.forward(model.features(tf.tensor4d(b.images, b.shape), ctx).pooled, ctx)) as Tensor2D;
          const pred = tf.argMax(logits, 1).dataSync();
          hits = y.filter((c, i) => pred[i] === c).length;
          return crossEntropy(logits, y);
        }, model.trainableVariables());
        const loss = (await value.data())[0]!;
        value.dispose();
        opt.step(grads);
        tf.dispose(Object.values(grads));
        sums.loss += loss * y.length;
        sums.n += y.length;
        sums.correct += hits;
        bar.status(`loss ${(sums.loss / sums.n).toFixed(4)} acc ${(sums.correct / sums.n).toFixed(3)}`);
        bar.tick(y.length);
        if (await o.stop?.poll()) {
          bar.finish();
          await save({ iter: 0, epoch, batch: b.k + 1, sums });
          log(`saved ${runDir} in the middle of epoch ${epoch + 1}; --resume continues from there`);
          return { out: o.out, complete: false, bestEpoch: best().epoch, bestLoss: best().loss, epochs: epoch };
        }
      }
      bar.finish();
      // The reference's loss is the sum over the epoch's batches; the mean per image ranks epochs the same.
      const mean = sums.loss / Math.max(1, sums.n);
      const prev = best();
      // A resumed epoch's mean is whole when the save kept its running sums (older saves did not).
      const whole = fromBatch === 0 || position.sums !== undefined;
      const improved = whole && (prev.loss === null || mean < prev.loss);
      logLines.push(JSON.stringify({ epoch: epoch + 1, loss: mean, accuracy: sums.correct / Math.max(1, sums.n), lr: o.lr, seconds: (Date.now() - t0) / 1000, best: improved }));
      if (improved) {
        config = { ...config, training: { ...config.training!, hyper: { ...config.training!.hyper, bestEpoch: epoch + 1, bestLoss: mean } } };
        await saveModelCheckpoint(o.out, { ...config, training: { ...config.training!, epoch: epoch + 1, complete: true } }, model);
      }
      config = { ...config, training: { ...config.training!, complete: epoch + 1 === o.epochs } };
      await save({ iter: 0, epoch: epoch + 1, batch: 0 });
    }
    if (!existsSync(o.out)) await saveModelCheckpoint(o.out, config, model);
    return { out: o.out, complete: true, bestEpoch: best().epoch, bestLoss: best().loss, epochs: o.epochs };
  } finally {
    model.dispose();
    opt.dispose();
  }
}
