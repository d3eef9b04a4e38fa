import path from 'node:path';
import { selectBackend } from '../backend/select.js';
import { ResNet, type ResNetArch } from '../models/resnet.js';
import { loadStateDict } from '../models/state-dict.js';
import { FghError } from '../util/errors.js';
import { Rng } from '../util/rng.js';
import { readWeightsFile, type WeightsFormat } from './torch-file.js';
import { newCheckpointConfig, saveModelCheckpoint } from './checkpoint.js';
import { mismatchReport } from './state-dict-report.js';

export interface ConvertSummary {
  file: string;
  format: WeightsFormat;
  sha256: string;
  arch: ResNetArch;
  /** Outputs of the kept `fc` layer, or null when the file has none. */
  classes: number | null;
  out: string;
  /** Tensors written (parameters and buffers). */
  tensors: number;
  /** Elements of the learnable parameters. */
  parameters: number;
  /** Size of weights.safetensors. */
  bytes: number;
  /** BN `num_batches_tracked` buffers added as 0 (files saved by PyTorch < 0.4 lack them). */
  addedNumBatchesTracked: number;
  unwrappedFrom: string | null;
  strippedPrefix: string | null;
}

/** torchvision block counts per stage, to name what a mismatching file probably is. */
const KNOWN_RESNETS: ReadonlyArray<[string, 'basic' | 'bottleneck', string]> = [
  ['resnet18', 'basic', '2,2,2,2'],
  ['resnet34', 'basic', '3,4,6,3'],
  ['resnet50', 'bottleneck', '3,4,6,3'],
  ['resnet101', 'bottleneck', '3,4,23,3'],
  ['resnet152', 'bottleneck', '3,8,36,3'],
];

/** Which torchvision ResNet a state dict's names describe, or null. */
export function guessResNetArch(names: Iterable<string>): string | null {
  const blocks = [0, 0, 0, 0];
  let bottleneck = false;
  for (const n of names) {
    const m = /^layer([1-4])\.(\d+)\.(conv\d)\./.exec(n);
    if (!m) continue;
    const stage = Number(m[1]) - 1;
    blocks[stage] = Math.max(blocks[stage]!, Number(m[2]) + 1);
    if (m[3] === 'conv3') bottleneck = true;
  }
  const kind = bottleneck ? 'bottleneck' : 'basic';
  const hit = KNOWN_RESNETS.find(([, k, b]) => k === kind && b === blocks.join(','));
  return hit ? hit[0] : null;
}

/** Reads a torchvision ResNet state dict, checks it strictly against our ResNet, writes a checkpoint. */
export async function convertWeights(file: string, arch: ResNetArch, out: string): Promise<ConvertSummary> {
  const wf = await readWeightsFile(file);
  const source = path.basename(file);
  const tensors = new Map(wf.tensors);
  const fc = tensors.get('fc.weight');
  const classes = fc && fc.shape.length === 2 ? fc.shape[0]! : null;

  await selectBackend();
  const model = new ResNet(new Rng(0), arch, classes ? { numClasses: classes } : {}).assignNames();
  try {
    const params = model.parameters();
    // PyTorch < 0.4 had no num_batches_tracked; load_state_dict then starts the counter at 0.
    let added = 0;
    if (![...tensors.keys()].some((n) => n.endsWith('.num_batches_tracked'))) {
      for (const p of params) {
        if (p.name.endsWith('.num_batches_tracked') && tensors.has(p.name.replace(/num_batches_tracked$/, 'running_mean'))) {
          tensors.set(p.name, { shape: [], data: new Float32Array(1), dtype: 'int64' });
          added++;
        }
      }
    }
    const problems = mismatchReport(tensors, params);
    if (problems) {
      const guess = guessResNetArch(tensors.keys());
      const hint = guess && guess !== arch ? ` (it looks like ${guess})` : '';
      throw new FghError(`${source} does not match ${arch}${hint}: ${problems}`);
    }
    loadStateDict(model, tensors, { strict: true });
    const config = newCheckpointConfig({
      method: 'backbone',
      arch,
      classes,
      source: { file: source, format: wf.format, sha256: wf.sha256 },
    });
    const written = await saveModelCheckpoint(out, config, model);
    const parameters = params.filter((p) => p.trainable).reduce((a, p) => a + p.torchShape.reduce((x, y) => x * y, 1), 0);
    return {
      file,
      format: wf.format,
      sha256: wf.sha256,
      arch,
      classes,
      out,
      tensors: written.tensors,
      parameters,
      bytes: written.bytes,
      addedNumBatchesTracked: added,
      unwrappedFrom: wf.unwrappedFrom,
      strippedPrefix: wf.strippedPrefix,
    };
  } finally {
    model.dispose();
  }
}
