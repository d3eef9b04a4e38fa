import { tf } from '../backend/tf.js';
import { Semicon, SEMICON_ALPHA } from '../models/semicon.js';
import path from 'node:path';
import { codeStoreBytes } from '../retrieval/code-store.js';
import { packSigns } from '../retrieval/codes.js';
import { evaluate } from '../retrieval/metrics.js';
import { Progress } from '../util/progress.js';
import { mixSeed, Rng } from '../util/rng.js';
import { newCheckpointConfig, type CheckpointConfig } from '../weights/checkpoint.js';
import type { WritableTensor } from '../weights/safetensors.js';
import { adshLoss, similarityRows, softSimilarityRatio, solveDcc } from './adsh.js';
import { semiconAugment } from './augment.js';
import { epochBatches } from './data.js';
import { encodeSamples, labelsOf } from './evaluate.js';
import { loadInitWeights } from './init.js';
import { checkResumedHyper, DATABASE_CODES_FILE, epochSums, hasRun, loadRun, requireTensor, saveRun, type Position } from './run.js';
import { Sgd, type Optimizer } from './sgd.js';
import { Adam } from './adam.js';
import type { TrainRunOptions, TrainRunResult } from './srlh.js';
import { SEMICON_DEFAULTS, type SemiconHyper } from './semicon-hyper.js';

/**
 * SEMICON's asymmetric training (aassxun/SEMICON SEMICON_train.py; spec semicon.md): per outer
 * iteration, `numSamples` training images Ω; `maxEpoch` epochs of SGD (Nesterov) on the ADSH loss
 * against the database codes B; then B is solved bit by bit (DCC). The database is the learned B;
 * mAP of the query codes against B after every iteration; the best-mAP weights are kept.
 */
export { SEMICON_DEFAULTS, SEMICON_FIELDS, type SemiconHyper } from './semicon-hyper.js';

