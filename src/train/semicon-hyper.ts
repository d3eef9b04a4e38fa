import { EVAL_TRANSFORMS, type EvalTransformName } from '../data/pixels.js';
import { SEMICON_ALPHA } from '../models/semicon-split.js';
import type { HyperField } from './hyper.js';

/**
 * SEMICON's hyper-parameters, their defaults and their flags: apart from the training code so
 * that the CLI can list its options without loading TensorFlow.js.
 */

export interface SemiconHyper {
  maxIter: number;
  maxEpoch: number;
  batch: number;
  lr: number;
  /** Outer iterations at which the learning rate is multiplied by 0.1 (MultiStepLR, reference [40]). */
  lrSteps: number[];
  /** The reference's --optim: SGD (its default and its README's) or Adam (betas 0.9, 0.999; momentum and nesterov unused). */
  optim: 'sgd' | 'adam';
  momentum: number;
  /** Nesterov momentum (the reference's SEMICON_train.py always uses it, whatever run.py's --nesterov says). */
  nesterov: boolean;
  weightDecay: number;
  numSamples: number;
  gamma: number;
  evalEvery: number;
  /** mAP over the top K of each ranking in the run's evaluations; 0: all (the reference's -1). */
  topk: number;
  /** RandomResizedCrop's least area fraction in training (torchvision's default, the reference's, is 0.08). */
  cropScale: number;
  /** The eval transform the model is evaluated, exported and encoded with (recorded in the checkpoint). */
  evalTransform: EvalTransformName;
  /** The attention mask's exponent: 0.15 in the authors' code, 0.3 in the paper. Part of the model (and its export). */
  alpha: number;
  seed: number;
}

export const SEMICON_DEFAULTS: SemiconHyper = {
  maxIter: 40,
  maxEpoch: 30,
  batch: 16,
  lr: 2.5e-4,
  lrSteps: [40],
  optim: 'sgd',
  momentum: 0.91,
  nesterov: true,
  weightDecay: 1e-4,
  numSamples: 2000,
  gamma: 200,
  evalEvery: 1,
  topk: 0,
  cropScale: 0.08,
  evalTransform: 'resize-256-centercrop-224',
  alpha: SEMICON_ALPHA,
  seed: 0,
};

export const SEMICON_FIELDS: readonly HyperField<keyof SemiconHyper>[] = [
  { key: 'maxIter', flag: 'max-iter', kind: 'int', help: 'outer iterations (each: epochs on a sample, then the database codes are solved)', reference: 'max-iter' },
  { key: 'maxEpoch', flag: 'max-epoch', kind: 'int', help: 'epochs per outer iteration', reference: 'max-epoch' },
  { key: 'batch', flag: 'batch', kind: 'int', help: 'batch size', reference: 'batch-size' },
  { key: 'lr', flag: 'lr', kind: 'number', help: 'learning rate', reference: 'lr' },
  { key: 'lrSteps', flag: 'lr-steps', kind: 'ints', min: 0, help: 'outer iterations at which the rate is multiplied by 0.1', reference: 'lr-step' },
  { key: 'optim', flag: 'optim', kind: 'choice', choices: ['sgd', 'adam'], help: 'optimiser (Adam: torch.optim.Adam with the weight decay as L2)', reference: 'optim SGD|Adam' },
  { key: 'momentum', flag: 'momentum', kind: 'number', min: 0, help: 'SGD momentum', reference: 'momen' },
  { key: 'nesterov', flag: 'nesterov', kind: 'bool', help: 'Nesterov momentum', reference: 'nesterov (always on in SEMICON_train.py)' },
  { key: 'weightDecay', flag: 'weight-decay', kind: 'number', min: 0, help: 'L2 weight decay', reference: 'wd' },
  { key: 'numSamples', flag: 'num-samples', kind: 'int', help: 'training images sampled per outer iteration', reference: 'num-samples' },
  { key: 'gamma', flag: 'gamma', kind: 'number', min: 0, help: 'weight of the quantisation term of the ADSH loss', reference: 'gamma' },
  { key: 'evalEvery', flag: 'eval-every', kind: 'int', min: 0, help: 'outer iterations between mAP evaluations (0: none; always after the last otherwise)' },
  { key: 'topk', flag: 'topk', kind: 'int', min: 0, help: "mAP over the top K of each ranking in the run's evaluations (0: all)", reference: 'topk (-1: all)' },
  { key: 'cropScale', flag: 'crop-scale', kind: 'number', max: 1, help: 'least area fraction of the random resized crop in training (1: the whole image, flipped at random)', reference: 'RandomResizedCrop scale (0.08, 1) in the train transform' },
  { key: 'evalTransform', flag: 'eval-transform', kind: 'choice', choices: EVAL_TRANSFORMS, help: 'how images are fitted to the input size outside training, recorded in the checkpoint and its export (resize-224: the whole image, squashed)', reference: 'Resize(256) + CenterCrop(224) in the test transform' },
  { key: 'alpha', flag: 'alpha', kind: 'number', help: 'exponent of the attention mask, (a - mean) / std^alpha (recorded in the checkpoint and its export)', reference: '0.15 in models/SEMICON.py, 0.3 in the paper' },
  { key: 'seed', flag: 'seed', kind: 'int', min: 0, help: 'seed of every random draw' },
];
