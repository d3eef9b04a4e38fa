import type { EvalTransformName } from './pixels.js';

/**
 * How images become model inputs outside training: the ImageNet normalisation and the eval
 * transform names. Below the checkpoint (weights/) and the export (export/), which both record them.
 */
export const IMAGENET_MEAN: readonly [number, number, number] = [0.485, 0.456, 0.406];
export const IMAGENET_STD: readonly [number, number, number] = [0.229, 0.224, 0.225];

/** The eval transforms a graph or checkpoint can declare; `encode` reproduces them from this name alone. */
export type EvalTransform = EvalTransformName;
