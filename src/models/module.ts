import { tf } from '../backend/tf.js';
import type { Tensor, Variable } from '../backend/tf.js';
import type { GraphBuilder } from '../../exporters/graph.js';
import type { Rng } from '../util/rng.js';

/**
 * A layer is defined once: it runs in tfjs (NHWC, for training and eval) and emits itself into
 * an ONNX graph (NCHW, for export). Parameters carry PyTorch names and shapes, so that state
 * dicts convert by a layout change only.
 */

/** How a parameter's tfjs layout relates to PyTorch's. */
export type ParamLayout =
  /** Same array in both (biases, BN vectors, Linear weights kept as [out, in]). */
  | 'same'
  /** Conv weight: PyTorch OIHW, tfjs HWIO. */
  | 'conv';

export interface Param {
  /** Full PyTorch name, e.g. `layer1.0.conv1.weight`; set by `Module.assignNames`. */
  name: string;
  /** PyTorch shape. */
  torchShape: number[];
  layout: ParamLayout;
  /** Learned by gradient descent (false for BN running statistics). */
  trainable: boolean;
  /** PyTorch's dtype of the tensor (BN's num_batches_tracked is int64; kept as float32 here). */
  torchDtype: 'float32' | 'int64';
  variable: Variable;
}

/** Eval vs train behaviour, and the run's generator for dropout masks. */
export interface ForwardContext {
  training: boolean;
  rng?: Rng;
  /** Disables dropout even in training (parity tests compare against PyTorch with dropout off). */
  noDropout?: boolean;
}

export const EVAL: ForwardContext = { training: false };

export abstract class Module {
  /** Dotted PyTorch path of this module, '' for the root. */
  path = '';
  private readonly ownParams = new Map<string, Param>();
  private readonly kids = new Map<string, Module>();

  protected child<M extends Module>(name: string, m: M): M {
    this.kids.set(name, m);
    return m;
  }

  protected param(
    local: string,
    torchShape: number[],
    layout: ParamLayout,
    init: Float32Array,
    trainable = true,
    torchDtype: Param['torchDtype'] = 'float32',
  ): Param {
    const shape = layout === 'conv' ? oihwToHwioShape(torchShape) : torchShape;
    const data = layout === 'conv' ? oihwToHwio(init, torchShape) : init;
    // The variable shares the initial tensor's data; dispose the wrapper so it is not counted twice.
    const initial = tf.tensor(data, shape, 'float32');
    const variable = tf.variable(initial, trainable);
    initial.dispose();
    const p: Param = { name: local, torchShape, layout, trainable, torchDtype, variable };
    this.ownParams.set(local, p);
    return p;
  }

  /** Sets `path` on every module and full names on every parameter; call once on the root. */
  assignNames(path = ''): this {
    this.path = path;
    for (const [local, p] of this.ownParams) p.name = join(path, local);
    for (const [name, m] of this.kids) m.assignNames(join(path, name));
    return this;
  }

  children(): Array<[string, Module]> {
    return [...this.kids];
  }

  /** Every parameter below this module, in registration order (PyTorch's state_dict order). */
  parameters(): Param[] {
    const out: Param[] = [...this.ownParams.values()];
    for (const m of this.kids.values()) out.push(...m.parameters());
    return out;
  }

  trainableVariables(): Variable[] {
    return this.parameters()
      .filter((p) => p.trainable)
      .map((p) => p.variable);
  }

  dispose(): void {
    for (const p of this.parameters()) p.variable.dispose();
  }
}

/** A module with one input and one output, the common case. */
export abstract class Layer extends Module {
  abstract forward(x: Tensor, ctx: ForwardContext): Tensor;
  /** Emits ONNX nodes for this layer given the NCHW input value name; returns the output name. */
  abstract emit(g: GraphBuilder, x: string): string;
}

export class Sequential extends Layer {
  readonly layers: Layer[];
  constructor(layers: Layer[]) {
    super();
    this.layers = layers;
    layers.forEach((l, i) => this.child(String(i), l));
  }
  forward(x: Tensor, ctx: ForwardContext): Tensor {
    return this.layers.reduce((h, l) => l.forward(h, ctx), x);
  }
  emit(g: GraphBuilder, x: string): string {
    return this.layers.reduce((h, l, i) => g.scoped(String(i), () => l.emit(g, h)), x);
  }
}

function join(a: string, b: string): string {
  return a ? `${a}.${b}` : b;
}

export function oihwToHwioShape([o, i, h, w]: number[]): number[] {
  return [h!, w!, i!, o!];
}

/** PyTorch conv weight [O,I,H,W] to tfjs [H,W,I,O]. */
export function oihwToHwio(src: Float32Array, [o, i, h, w]: number[]): Float32Array {
  const O = o!, I = i!, H = h!, W = w!;
  const dst = new Float32Array(src.length);
  for (let a = 0; a < O; a++)
    for (let b = 0; b < I; b++)
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) dst[((y * W + x) * I + b) * O + a] = src[((a * I + b) * H + y) * W + x]!;
  return dst;
}

/** tfjs conv weight [H,W,I,O] back to PyTorch [O,I,H,W]. */
export function hwioToOihw(src: Float32Array, [o, i, h, w]: number[]): Float32Array {
  const O = o!, I = i!, H = h!, W = w!;
  const dst = new Float32Array(src.length);
  for (let a = 0; a < O; a++)
    for (let b = 0; b < I; b++)
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) dst[((a * I + b) * H + y) * W + x] = src[((y * W + x) * I + b) * O + a]!;
  return dst;
}

/** A parameter's value in PyTorch layout. */
export function torchValue(p: Param): Float32Array {
  const data = p.variable.dataSync() as Float32Array;
  return p.layout === 'conv' ? hwioToOihw(data, p.torchShape) : Float32Array.from(data);
}
