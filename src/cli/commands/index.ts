import type { Command } from 'commander';
import { registerDoctor } from './doctor.js';

/** Every subcommand registers itself here; order is the order of `fgh --help`. */
export const commands: Array<(program: Command) => void> = [
  registerDoctor,
];
