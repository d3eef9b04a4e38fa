import { tf } from '../backend/tf.js';
import type { Tensor2D } from '../backend/tf.js';
import type { Sample } from '../data/types.js';
import { Srlh, srlhSubRegions } from '../models/srlh.js';
import { lastMapSide } from '../models/resnet.js';
import { FghError } from '../util/errors.js';
import { Progress } from '../util/progress.js';
import { mixSeed, Rng } from '../util/rng.js';
import { newCheckpointConfig, type CheckpointConfig, type DatasetInfo } from '../weights/checkpoint.js';
import type { WritableTensor } from '../weights/safetensors.js';
import { epochBatches } from './data.js';
import { srlhAugment } from './augment.js';
import { mapAtAll } from './evaluate.js';
import { crossEntropy } from './losses.js';
import { Sgd } from './sgd.js';
import { hashLoss, hashTargets, softSimilarity, tripletLoss, updateCentres } from './srlh-objectives.js';
import { checkResumedHyper, epochSums, hasRun, loadRun, requireTensor, saveRun, type Position, type StopSignal } from './run.js';
import { loadInitWeights } from './init.js';
import { SRLH_DEFAULTS, type SrlhHyper } from './srlh-hyper.js';

/**
 * sRLH's hashing stage (Yajie-Zhang/sRLH cub_train.py; spec srlh.md): per epoch a random subset
 * of the training split, classification warm-up, then cross entropy + hash loss against the class
 * centres + triplet loss on the selected local features; after each epoch from the warm-up on,
 * the centres follow the codes of the epoch; mAP every `evalEvery` epochs.
 */

export { SRLH_DEFAULTS, SRLH_FIELDS, type SrlhHyper } from './srlh-hyper.js';

export interface TrainData {
  train: Sample[];
  test: Sample[];
  classes: number;
  info: DatasetInfo;
}

export interface TrainRunOptions {
  data: TrainData;
  bits: number;
  out: string;
  size: number;
  init?: string;
  resume?: boolean;
  quiet?: boolean;
  stop?: StopSignal;
  log?: (line: string) => void;
  /** Called after every save (tests interrupt runs here). */
  onSave?: (p: Position) => void;
}

export interface TrainRunResult {
  out: string;
  complete: boolean;
  epochs: number;
  lastMap: number | null;
  seconds: number;
}

/** numParts 0 means as many as the input size holds, up to the reference's 3. */
export function resolveParts(size: number, numParts: number): number {
  return numParts > 0 ? numParts : Math.max(1, Math.min(SRLH_DEFAULTS.numParts, srlhSubRegions(size)));
}

/** sRLM selects `numParts` of the last map's 2x2 sub-regions: the input must be large enough. */
export function checkSrlhSize(size: number, numParts: number): void {
  numParts = resolveParts(size, numParts);
  const regions = srlhSubRegions(size);
  if (regions >= numParts) return;
  let min = size;
  while (srlhSubRegions(min) < numParts) min++;
  const side = lastMapSide(size);
  throw new FghError(`--size ${size}: ResNet-18's last map is ${side}x${side}, which holds ${regions} sub-region(s) of 2x2, fewer than the ${numParts} local parts sRLH selects; use --size ${min} or more`);
}

/** The warm-up never takes the whole run: the hash phase has at least the last epoch. */
function warmupEpochs(h: SrlhHyper): number {
  return Math.min(h.warmup, h.epochs - 1);
}

function lrAt(h: SrlhHyper, epoch: number): number {
  if (epoch < warmupEpochs(h) && h.warmupLr > 0) return h.warmupLr;
  return h.lr * 0.1 ** h.lrSteps.filter((s) => epoch >= s).length;
}

