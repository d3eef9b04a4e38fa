import type { Command } from 'commander';
import path from 'node:path';
import { RESNET_ARCHS, type ResNetArch } from '../../models/resnet-archs.js';
import { assertWritableOutput } from '../../util/atomic.js';
import { FghError } from '../../util/errors.js';
import type { ConvertSummary } from '../../weights/convert-weights.js';
import { WEIGHTS_FORMAT_NAMES } from '../../weights/state-dict-report.js';

function parseArch(v: string): ResNetArch {
  if (!(RESNET_ARCHS as readonly string[]).includes(v)) throw new FghError(`--arch must be ${RESNET_ARCHS.join(' or ')}, got "${v}"`);
  return v as ResNetArch;
}

function formatSummary(s: ConvertSummary): string {
  const lines = [
    `read ${path.basename(s.file)} (${WEIGHTS_FORMAT_NAMES[s.format]}${s.unwrappedFrom ? `, state dict under '${s.unwrappedFrom}'` : ''}${s.strippedPrefix ? `, prefix '${s.strippedPrefix}' removed` : ''})`,
    `wrote ${s.out}: ${s.arch}${s.classes ? ` with a ${s.classes}-class fc` : ' without fc'}, ${s.tensors} tensors, ${s.parameters.toLocaleString('en-US')} parameters, ${s.bytes.toLocaleString('en-US')} bytes of weights`,
  ];
  if (s.addedNumBatchesTracked) lines.push(`note: added ${s.addedNumBatchesTracked} num_batches_tracked buffers set to 0 (the file predates PyTorch 0.4)`);
  return lines.join('\n');
}

export function registerConvertWeights(program: Command): void {
  program
    .command('convert-weights')
    .description(
      'convert a torchvision ResNet state dict (legacy pickle .pth such as resnet18-5c106cde.pth, zip .pth of torch >= 1.6, or .safetensors) ' +
        'into an fgh checkpoint directory (config.json + weights.safetensors). The file is read without Python and may only contain tensors; ' +
        'its names and shapes must match the architecture exactly (fc is kept). OUT may be absent, empty, or a checkpoint to replace.',
    )
    .argument('<file>', 'PyTorch weights file')
    .requiredOption('--arch <arch>', `architecture: ${RESNET_ARCHS.join('|')}`, parseArch)
    .requiredOption('--out <dir>', 'checkpoint directory to write')
    .option('--json', 'print a JSON summary on stdout')
    .action(async (file: string, o: { arch: ResNetArch; out: string; json?: boolean }) => {
      assertWritableOutput(o.out, 'dir');
      const { convertWeights } = await import('../../weights/convert-weights.js');
      const s = await convertWeights(file, o.arch, o.out);
      process.stdout.write(o.json ? `${JSON.stringify(s)}\n` : `${formatSummary(s)}\n`);
    });
}
