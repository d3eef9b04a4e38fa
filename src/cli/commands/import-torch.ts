import type { Command } from 'commander';
import path from 'node:path';
import { HASH_METHODS, type HashMethod } from '../../models/hashing.js';
import { assertWritableOutput } from '../../util/atomic.js';
import { FghError } from '../../util/errors.js';
import type { ImportTorchSummary } from '../../weights/import-torch.js';
import { WEIGHTS_FORMAT_NAMES } from '../../weights/state-dict-report.js';

function parseMethod(v: string): HashMethod {
  if (!(HASH_METHODS as readonly string[]).includes(v)) throw new FghError(`--method must be ${HASH_METHODS.join(' or ')}, got "${v}"`);
  return v as HashMethod;
}

function positiveInt(flag: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < 1) throw new FghError(`${flag} must be a positive integer, got "${v}"`);
    return n;
  };
}

function formatSummary(s: ImportTorchSummary, describeIgnored: (ignored: ImportTorchSummary['ignored']) => string): string {
  const lines = [
    `read ${path.basename(s.file)} (${WEIGHTS_FORMAT_NAMES[s.format]}${s.unwrappedFrom ? `, state dict under '${s.unwrappedFrom}'` : ''}${s.strippedPrefix ? `, prefix '${s.strippedPrefix}' removed` : ''})`,
    `wrote ${s.out}: ${s.method} (${s.arch}), ${s.bits} bits${s.classes ? `, ${s.classes} classes` : ''}, ${s.tensors} tensors, ${s.parameters.toLocaleString('en-US')} parameters, ${s.bytes.toLocaleString('en-US')} bytes of weights`,
  ];
  if (s.ignored.length) lines.push(`note: ${describeIgnored(s.ignored)}`);
  return lines.join('\n');
}

export function registerImportTorch(program: Command): void {
  program
    .command('import-torch')
    .description(
      "import a state dict saved by the reference PyTorch code (sRLH's MainNet, SEMICON's SEMICON) into an fgh checkpoint directory " +
        "(config.json + weights.safetensors). FILE: legacy pickle .pth, zip .pth or .safetensors, the state dict itself or nested under " +
        "'model_state_dict'/'state_dict', with or without DataParallel's 'module.' prefix; read without Python, tensors only. " +
        'Names and shapes must match the model exactly (tensors the model never uses, such as sRLH\'s backbone fc, are left out). ' +
        'OUT may be absent, empty, or a checkpoint to replace.',
    )
    .argument('<file>', 'PyTorch weights file')
    .requiredOption('--method <method>', `the reference model: ${HASH_METHODS.join('|')}`, parseMethod)
    .option('--bits <n>', 'code length (default: read from the file; refused if the file disagrees)', positiveInt('--bits'))
    .option('--classes <n>', 'number of classes (sRLH: default read from the classifier; SEMICON: recorded only)', positiveInt('--classes'))
    .requiredOption('--out <dir>', 'checkpoint directory to write')
    .option('--json', 'print a JSON summary on stdout')
    .action(async (file: string, o: { method: HashMethod; bits?: number; classes?: number; out: string; json?: boolean }) => {
      assertWritableOutput(o.out, 'dir');
      const { describeIgnored, importTorch } = await import('../../weights/import-torch.js');
      const s = await importTorch(file, {
        method: o.method,
        out: o.out,
        ...(o.bits !== undefined ? { bits: o.bits } : {}),
        ...(o.classes !== undefined ? { classes: o.classes } : {}),
      });
      process.stdout.write(o.json ? `${JSON.stringify(s)}\n` : `${formatSummary(s, describeIgnored)}\n`);
    });
}