export async function trainSrlh(opts: TrainRunOptions, hyper: Partial<SrlhHyper> = {}): Promise<TrainRunResult> {
  const h: SrlhHyper = { ...SRLH_DEFAULTS, ...hyper };
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const started = Date.now();
  const { data, bits } = opts;
  const C = data.classes;
  checkSrlhSize(opts.size, h.numParts);
  const model = new Srlh(new Rng(mixSeed(h.seed, 1)), { bits, numClasses: C, numParts: resolveParts(opts.size, h.numParts) });
  const params = model.parameters().filter((p) => p.trainable);
  const opt = new Sgd(params, { lr: h.lr, momentum: h.momentum, weightDecay: h.weightDecay });
  const nSel = Math.min(h.samplesPerEpoch, data.train.length);
  const hashScale = h.hashWeight * (h.hashClasses > 0 ? C / h.hashClasses : 1);
  let centres = hashTargets(C, bits, new Rng(mixSeed(h.seed, 2)));
  let position: Position = { iter: 0, epoch: 0, batch: 0 };
  let logLines: string[] = [];
  let B = new Float32Array(nSel * bits);
  let config: CheckpointConfig = newCheckpointConfig({
    method: 'srlh',
    arch: 'resnet18',
    bits,
    classes: C,
    inputSize: opts.size,
    dataset: data.info,
    training: { epoch: 0, epochs: h.epochs, step: 0, seed: h.seed, rngState: null, complete: false, bestMap: null, hyper: { ...h, method: 'srlh' } },
  });

  try {
    if (opts.resume && hasRun(opts.out)) {
      const saved = await loadRun(opts.out, model);
      checkResumedHyper(saved, h, opts.out);
      config = saved.config;
      position = saved.position;
      logLines = saved.log;
      opt.importState(saved.tensors);
      centres = requireTensor(saved.tensors, 'centres', C * bits, opts.out).slice();
      if (position.batch > 0) B = requireTensor(saved.tensors, 'epoch_codes', nSel * bits, opts.out).slice();
      if (config.training!.complete) {
        log(`${opts.out}: already complete (${config.training!.epoch} epochs)`);
        return { out: opts.out, complete: true, epochs: config.training!.epoch, lastMap: config.training!.bestMap, seconds: 0 };
      }
      log(`resuming ${opts.out} at epoch ${position.epoch + 1}${position.batch ? `, batch ${position.batch + 1}` : ''}`);
    } else if (opts.init) {
      const r = await loadInitWeights(model, opts.init);
      log(`initialised from ${opts.init}: ${r}`);
    }

    const save = async (p: Position, extra: Record<string, WritableTensor> = {}): Promise<void> => {
      const tensors = new Map<string, WritableTensor>([...opt.exportState(), ['centres', { shape: [C, bits], data: centres }]]);
      for (const [k, v] of Object.entries(extra)) tensors.set(k, v);
      config = { ...config, training: { ...config.training!, epoch: p.epoch, step: opt.steps } };
      await saveRun(opts.out, config, model, p, tensors, logLines);
      opts.onSave?.(p);
    };

    let lastMap: number | null = config.training!.bestMap;
    for (let epoch = position.epoch; epoch < h.epochs; epoch++) {
      const t0 = Date.now();
      const lr = lrAt(h, epoch);
      opt.setLr(lr);
      // The epoch's subset and order depend only on (seed, epoch).
      const erng = new Rng(mixSeed(h.seed, 3, epoch));
      const selected = erng.sample(data.train.length, nSel).map((i) => data.train[i]!);
      const order = erng.shuffle(selected.map((_, i) => i));
      const labels = selected.map((s) => s.labels[0]!);
      const S = softSimilarity(labels, C);
      const fromBatch = epoch === position.epoch ? position.batch : 0;
      const bar = new Progress(`epoch ${epoch + 1}/${h.epochs}`, nSel, { unit: 'images', quiet: opts.quiet ?? false });
      bar.tick(Math.min(nSel, fromBatch * h.batch));
      const sums = epochSums({ total: 0, ce: 0, hash: 0, triplet: 0, n: 0 }, position, 0, epoch);
      const withHash = epoch >= warmupEpochs(h);
      const centresT = tf.tensor2d(centres, [C, bits]);
      let stopped = false;
      for await (const b of epochBatches({ samples: selected, order, batchSize: h.batch, fromBatch, size: opts.size, mean: config.mean, std: config.std, seed: h.seed, epochKey: epoch, augment: srlhAugment(opts.size) })) {
        const items = b.positions.map((p) => order[p]!);
        const y = items.map((i) => labels[i]!);
        const ctx = { training: true, noDropout: !h.dropout, rng: new Rng(mixSeed(h.seed, 4, epoch, b.k)) };
        let parts = { ce: 0, hash: 0, triplet: 0 };
        let codes: Float32Array = new Float32Array(0);
        const { value, grads } = tf.variableGrads(() => {
          const o = model.forwardTrain(tf.tensor4d(b.images, b.shape), ctx);
          const ce = crossEntropy(o.logits, y);
          codes = o.features.dataSync() as Float32Array;
          if (!withHash) {
            parts = { ce: ce.dataSync()[0]!, hash: 0, triplet: 0 };
            return ce;
          }
          const sRows = tf.tensor2d(gatherRows(S, items, C), [items.length, C]);
          const lh = tf.mul(hashLoss(o.features as Tensor2D, centresT, sRows, h.gamma), hashScale) as tf.Scalar;
          const ll = tripletLoss(o.locals, y, h.margin);
          parts = { ce: ce.dataSync()[0]!, hash: lh.dataSync()[0]!, triplet: ll.dataSync()[0]! };
          return tf.addN([ce, lh, ll]) as tf.Scalar;
        }, model.trainableVariables());
        const total = (await value.data())[0]!;
        value.dispose();
        opt.step(grads);
        for (const g of Object.values(grads)) g.dispose();
        items.forEach((i, j) => B.set(codes.subarray(j * bits, (j + 1) * bits), i * bits));
        sums.total += total * items.length;
        sums.ce += parts.ce * items.length;
        sums.hash += parts.hash * items.length;
        sums.triplet += parts.triplet * items.length;
        sums.n += items.length;
        bar.status(`loss ${(sums.total / sums.n).toFixed(4)} (ce ${(sums.ce / sums.n).toFixed(3)} hash ${(sums.hash / sums.n).toFixed(3)} triplet ${(sums.triplet / sums.n).toFixed(3)}) lr ${lr}`);
        bar.tick(items.length);
        if (await opts.stop?.poll()) {
          stopped = true;
          await save({ iter: 0, epoch, batch: b.k + 1, sums }, { epoch_codes: { shape: [nSel, bits], data: B } });
          break;
        }
      }
      centresT.dispose();
      bar.finish();
      if (stopped) {
        log(`saved ${opts.out} in the middle of epoch ${epoch + 1}; --resume continues from there`);
        return { out: opts.out, complete: false, epochs: epoch, lastMap, seconds: (Date.now() - started) / 1000 };
      }
      // The centres follow the epoch's codes once the hash loss is on (reference: epoch > 1).
      if (withHash && h.updateCentres) centres = updateCentres(centres, B, labels, C, bits, h.alpha);
      let map: number | null = null;
      // evalEvery 0: no evaluation inside the run (fgh demo evaluates the exported graph instead).
      if (h.evalEvery > 0 && ((epoch + 1) % h.evalEvery === 0 || epoch + 1 === h.epochs)) {
        map = await mapAtAll(model, data.test, data.train, C, { size: opts.size, transform: config.transform, mean: config.mean, std: config.std, batch: h.batch });
        lastMap = map;
        log(`epoch ${epoch + 1}: mAP@all ${map.toFixed(4)}`);
      }
      const seconds = (Date.now() - t0) / 1000;
      logLines.push(JSON.stringify({ epoch: epoch + 1, bits, loss: sums.total / Math.max(1, sums.n), ce: sums.ce / Math.max(1, sums.n), hash: sums.hash / Math.max(1, sums.n), triplet: sums.triplet / Math.max(1, sums.n), lr, map, seconds, images_per_s: sums.n / seconds }));
      const done = epoch + 1 === h.epochs;
      config = { ...config, training: { ...config.training!, bestMap: map ?? config.training!.bestMap, complete: done } };
      B = new Float32Array(nSel * bits);
      await save({ iter: 0, epoch: epoch + 1, batch: 0 });
    }
    return { out: opts.out, complete: true, epochs: h.epochs, lastMap, seconds: (Date.now() - started) / 1000 };
  } finally {
    model.dispose();
    opt.dispose();
  }
}

function gatherRows(m: Float32Array, rows: readonly number[], width: number): Float32Array {
  const out = new Float32Array(rows.length * width);
  rows.forEach((r, j) => out.set(m.subarray(r * width, (r + 1) * width), j * width));
  return out;
}
