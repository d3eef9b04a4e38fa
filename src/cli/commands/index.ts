import type { Command } from 'commander';
import { registerDoctor } from './doctor.js';
import { registerSynth } from './synth.js';
import { registerDataset } from './dataset.js';

/** Every subcommand registers itself here; order is the order of `fgh --help`. */
export const commands: Array<(program: Command) => void> = [
  registerSynth,
  registerDataset,
  registerDoctor,
];
