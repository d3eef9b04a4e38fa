import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';
import type { EvalTransform, GraphMetadata } from '../export/metadata.js';
import { FghError } from '../util/errors.js';
import { MAX_OPSET, MIN_OPSET, irVersionFor } from '../../exporters/opset.js';

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

/**
 * ModelProto's top-level fields (onnx.proto) and their wire types: 0 varint, 2 length-delimited.
 * ONNX has no checksum; refusing fields it does not define, wrong wire types and repeated
 * singular fields catches damage to the bytes around the graph (test/encode/onnx-flips).
 */
const SINGULAR: ReadonlyMap<number, 0 | 2> = new Map([
  [1, 0], // ir_version
  [2, 2], // producer_name
  [3, 2], // producer_version
  [4, 2], // domain
  [5, 0], // model_version
  [6, 2], // doc_string
  [7, 2], // graph
]);
const REPEATED: ReadonlySet<number> = new Set([8, 14, 20, 25, 26]); // opset_import, metadata_props, training_info, functions, configuration
const IR_VERSION = 1;
const GRAPH = 7;
const OPSET_IMPORT = 8;
const METADATA_PROPS = 14;
const TRANSFORMS: readonly EvalTransform[] = ['resize-224', 'resize-256-centercrop-224'];

/** What the reader takes from a model's top level; the graph itself is skipped. */
export interface ModelHeader {
  props: Map<string, string>;
  irVersion: number | null;
  /** The default domain's opset, or null when the model imports none. */
  opset: number | null;
  hasGraph: boolean;
}

function varint64(r: protobuf.Reader): number {
  const v = r.uint64() as unknown as { low: number; high: number };
  return (v.high >>> 0) * 2 ** 32 + (v.low >>> 0);
}

/** A StringStringEntryProto or OperatorSetIdProto: field 1 a string, field 2 of the `second` wire type. */
function entry(r: protobuf.Reader, second: 0 | 2): [string, string | number] {
  const end = r.uint32() + r.pos;
  if (end > r.len) throw new Error('a field runs past the end of the file');
  let first = '';
  let value: string | number = second === 2 ? '' : 0;
  while (r.pos < end) {
    const t = r.uint32();
    if (t === (1 << 3) + 2) first = r.string();
    else if (t === (2 << 3) + second) value = second === 2 ? r.string() : varint64(r);
    else throw new Error(`unexpected field ${t >>> 3} (wire type ${t & 7}) in a ${second === 2 ? 'metadata entry' : 'opset import'}`);
  }
  if (r.pos !== end) throw new Error('a field runs past its length');
  return [first, value];
}

export function readModelHeader(bytes: Uint8Array, file: string): ModelHeader {
  const header: ModelHeader = { props: new Map(), irVersion: null, opset: null, hasGraph: false };
  const r = protobuf.Reader.create(bytes);
  const seen = new Set<number>();
  try {
    while (r.pos < r.len) {
      const tag = r.uint32();
      const field = tag >>> 3;
      const wire = tag & 7;
      if (SINGULAR.has(field)) {
        if (SINGULAR.get(field) !== wire) throw new Error(`field ${field} has wire type ${wire}`);
        if (seen.has(field)) throw new Error(`field ${field} appears twice`);
        seen.add(field);
        if (field === IR_VERSION) {
          header.irVersion = varint64(r);
        } else {
          if (field === GRAPH) header.hasGraph = true;
          r.skipType(wire);
        }
      } else if (REPEATED.has(field)) {
        if (wire !== 2) throw new Error(`field ${field} has wire type ${wire}`);
        if (field === METADATA_PROPS) {
          const [key, value] = entry(r, 2);
          header.props.set(key, value as string);
        } else if (field === OPSET_IMPORT) {
          const [domain, version] = entry(r, 0);
          if (domain === '' || domain === 'ai.onnx') header.opset = version as number;
        } else {
          r.skipType(wire);
        }
      } else {
        throw new Error(`field ${field} is not a ModelProto field`);
      }
    }
  } catch (e) {
    throw new FghError(`${file}: not a readable ONNX model (${e instanceof Error ? e.message : String(e)})`);
  }
  return header;
}

export function readMetadataProps(bytes: Uint8Array, file: string): Map<string, string> {
  return readModelHeader(bytes, file).props;
}

/**
 * The model's info, from its metadata, once its top level is whole: a graph, and the IR version
 * fgh export writes for its opset (another one means the bytes were changed after the export).
 */
export function modelInfoFromBytes(bytes: Uint8Array, file: string): ModelInfo {
  const h = readModelHeader(bytes, file);
  const info = modelInfoFromProps(h.props, file);
  if (!h.hasGraph) throw new FghError(`${file}: not a readable ONNX model (no graph)`);
  if (h.opset === null || h.opset < MIN_OPSET || h.opset > MAX_OPSET) throw new FghError(`${file}: the model imports opset ${h.opset ?? '(none)'}; fgh export writes ${MIN_OPSET}..${MAX_OPSET}`);
  const ir = irVersionFor(h.opset);
  if (h.irVersion !== ir) throw new FghError(`${file}: IR version ${h.irVersion ?? '(none)'} with opset ${h.opset}, where fgh export writes IR ${ir}: the file was changed after the export`);
  return info;
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
  return { info: modelInfoFromBytes(bytes, file), bytes };
}
