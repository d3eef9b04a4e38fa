/**
 * Hashing baselines computed from continuous features without learning a network: random
 * projections (LSH), PCA-ITQ, and the sign of a PCA (for the features of a classifier).
 */
export type { Features } from './features.js';
export { pixelFeatures, PIXEL_SIDE } from './pixels.js';
export { randomProjectionCodes } from './lsh.js';
export { fitPca, projectPca, pcaSignCodes, type Pca, type PcaOptions } from './pca.js';
export { itqRotation, pcaItqCodes, quantisationLoss, randomRotation, type ItqOptions, type PcaItqOptions } from './itq.js';
