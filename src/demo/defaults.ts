import { SRLH_SCRATCH } from '../train/recipes.js';
import type { DemoOptions } from './demo.js';

/** The demo's run size (see demo.ts): apart from the pipeline so `fgh demo --help` loads no TensorFlow.js. */
export const DEMO_DEFAULTS: Omit<DemoOptions, 'out'> = { bits: 32, size: 48, epochs: SRLH_SCRATCH.epochs, seed: 1 };
