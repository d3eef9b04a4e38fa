/**
 * Imports a state dict saved by the reference PyTorch implementations (sRLH's `MainNet`,
 * SEMICON's `SEMICON`) into our checkpoint: reads it without Python, checks names and shapes
 * strictly against our model, and writes config.json + weights.safetensors.
 */
import path from 'node:path';
import { selectBackend } from '../backend/select.js';
import { createHashingModel } from '../models/factory.js';
import type { HashMethod } from '../models/hashing.js';
import type { ResNetArch } from '../models/resnet.js';
import { loadStateDict } from '../models/state-dict.js';
import { srlhTorchName } from '../models/srlh.js';
import { FghError } from '../util/errors.js';
import { newCheckpointConfig, saveModelCheckpoint } from './checkpoint.js';
import { listNames, mismatchReport } from './state-dict-report.js';
import { readWeightsFile, type LoadedTensor, type WeightsFormat } from './torch-file.js';

export interface ImportTorchOptions {
  method: HashMethod;
  /** Code length; read from the file when omitted, refused when it disagrees with the file. */
  bits?: number;
  /** sRLH: classifier outputs (read from the file when omitted); SEMICON: only recorded. */
  classes?: number;
  out: string;
}

export interface ImportTorchSummary {
  file: string;
  format: WeightsFormat;
  sha256: string;
  method: HashMethod;
  arch: ResNetArch;
  bits: number;
  classes: number | null;
  out: string;
  /** Tensors written (parameters and buffers). */
  tensors: number;
  /** Elements of the learnable parameters. */
  parameters: number;
  /** Size of weights.safetensors. */
  bytes: number;
  /** Entries of the file that the model never uses and that were left out (sRLH's backbone `fc`). */
  ignored: string[];
  unwrappedFrom: string | null;
  strippedPrefix: string | null;
}

/** The reference model, with its article, for messages. */
export const METHOD_LABELS: Record<HashMethod, string> = { srlh: 'an sRLH MainNet', semicon: 'a SEMICON' };

/** Reference names mapped to ours (null: present in the reference, unused, dropped). */
const RENAME: Record<HashMethod, (name: string) => string | null> = {
  srlh: srlhTorchName,
  semicon: (name) => name,
};

/** Which reference model a state dict's names describe, or null. */
export function detectMethod(names: ReadonlySet<string>): HashMethod | null {
  if (names.has('W_G') && [...names].some((n) => n.startsWith('refine_local.'))) return 'semicon';
  if (names.has('hash_layer.0.weight') && [...names].some((n) => n.startsWith('pretrained_model.'))) return 'srlh';
  return null;
}

function rows(tensors: ReadonlyMap<string, LoadedTensor>, name: string): number | null {
  const t = tensors.get(name);
  return t && t.shape.length === 2 ? t.shape[0]! : null;
}

/** The code length the file's projection tensors give, with how it was read; null if absent. */
function bitsInFile(method: HashMethod, tensors: ReadonlyMap<string, LoadedTensor>): { bits: number; how: string } | null {
  if (method === 'srlh') {
    const n = rows(tensors, 'hash_layer.0.weight');
    return n === null ? null : { bits: n, how: `hash_layer.0.weight has ${n} rows` };
  }
  const parts = ['W_G', 'W_L1', 'W_L2', 'W_L3'].map((n) => rows(tensors, n));
  if (parts.some((p) => p === null)) return null;
  const bits = parts.reduce<number>((a, b) => a + b!, 0);
  return { bits, how: `W_G+W_L1+W_L2+W_L3 have ${parts.join('+')} = ${bits} rows` };
}

/** Checks the file against --method/--bits/--classes; returns the bits and classes to build. */
function resolveShape(source: string, opts: ImportTorchOptions, tensors: ReadonlyMap<string, LoadedTensor>): { bits: number; classes: number | null } {
  const names = new Set(tensors.keys());
  const seen = detectMethod(names);
  if (seen !== null && seen !== opts.method) {
    throw new FghError(`${source} is ${METHOD_LABELS[seen]} state dict, not ${METHOD_LABELS[opts.method]} one: use --method ${seen}`);
  }
  if (seen === null && names.has('conv1.weight') && names.has('layer1.0.conv1.weight')) {
    throw new FghError(`${source} is a plain ResNet state dict, not ${METHOD_LABELS[opts.method]} one (convert ImageNet backbones with fgh convert-weights)`);
  }
  const found = bitsInFile(opts.method, tensors);
  if (opts.bits !== undefined && found && found.bits !== opts.bits) {
    throw new FghError(`${source}: --bits ${opts.bits} does not match the file: ${found.how} (a ${found.bits}-bit model)`);
  }
  const bits = opts.bits ?? found?.bits;
  if (bits === undefined) throw new FghError(`${source}: cannot tell the code length (no ${opts.method === 'srlh' ? 'hash_layer.0.weight' : 'W_G..W_L3'}); is it ${METHOD_LABELS[opts.method]} state dict?`);
  if (opts.method === 'semicon') return { bits, classes: opts.classes ?? null };
  const inFile = rows(tensors, 'rawcls_net.weight');
  if (opts.classes !== undefined && inFile !== null && inFile !== opts.classes) {
    throw new FghError(`${source}: --classes ${opts.classes} does not match the file: rawcls_net.weight has ${inFile} rows`);
  }
  const classes = opts.classes ?? inFile;
  if (classes === null) throw new FghError(`${source}: cannot tell the number of classes (no rawcls_net.weight); is it ${METHOD_LABELS.srlh} state dict?`);
  return { bits, classes };
}

export async function importTorch(file: string, opts: ImportTorchOptions): Promise<ImportTorchSummary> {
  const wf = await readWeightsFile(file);
  const source = path.basename(file);
  const { bits, classes } = resolveShape(source, opts, wf.tensors);
  const rename = RENAME[opts.method];
  const ignored: string[] = [];
  const renamed = new Map<string, LoadedTensor>();
  for (const [name, t] of wf.tensors) {
    const target = rename(name);
    if (target === null) ignored.push(name);
    else renamed.set(target, t);
  }

  await selectBackend();
  const model = createHashingModel({ method: opts.method, bits, classes });
  try {
    const params = model.parameters();
    const problems = mismatchReport(renamed, params);
    if (problems) throw new FghError(`${source} does not match ${METHOD_LABELS[opts.method]} (${model.arch}, ${bits} bits): ${problems}`);
    loadStateDict(model, renamed, { strict: true });
    const config = newCheckpointConfig({
      method: opts.method,
      arch: model.arch,
      bits,
      classes,
      source: { file: source, format: wf.format, sha256: wf.sha256 },
    });
    const written = await saveModelCheckpoint(opts.out, config, model);
    const parameters = params.filter((p) => p.trainable).reduce((a, p) => a + p.torchShape.reduce((x, y) => x * y, 1), 0);
    return {
      file,
      format: wf.format,
      sha256: wf.sha256,
      method: opts.method,
      arch: model.arch,
      bits,
      classes,
      out: opts.out,
      tensors: written.tensors,
      parameters,
      bytes: written.bytes,
      ignored,
      unwrappedFrom: wf.unwrappedFrom,
      strippedPrefix: wf.strippedPrefix,
    };
  } finally {
    model.dispose();
  }
}

/** `ignored 2 tensors the model never uses (pretrained_model.fc.weight, pretrained_model.fc.bias)`. */
export function describeIgnored(names: string[]): string {
  return `ignored ${names.length} tensor${names.length > 1 ? 's' : ''} the model never uses (${listNames(names)})`;
}
