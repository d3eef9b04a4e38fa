import type { DemoOptions } from './demo.js';

/**
 * The demo's run size (see demo.ts): apart from the pipeline so `fgh demo --help` loads no
 * TensorFlow.js. 12 epochs where the scratch recipe has 8: on 2 cores 8 took 144 s of training
 * before the onnxruntime backend's speed-ups and 85 s now, 12 take 132-142 s, and mAP@all over
 * seeds 1-3 went from 0.32-0.39 (8 epochs) to 0.56-0.73.
 */
export const DEMO_DEFAULTS: Omit<DemoOptions, 'out'> = { bits: 32, size: 48, epochs: 12, seed: 1 };