export async function trainSemicon(opts: TrainRunOptions, hyper: Partial<SemiconHyper> = {}): Promise<TrainRunResult> {
  const h: SemiconHyper = { ...SEMICON_DEFAULTS, ...hyper };
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const started = Date.now();
  const { data, bits } = opts;
  const C = data.classes;
  const N = data.train.length;
  const dbLabels = data.train.map((s) => s.labels[0]!);
  const ns = Math.min(h.numSamples, N);
  const model = new Semicon(new Rng(mixSeed(h.seed, 1)), { bits, numClasses: C, alpha: h.alpha });
  const trainable = model.parameters().filter((p) => p.trainable);
  const opt: Optimizer =
    h.optim === 'adam' ? new Adam(trainable, { lr: h.lr, weightDecay: h.weightDecay }) : new Sgd(trainable, { lr: h.lr, momentum: h.momentum, weightDecay: h.weightDecay, nesterov: h.nesterov });
  // B starts standard normal (the reference's torch.randn).
  const brng = new Rng(mixSeed(h.seed, 2));
  let B: Float32Array = Float32Array.from({ length: N * bits }, () => brng.normal());
  let U: Float32Array = new Float32Array(ns * bits);
  let position: Position = { iter: 0, epoch: 0, batch: 0 };
  let logLines: string[] = [];
  let config: CheckpointConfig = newCheckpointConfig({
    method: 'semicon',
    arch: 'resnet50',
    bits,
    classes: C,
    inputSize: opts.size,
    dataset: data.info,
    transform: h.evalTransform,
    training: { epoch: 0, epochs: h.maxIter * h.maxEpoch, step: 0, seed: h.seed, rngState: null, complete: false, bestMap: null, hyper: { ...h, method: 'semicon' } },
    // Only when it differs: checkpoints of the authors' model (fgh import-torch) carry none.
    ...(h.alpha !== SEMICON_ALPHA ? { attentionAlpha: h.alpha } : {}),
  });
  const evalOpts = { size: opts.size, transform: config.transform, mean: config.mean, std: config.std, batch: h.batch };

  try {
    if (opts.resume && hasRun(opts.out)) {
      const saved = await loadRun(opts.out, model);
      checkResumedHyper(saved, h, opts.out);
      config = saved.config;
      position = saved.position;
      logLines = saved.log;
      opt.importState(saved.tensors);
      B = requireTensor(saved.tensors, 'database_codes', N * bits, opts.out).slice();
      U = requireTensor(saved.tensors, 'sample_features', ns * bits, opts.out).slice();
      if (config.training!.complete) {
        log(`${opts.out}: already complete`);
        return { out: opts.out, complete: true, epochs: config.training!.epoch, lastMap: config.training!.bestMap, seconds: 0 };
      }
      log(`resuming ${opts.out} at iteration ${position.iter + 1}, epoch ${position.epoch + 1}${position.batch ? `, batch ${position.batch + 1}` : ''}`);
    } else if (opts.init) {
      log(`initialised from ${opts.init}: ${await loadInitWeights(model, opts.init)}`);
    }

    const save = async (p: Position): Promise<void> => {
      const tensors = new Map<string, WritableTensor>([...opt.exportState(), ['database_codes', { shape: [N, bits], data: B }], ['sample_features', { shape: [ns, bits], data: U }]]);
      config = { ...config, training: { ...config.training!, epoch: p.iter * h.maxEpoch + p.epoch, step: opt.steps } };
      // From the first bitwise update on, B is the database's codes: kept as a code store that
      // fgh eval and fgh search read directly (the reference evaluates against these, not re-encoded ones).
      const extra: Record<string, Uint8Array> = p.iter > 0 ? { [DATABASE_CODES_FILE]: codeStoreBytes({ codes: packSigns(B, N, bits), labels: labelsOf(data.train, C), ids: data.train.map((s) => s.id) }, path.join(opts.out, DATABASE_CODES_FILE)) } : {};
      await saveRun(opts.out, config, model, p, tensors, logLines, extra);
      opts.onSave?.(p);
    };

    let lastMap: number | null = config.training!.bestMap;
    const bTensor = (): tf.Tensor2D => tf.tensor2d(B, [N, bits]);
    for (let it = position.iter; it < h.maxIter; it++) {
      const lr = h.lr * 0.1 ** h.lrSteps.filter((s) => it >= s).length;
      opt.setLr(lr);
      const irng = new Rng(mixSeed(h.seed, 3, it));
      const sampleIndex = irng.sample(N, ns);
      const sampleLabels = sampleIndex.map((i) => dbLabels[i]!);
      const r = softSimilarityRatio(sampleLabels, dbLabels, C);
      const samples = sampleIndex.map((i) => data.train[i]!);
      const bT = bTensor();
      const t0 = Date.now();
      for (let epoch = it === position.iter ? position.epoch : 0; epoch < h.maxEpoch; epoch++) {
        const order = new Rng(mixSeed(h.seed, 4, it, epoch)).shuffle(samples.map((_, i) => i));
        const fromBatch = it === position.iter && epoch === position.epoch ? position.batch : 0;
        const bar = new Progress(`iter ${it + 1}/${h.maxIter} epoch ${epoch + 1}/${h.maxEpoch}`, ns, { unit: 'images', quiet: opts.quiet ?? false });
        bar.tick(Math.min(ns, fromBatch * h.batch));
        const sums = epochSums({ loss: 0, hash: 0, quant: 0, n: 0 }, position, it, epoch);
        for await (const b of epochBatches({ samples, order, batchSize: h.batch, fromBatch, size: opts.size, mean: config.mean, std: config.std, seed: h.seed, epochKey: mixSeed(it, epoch), augment: semiconAugment(opts.size, h.cropScale) })) {
          const items = b.positions.map((p) => order[p]!);
          const rows = similarityRows(items.map((i) => sampleLabels[i]!), dbLabels, r);
          const omega = new Float32Array(items.length * bits);
          items.forEach((i, j) => omega.set(B.subarray(sampleIndex[i]! * bits, (sampleIndex[i]! + 1) * bits), j * bits));
          let parts = { hash: 0, quant: 0 };
          let feats: Float32Array = new Float32Array(0);
          const { value, grads } = tf.variableGrads(() => {
            const f = model.forward(tf.tensor4d(b.images, b.shape), { training: true });
            feats = f.dataSync() as Float32Array;
            const l = adshLoss(f, bT, tf.tensor2d(rows, [items.length, N]), tf.tensor2d(omega, [items.length, bits]), h.gamma);
            parts = { hash: l.hash.dataSync()[0]!, quant: l.quant.dataSync()[0]! };
            return l.loss;
          }, model.trainableVariables());
          const loss = (await value.data())[0]!;
          value.dispose();
          opt.step(grads);
          tf.dispose(Object.values(grads));
          items.forEach((i, j) => U.set(feats.subarray(j * bits, (j + 1) * bits), i * bits));
          sums.loss += loss * items.length;
          sums.hash += parts.hash * items.length;
          sums.quant += parts.quant * items.length;
          sums.n += items.length;
          bar.status(`loss ${(sums.loss / sums.n).toFixed(4)} (hash ${(sums.hash / sums.n).toFixed(4)} quant ${(sums.quant / sums.n).toFixed(4)}) lr ${lr}`);
          bar.tick(items.length);
          if (await opts.stop?.poll()) {
            bar.finish();
            bT.dispose();
            await save({ iter: it, epoch, batch: b.k + 1, sums });
            log(`saved ${opts.out} in iteration ${it + 1}, epoch ${epoch + 1}; --resume continues from there`);
            return { out: opts.out, complete: false, epochs: it * h.maxEpoch + epoch, lastMap, seconds: (Date.now() - started) / 1000 };
          }
        }
        bar.finish();
        logLines.push(JSON.stringify({ iter: it + 1, epoch: epoch + 1, bits, loss: sums.loss / Math.max(1, sums.n), hash: sums.hash / Math.max(1, sums.n), quant: sums.quant / Math.max(1, sums.n), lr, seconds: (Date.now() - t0) / 1000 }));
        if (epoch + 1 < h.maxEpoch) await save({ iter: it, epoch: epoch + 1, batch: 0 });
      }
      bT.dispose();
      B = solveDcc(B, U, sampleIndex, sampleLabels, dbLabels, C, bits, h.gamma);
      let map: number | null = null;
      if (h.evalEvery > 0 && ((it + 1) % h.evalEvery === 0 || it + 1 === h.maxIter)) {
        // Query codes from the model, database = the learned B (the reference's protocol).
        const q = await encodeSamples(model, data.test, evalOpts);
        const db = packSigns(B, N, bits);
        map = (await evaluate(q, labelsOf(data.test, C), db, labelsOf(data.train, C), h.topk > 0 ? { topk: h.topk } : {})).map;
        lastMap = map;
        log(`iteration ${it + 1}: mAP@all ${map.toFixed(4)} (database = learned B)`);
      }
      const best = config.training!.bestMap;
      const improved = map !== null && (best === null || map > best);
      logLines.push(JSON.stringify({ iter: it + 1, bits, map, best: improved ? map : best, seconds: (Date.now() - t0) / 1000 }));
      config = { ...config, training: { ...config.training!, bestMap: improved ? map : best, complete: it + 1 === h.maxIter } };
      U = new Float32Array(ns * bits);
      await save({ iter: it + 1, epoch: 0, batch: 0 });
    }
    return { out: opts.out, complete: true, epochs: h.maxIter * h.maxEpoch, lastMap, seconds: (Date.now() - started) / 1000 };
  } finally {
    model.dispose();
    opt.dispose();
  }
}

