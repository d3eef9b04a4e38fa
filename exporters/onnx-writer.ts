import path from 'node:path';
import protobuf from 'protobufjs';
import { projectRoot } from '../src/util/version.js';
import type { AttrValue, Dim, GraphBuilder, Initializer, OnnxDataType, ValueInfo } from './graph.js';
import { MAX_OPSET, MIN_OPSET, DEFAULT_OPSET, irVersionFor } from './opset.js';

/**
 * Serialises a GraphBuilder into an ONNX ModelProto with protobufjs and the official onnx.proto
 * schema (exporters/onnx.proto), so field numbers and types come from the standard itself.
 */

export { MAX_OPSET, MIN_OPSET, DEFAULT_OPSET, irVersionFor };

/** protobuf's 2 GiB message limit; graphs above it would need ONNX external data. */
export const MAX_MODEL_BYTES = 2 ** 31 - 1;

export interface ModelOptions {
  opset?: number;
  graphName: string;
  producerName: string;
  producerVersion: string;
  docString?: string;
  /** Written as metadata_props, in this order. */
  metadata?: Record<string, string>;
}

let cachedRoot: protobuf.Root | null = null;

function schema(): protobuf.Root {
  cachedRoot ??= protobuf.loadSync(path.join(projectRoot(), 'exporters', 'onnx.proto'));
  return cachedRoot;
}

const DATA_TYPE: Record<OnnxDataType, string> = {
  float32: 'FLOAT',
  uint8: 'UINT8',
  int32: 'INT32',
  int64: 'INT64',
  bool: 'BOOL',
};

function dataTypeCode(dtype: OnnxDataType): number {
  const e = schema().lookupEnum('onnx.TensorProto.DataType');
  const code = e.values[DATA_TYPE[dtype]];
  if (code === undefined) throw new Error(`no ONNX data type for ${dtype}`);
  return code;
}

function attributeTypeCode(name: string): number {
  const code = schema().lookupEnum('onnx.AttributeProto.AttributeType').values[name];
  if (code === undefined) throw new Error(`no ONNX attribute type ${name}`);
  return code;
}

/** Little-endian bytes of a typed array (ONNX raw_data is little-endian on every platform). */
function rawBytes(data: Initializer['data']): Uint8Array {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  // Every supported platform for Node is little-endian; copy so the message owns its bytes.
  return Uint8Array.from(bytes);
}

function tensorProto(t: Initializer): Record<string, unknown> {
  return { name: t.name, dims: t.dims, dataType: dataTypeCode(t.dtype), rawData: rawBytes(t.data) };
}

function attributeProto(name: string, a: AttrValue): Record<string, unknown> {
  switch (a.kind) {
    case 'int':
      return { name, type: attributeTypeCode('INT'), i: a.value };
    case 'ints':
      return { name, type: attributeTypeCode('INTS'), ints: a.value };
    case 'float':
      return { name, type: attributeTypeCode('FLOAT'), f: a.value };
    case 'floats':
      return { name, type: attributeTypeCode('FLOATS'), floats: a.value };
    case 'string':
      return { name, type: attributeTypeCode('STRING'), s: new TextEncoder().encode(a.value) };
    case 'tensor':
      return { name, type: attributeTypeCode('TENSOR'), t: tensorProto(a.value) };
  }
}

function dimProto(d: Dim): Record<string, unknown> {
  return typeof d === 'number' ? { dimValue: d } : { dimParam: d };
}

function valueInfoProto(v: ValueInfo): Record<string, unknown> {
  return {
    name: v.name,
    type: { tensorType: { elemType: dataTypeCode(v.dtype), shape: { dim: v.shape.map(dimProto) } } },
  };
}

/** The ModelProto as a plain object (what protobufjs encodes), for inspection in tests. */
export function modelObject(g: GraphBuilder, opts: ModelOptions): Record<string, unknown> {
  const opset = opts.opset ?? DEFAULT_OPSET;
  const graph = {
    name: opts.graphName,
    node: g.nodes.map((n) => ({
      name: n.name,
      opType: n.opType,
      domain: n.domain ?? '',
      input: n.inputs,
      output: n.outputs,
      attribute: Object.entries(n.attrs).map(([k, v]) => attributeProto(k, v)),
    })),
    initializer: [...g.initializers.values()].map(tensorProto),
    input: g.inputs.map(valueInfoProto),
    output: g.outputs.map(valueInfoProto),
  };
  return {
    irVersion: irVersionFor(opset),
    // Operator sets beyond ONNX's own are onnxruntime's, all at version 1.
    opsetImport: [{ domain: '', version: opset }, ...[...new Set(g.nodes.map((n) => n.domain ?? ''))].filter((d) => d !== '').map((domain) => ({ domain, version: 1 }))],
    producerName: opts.producerName,
    producerVersion: opts.producerVersion,
    docString: opts.docString ?? '',
    graph,
    metadataProps: Object.entries(opts.metadata ?? {}).map(([key, value]) => ({ key, value })),
  };
}

/** Encodes the graph as ONNX bytes. Throws if the model would exceed protobuf's 2 GiB limit. */
export function encodeModel(g: GraphBuilder, opts: ModelOptions): Uint8Array {
  let bytes = 0;
  for (const t of g.initializers.values()) bytes += t.data.byteLength;
  if (bytes > MAX_MODEL_BYTES) {
    throw new RangeError(`the weights take ${bytes} bytes, over ONNX's 2 GiB single-file limit (external data is not supported)`);
  }
  const Model = schema().lookupType('onnx.ModelProto');
  const obj = modelObject(g, opts);
  const err = Model.verify(obj);
  if (err) throw new Error(`internal error: invalid ModelProto: ${err}`);
  return Model.encode(Model.fromObject(obj)).finish();
}

/** Decodes ONNX bytes into a plain object (tests and `fgh export` summaries use it). */
export function decodeModel(bytes: Uint8Array): Record<string, unknown> {
  const Model = schema().lookupType('onnx.ModelProto');
  return Model.toObject(Model.decode(bytes), { longs: Number, bytes: Array, defaults: false }) as Record<string, unknown>;
}
