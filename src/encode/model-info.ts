import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';
import type { EvalTransform, GraphMetadata } from '../export/metadata.js';
import { FghError } from '../util/errors.js';

/**
 * What `fgh encode` needs to know about an exported graph, read from its metadata_props
 * (cli.md) without decoding the weights: the top-level ModelProto fields are scanned and the
 * graph (field 7) is skipped.
 */
export interface ModelInfo extends GraphMetadata {
  file: string;
  producer: string;
  /** Packed code bytes per item (0 for a plain backbone). */
  codeBytes: number;
}

const METADATA_PROPS = 14; // ModelProto.metadata_props
const TRANSFORMS: readonly EvalTransform[] = ['resize-224', 'resize-256-centercrop-224'];

export function readMetadataProps(bytes: Uint8Array, file: string): Map<string, string> {
  const props = new Map<string, string>();
  const r = protobuf.Reader.create(bytes);
  try {
    while (r.pos < r.len) {
      const tag = r.uint32();
      const field = tag >>> 3;
      if (field === METADATA_PROPS && (tag & 7) === 2) {
        const end = r.uint32() + r.pos;
        let key = '';
        let value = '';
        while (r.pos < end) {
          const t = r.uint32();
          if (t >>> 3 === 1) key = r.string();
          else if (t >>> 3 === 2) value = r.string();
          else r.skipType(t & 7);
        }
        props.set(key, value);
      } else {
        r.skipType(tag & 7);
      }
    }
  } catch (e) {
    throw new FghError(`${file}: not a readable ONNX model (${e instanceof Error ? e.message : String(e)})`);
  }
  return props;
}

function numbers(v: string | undefined, key: string, file: string): number[] {
  const xs = (v ?? '').split(',').map(Number);
  if (xs.length !== 3 || xs.some((x) => !Number.isFinite(x))) throw new FghError(`${file}: metadata '${key}' must be three numbers, got "${v ?? ''}"`);
  return xs;
}

export function modelInfoFromProps(props: Map<string, string>, file: string): ModelInfo {
  const method = props.get('method');
  if (method === undefined) throw new FghError(`${file}: no fgh metadata (method, bits, transform...): export the model with fgh export --onnx`);
  if (method !== 'srlh' && method !== 'semicon' && method !== 'backbone') throw new FghError(`${file}: unknown method "${method}" in the metadata`);
  const bits = Number(props.get('bits'));
  const inputSize = Number(props.get('input_size'));
  if (!Number.isInteger(bits) || bits < 0) throw new FghError(`${file}: metadata 'bits' must be an integer, got "${props.get('bits') ?? ''}"`);
  if (method !== 'backbone' && bits < 1) throw new FghError(`${file}: a ${method} graph must declare its bits`);
  if (!Number.isInteger(inputSize) || inputSize < 1) throw new FghError(`${file}: metadata 'input_size' must be a positive integer, got "${props.get('input_size') ?? ''}"`);
  const transform = props.get('transform') as EvalTransform | undefined;
  if (!transform || !TRANSFORMS.includes(transform)) throw new FghError(`${file}: metadata 'transform' must be one of ${TRANSFORMS.join(', ')}, got "${transform ?? ''}"`);
  return {
    file,
    method,
    arch: props.get('arch') ?? 'unknown',
    bits,
    inputSize,
    mean: numbers(props.get('mean'), 'mean', file),
    std: numbers(props.get('std'), 'std', file),
    transform,
    producer: props.get('producer') ?? '',
    codeBytes: Math.ceil(bits / 8),
  };
}

export function readModelInfo(file: string): { info: ModelInfo; bytes: Uint8Array } {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FghError(`${file}: ${code === 'ENOENT' ? 'no such file' : `cannot read (${code ?? String(e)})`}`);
  }
  return { info: modelInfoFromProps(readMetadataProps(bytes, file), file), bytes };
}
