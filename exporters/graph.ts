/**
 * An in-memory ONNX graph that models emit into (NCHW), independent of the protobuf writer.
 * It knows ONNX operators, not models: a layer calls `node('Conv', ...)` and gets names back.
 */

export type OnnxDataType = 'float32' | 'int64' | 'uint8' | 'int32' | 'bool';

/** An attribute value, typed as ONNX types them. */
export type AttrValue =
  | { kind: 'int'; value: number }
  | { kind: 'ints'; value: number[] }
  | { kind: 'float'; value: number }
  | { kind: 'floats'; value: number[] }
  | { kind: 'string'; value: string }
  | { kind: 'tensor'; value: Initializer };

export interface GraphNode {
  opType: string;
  name: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, AttrValue>;
  domain?: string;
}

export interface Initializer {
  name: string;
  dtype: OnnxDataType;
  dims: number[];
  data: Float32Array | BigInt64Array | Uint8Array | Int32Array;
}

/** A dimension is a number, or a symbolic name for a dynamic one (e.g. 'N'). */
export type Dim = number | string;

export interface ValueInfo {
  name: string;
  dtype: OnnxDataType;
  shape: Dim[];
}

export const int = (value: number): AttrValue => ({ kind: 'int', value });
export const ints = (value: number[]): AttrValue => ({ kind: 'ints', value });
export const float = (value: number): AttrValue => ({ kind: 'float', value });

export class GraphBuilder {
  readonly nodes: GraphNode[] = [];
  readonly initializers = new Map<string, Initializer>();
  readonly inputs: ValueInfo[] = [];
  readonly outputs: ValueInfo[] = [];
  private counter = new Map<string, number>();
  private scopes: string[] = [];

  /** Prefixes node and value names with a scope (e.g. `layer1.0`) for readable graphs. */
  scoped<T>(scope: string, body: () => T): T {
    this.scopes.push(scope);
    try {
      return body();
    } finally {
      this.scopes.pop();
    }
  }

  /** A fresh value name under the current scope. */
  fresh(base: string): string {
    const full = [...this.scopes, base].join('.');
    const n = this.counter.get(full) ?? 0;
    this.counter.set(full, n + 1);
    return n === 0 ? full : `${full}_${n}`;
  }

  input(name: string, dtype: OnnxDataType, shape: Dim[]): string {
    this.inputs.push({ name, dtype, shape });
    return name;
  }

  output(name: string, dtype: OnnxDataType, shape: Dim[]): void {
    this.outputs.push({ name, dtype, shape });
  }

  /** A weight or constant. Names are PyTorch's where the value is a parameter. */
  initializer(init: Initializer): string {
    const existing = this.initializers.get(init.name);
    if (existing) throw new Error(`duplicate initializer ${init.name}`);
    this.initializers.set(init.name, init);
    return init.name;
  }

  floatConst(base: string, data: Float32Array | number[], dims: number[]): string {
    return this.initializer({ name: this.fresh(base), dtype: 'float32', dims, data: Float32Array.from(data) });
  }

  int64Const(base: string, values: number[]): string {
    return this.initializer({ name: this.fresh(base), dtype: 'int64', dims: [values.length], data: BigInt64Array.from(values.map(BigInt)) });
  }

  /** A scalar int64 constant (e.g. a Gather index that drops the axis). */
  int64Scalar(base: string, value: number): string {
    return this.initializer({ name: this.fresh(base), dtype: 'int64', dims: [], data: BigInt64Array.from([BigInt(value)]) });
  }

  /** An int64 shape vector: `lead` constants followed by the dims [from, to) of `x`'s runtime shape. */
  shapeWith(lead: number[], x: string, from: number, to: number): string {
    const dims = this.op('Slice', [this.op('Shape', [x]), this.int64Const('from', [from]), this.int64Const('to', [to])]);
    return this.op('Concat', [this.int64Const('lead', lead), dims], { axis: { kind: 'int', value: 0 } });
  }

  /**
   * Adds a node; returns its output names (one per `outputs` count, default 1). `domain` names an
   * operator set other than ONNX's own (e.g. onnxruntime's `com.microsoft.nchwc`).
   */
  node(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, nOutputs = 1, outputNames?: string[], domain?: string): string[] {
    const name = this.fresh(opType);
    const outputs = outputNames ?? Array.from({ length: nOutputs }, (_, i) => (nOutputs === 1 ? name : `${name}:${i}`));
    this.nodes.push(domain ? { opType, name, inputs, outputs, attrs, domain } : { opType, name, inputs, outputs, attrs });
    return outputs;
  }

  /** Shorthand for single-output nodes. */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, domain?: string): string {
    return this.node(opType, inputs, attrs, 1, undefined, domain)[0]!;
  }

  /** Renames the value produced by the last node that wrote `from` (to name a graph output). */
  rename(from: string, to: string): void {
    for (const n of this.nodes) {
      n.inputs = n.inputs.map((i) => (i === from ? to : i));
      n.outputs = n.outputs.map((o) => (o === from ? to : o));
    }
  }
}
