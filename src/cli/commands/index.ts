import type { Command } from 'commander';
import { registerDoctor } from './doctor.js';
import { registerSynth } from './synth.js';
import { registerDataset } from './dataset.js';
import { registerCodes } from './codes.js';
import { registerEval } from './eval.js';
import { registerSearch } from './search.js';
import { registerConvertWeights } from './convert-weights.js';
import { registerImportTorch } from './import-torch.js';
import { registerExport } from './export.js';
import { registerEncode } from './encode.js';
import { registerTrain } from './train.js';
import { registerFinetune } from './finetune.js';
import { registerDemo } from './demo.js';
import { registerServe } from './serve.js';

/** Every subcommand registers itself here; order is the order of `fgh --help`. */
export const commands: Array<(program: Command) => void> = [
  registerDemo,
  registerSynth,
  registerDataset,
  registerConvertWeights,
  registerImportTorch,
  registerFinetune,
  registerTrain,
  registerExport,
  registerEncode,
  registerCodes,
  registerEval,
  registerSearch,
  registerServe,
  registerDoctor,
];
