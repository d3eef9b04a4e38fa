/**
 * Loading codes for the CLI: a code store, or a .npy array of codes (packed uint8, ±1 float,
 * {0,1}) with labels from a separate .npy. Told apart by their magic bytes, not by extension.
 */
import { closeSync, readFileSync, readSync } from 'node:fs';
import { FghError } from '../util/errors.js';
import { openForReading } from '../util/fs-errors.js';
import { readNpy } from '../util/npy.js';
import { codesFromNpy, type CodeLayout, type Codes } from './codes.js';
import { labelsFromNpy, type Labels } from './labels.js';
import { readCodeStore } from './code-store.js';

export interface CodeInput {
  file: string;
  kind: 'store' | 'npy';
  codes: Codes;
  labels: Labels | null;
  /** Item ids (stores only). */
  ids: string[] | null;
}

function sniff(file: string): 'store' | 'npy' | 'other' {
  const fd = openForReading(file);
  try {
    const b = Buffer.alloc(8);
    const n = readSync(fd, b, 0, 8, 0);
    if (n >= 6 && b[0] === 0x93 && b.toString('latin1', 1, 6) === 'NUMPY') return 'npy';
    if (n === 8 && b.toString('latin1') === 'FGHCODES') return 'store';
    return 'other';
  } finally {
    closeSync(fd);
  }
}

export interface LoadOptions {
  /** A labels .npy that replaces (or supplies) the labels. */
  labelsFile?: string;
  /** For .npy codes: bits used (packed) or expected (one value per bit). */
  bits?: number;
  /** Where `bits` came from, if not --bits: a clause such as "db.fghc holds 12-bit codes". */
  bitsFrom?: string;
  layout?: CodeLayout;
}

export function loadCodeInput(file: string, opts: LoadOptions = {}): CodeInput {
  const kind = sniff(file);
  let input: CodeInput;
  if (kind === 'store') {
    const s = readCodeStore(file);
    if (opts.bits !== undefined && opts.bits !== s.header.bits) throw new FghError(`${file}: holds ${s.header.bits}-bit codes, ${opts.bitsFrom ?? `--bits says ${opts.bits}`}`);
    input = { file, kind, codes: s.codes, labels: s.labels, ids: s.ids };
  } else if (kind === 'npy') {
    const codes = codesFromNpy(readNpy(file), file, { ...(opts.bits !== undefined && { bits: opts.bits }), ...(opts.layout && { layout: opts.layout }), ...(opts.bitsFrom && { bitsFrom: opts.bitsFrom }) });
    input = { file, kind, codes, labels: null, ids: null };
  } else {
    throw new FghError(`${file}: neither an fgh code store nor a NumPy .npy file`);
  }
  if (opts.labelsFile) {
    const labels = labelsFromNpy(readNpy(opts.labelsFile), opts.labelsFile);
    if (labels.count !== input.codes.count) throw new FghError(`${opts.labelsFile}: ${labels.count} labels for ${input.codes.count} codes in ${file}`);
    input.labels = labels;
  }
  return input;
}

/** One id per line (a trailing newline and CRLF line ends accepted). */
export function readIdsFile(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FghError(code === 'ENOENT' ? `${file}: no such file` : `${file}: cannot read (${code ?? String(e)})`);
  }
  if (text === '') return [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
}
