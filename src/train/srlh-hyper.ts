import type { HyperField } from './hyper.js';

/**
 * sRLH's hyper-parameters, their defaults and their flags: apart from the training code so that
 * the CLI can list its options without loading TensorFlow.js.
 */

export interface SrlhHyper {
  epochs: number;
  batch: number;
  lr: number;
  /** Rate of the warm-up epochs; 0: the same as lr. */
  warmupLr: number;
  /** Epochs at which the learning rate is multiplied by 0.1 (reference: 200, 400). */
  lrSteps: number[];
  momentum: number;
  weightDecay: number;
  alpha: number;
  gamma: number;
  /** Multiplier of the hash loss (reference: 1). */
  hashWeight: number;
  /**
   * The class count the hash loss is averaged over (with the batch); 0: the dataset's, as the
   * reference does. Its gradient then grows as bits / classes: with 10 classes it is 20 times what
   * the reference's rates were set for on CUB's 200, and from scratch that saturates tanh within a
   * few steps (README, "Why the hash phase undid the warm-up"). 200 keeps CUB's scale on any data.
   */
  hashClasses: number;
  margin: number;
  numParts: number;
  /**
   * Dropout (p = 0.5) on the global and local features, as the reference trains from ImageNet
   * weights. From scratch it stalls learning: with it, neither fgh nor PyTorch leaves chance on
   * the demo's budget; without it both learn (see the demo).
   */
  dropout: boolean;
  /**
   * Whether the centres follow the class means of the codes after each hash epoch (the
   * reference's rule). Off, the Hadamard targets stay fixed: from scratch, the means of
   * not-yet-separated codes share most signs and the update collapses the centres onto a few
   * codes (PyTorch shows the same: 20 distinct centres, then 17, then 3).
   */
  updateCentres: boolean;
  /** Epochs of classification only. */
  warmup: number;
  /** Training images sampled per epoch (reference: 3000). */
  samplesPerEpoch: number;
  evalEvery: number;
  seed: number;
}

export const SRLH_DEFAULTS: SrlhHyper = {
  epochs: 300,
  batch: 64,
  lr: 0.001,
  warmupLr: 0,
  lrSteps: [200, 400],
  momentum: 0.9,
  weightDecay: 1e-4,
  alpha: 0.9,
  gamma: 0.1,
  hashWeight: 1,
  hashClasses: 0,
  margin: 0.5,
  numParts: 3,
  dropout: true,
  updateCentres: true,
  warmup: 2,
  samplesPerEpoch: 3000,
  evalEvery: 50,
  seed: 100,
};

export const SRLH_FIELDS: readonly HyperField<keyof SrlhHyper>[] = [
  { key: 'epochs', flag: 'epochs', kind: 'int', help: 'epochs', reference: 'epoch' },
  { key: 'batch', flag: 'batch', kind: 'int', help: 'batch size', reference: 'batch_size' },
  { key: 'lr', flag: 'lr', kind: 'number', help: 'learning rate (of the hash phase when --warmup-lr is set)', reference: 'init_lr' },
  { key: 'warmupLr', flag: 'warmup-lr', kind: 'number', min: 0, help: 'learning rate of the warm-up epochs (0: --lr)' },
  { key: 'lrSteps', flag: 'lr-steps', kind: 'ints', min: 0, help: 'epochs at which the rate is multiplied by 0.1, e.g. 200,400' },
  { key: 'momentum', flag: 'momentum', kind: 'number', min: 0, help: 'SGD momentum' },
  { key: 'weightDecay', flag: 'weight-decay', kind: 'number', min: 0, help: 'L2 weight decay', reference: 'weight_decay' },
  { key: 'alpha', flag: 'alpha', kind: 'number', min: 0, help: 'centre update: weight of the class means against their Gram-Schmidt orthogonalisation', reference: 'alpha' },
  { key: 'gamma', flag: 'gamma', kind: 'number', min: 0, help: 'weight of the quantisation term of the hash loss' },
  { key: 'hashWeight', flag: 'hash-weight', kind: 'number', min: 0, help: 'multiplier of the hash loss (the reference: 1)' },
  { key: 'hashClasses', flag: 'hash-classes', kind: 'int', min: 0, help: "the class count the hash loss is averaged over (0: the dataset's, as the reference; 200: CUB's scale on any data)" },
  { key: 'margin', flag: 'margin', kind: 'number', min: 0, help: 'triplet margin on the local features', reference: 'm' },
  { key: 'numParts', flag: 'parts', kind: 'int', min: 0, help: 'local parts (sub-regions) selected by sRLM (0: as many as the input size holds, up to 3)', reference: 'num_parts' },
  { key: 'dropout', flag: 'dropout', kind: 'bool', help: 'dropout (p = 0.5) on the global and local features' },
  { key: 'updateCentres', flag: 'update-centres', kind: 'bool', help: 'move the hash centres to the class means of the codes after each hash epoch' },
  { key: 'warmup', flag: 'warmup-epochs', kind: 'int', min: 0, help: 'epochs of classification only before the hash and triplet losses start (at most epochs - 1: the last epoch always trains the codes)' },
  { key: 'samplesPerEpoch', flag: 'samples-per-epoch', kind: 'int', help: 'training images sampled per epoch', reference: 'n_select_train' },
  { key: 'evalEvery', flag: 'eval-every', kind: 'int', min: 0, help: 'epochs between mAP evaluations (0: none; always after the last otherwise)', reference: 'test_map' },
  { key: 'seed', flag: 'seed', kind: 'int', min: 0, help: 'seed of every random draw' },
];
