import type { Command } from 'commander';
import { MAX_OPSET, MIN_OPSET, DEFAULT_OPSET } from '../../../exporters/opset.js';
import type { ExportSummary } from '../../export/onnx-file.js';
import { RESNET_ARCHS, type ResNetArch } from '../../models/resnet-archs.js';
import { assertWritableOutput } from '../../util/atomic.js';
import { FghError } from '../../util/errors.js';

function parseOpset(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < MIN_OPSET || n > MAX_OPSET) throw new FghError(`--opset must be an integer in ${MIN_OPSET}..${MAX_OPSET}, got "${v}"`);
  return n;
}

function parseSize(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 32 || n > 2048) throw new FghError(`--size must be an integer in 32..2048, got "${v}"`);
  return n;
}

function parseArch(v: string): ResNetArch {
  if (!(RESNET_ARCHS as readonly string[]).includes(v)) throw new FghError(`--backbone must be ${RESNET_ARCHS.join(' or ')}, got "${v}"`);
  return v as ResNetArch;
}

export function formatExportSummary(s: ExportSummary): string {
  const what = s.method === 'backbone' ? `${s.arch} feature extractor` : `${s.method} (${s.arch}), ${s.bits} bits`;
  return `wrote ${s.out}: ${what}, ${s.inputSize} px, opset ${s.opset}, ${s.nodes} nodes, ${s.initializers} initializers, ${(s.bytes / 1e6).toFixed(1)} MB${s.batchNormFolded ? ', batch norm folded' : ''}`;
}

export function registerExport(program: Command): void {
  program
    .command('export')
    .description(
      'export a checkpoint as an ONNX graph for onnxruntime. A hashing checkpoint gives inputs `images` [N,3,S,S] (normalised) and outputs ' +
        '`features` (tanh) and `codes` (packed uint8, MSB first); a backbone gives `features` (pooled last stage). The eval transform, ' +
        'normalisation and code length are stored in the graph metadata, so `fgh encode` needs no further flags. Batch norm is folded into the ' +
        'convolutions unless --keep-batchnorm. The file is written atomically. Single-file ONNX: weights up to 2 GiB.',
    )
    .option('--onnx', 'write ONNX (the only format; accepted for clarity)')
    .option('--checkpoint <dir>', 'sRLH or SEMICON checkpoint directory')
    .option('--backbone <arch>', `plain feature extractor: ${RESNET_ARCHS.join('|')}`, parseArch)
    .option('--weights <dir>', 'backbone checkpoint (from fgh convert-weights or fgh finetune)')
    .requiredOption('--out <file>', 'ONNX file to write')
    .option('--opset <n>', `ONNX opset ${MIN_OPSET}..${MAX_OPSET} (default ${DEFAULT_OPSET})`, parseOpset)
    .option('--size <px>', 'input size (default: the checkpoint\'s)', parseSize)
    .option('--keep-batchnorm', 'keep BatchNormalization nodes instead of folding them')
    .option('--json', 'print a JSON summary on stdout')
    .action(async (o: { checkpoint?: string; backbone?: ResNetArch; weights?: string; out: string; opset?: number; size?: number; keepBatchnorm?: boolean; json?: boolean }) => {
      assertWritableOutput(o.out, 'file');
      const { exportOnnx } = await import('../../export/onnx-file.js');
      const s = await exportOnnx({
        ...(o.checkpoint ? { checkpoint: o.checkpoint } : {}),
        ...(o.backbone ? { backbone: o.backbone } : {}),
        ...(o.weights ? { weights: o.weights } : {}),
        out: o.out,
        ...(o.opset ? { opset: o.opset } : {}),
        ...(o.size ? { size: o.size } : {}),
        keepBatchNorm: o.keepBatchnorm ?? false,
      });
      process.stdout.write(o.json ? `${JSON.stringify(s)}\n` : `${formatExportSummary(s)}\n`);
    });
}
