import * as tf from '@tensorflow/tfjs-core';

/**
 * Backpropagation that releases memory as it goes.
 *
 * tfjs's engine keeps every gradient it computes, and every tensor a kernel saved for its
 * gradient, until the whole backward pass is over, so a training step peaks at all activations
 * plus all gradients (SEMICON at 224 px, batch 16: 15 GB, four times PyTorch). The same walk over
 * the tape can drop a tensor's gradient once the kernel that produced the tensor has passed it
 * on (all of its consumers come later on the tape, so they have already contributed), and a
 * kernel's saved tensors once its gradient has run. Results are unchanged: the same gradient
 * functions run in the same order on the same values. Higher-order gradients (a gradient taken
 * inside another's forward pass) keep tfjs's own walk.
 */

type Tensor = tf.Tensor;

interface TapeNode {
  id: number;
  kernelName: string;
  outputs: Tensor[];
  inputs: Record<string, Tensor>;
  gradient?: (dys: Array<Tensor | null>) => Record<string, () => Tensor>;
  saved?: Tensor[];
}

interface Gradients {
  value: Tensor;
  grads: Tensor[];
}

type GradientsFn = ((f: () => Tensor, xs: Tensor[], dy?: Tensor, allowNoGradients?: boolean) => Gradients) & { frugal?: boolean };

/** The parts of tfjs's Engine this walk uses (stable across tfjs 3 and 4). */
interface EngineInternals {
  state: { activeTape: TapeNode[] | null; gradientDepth: number };
  scopedRun<R>(start: () => void, end: () => void, f: () => R): R;
  startTape(): void;
  endTape(): void;
  tidy<R>(nameOrFn: string | (() => R), fn?: () => R): R;
  gradients: GradientsFn;
}

/** The nodes on a path from some x to y, each with only its inputs that depend on an x. */
function pathFromXsToY(tape: TapeNode[], xs: Tensor[], y: Tensor): TapeNode[] {
  const fromX = new Set(xs.map((x) => x.id));
  const nodeFromX = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((t) => fromX.has(t.id))) {
      for (const o of node.outputs) fromX.add(o.id);
      nodeFromX.add(node.id);
    }
  }
  const toY = new Set([y.id]);
  const nodeToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i]!;
    if (node.outputs.some((o) => toY.has(o.id))) {
      for (const t of Object.values(node.inputs)) toY.add(t.id);
      nodeToY.add(node.id);
    }
  }
  return tape
    .filter((n) => nodeFromX.has(n.id) && nodeToY.has(n.id))
    .map((n) => ({ ...n, inputs: Object.fromEntries(Object.entries(n.inputs).filter(([, t]) => fromX.has(t.id))) }));
}

function walk(engine: EngineInternals, tape: TapeNode[], xs: Tensor[], y: Tensor, dy: Tensor | undefined): Tensor[] {
  const grads = new Map<number, Tensor>();
  grads.set(y.id, dy ?? tf.ones(y.shape));
  const results = new Set(xs.map((x) => x.id));
  const held = (t: Tensor): boolean => {
    for (const g of grads.values()) if (g === t) return true;
    return false;
  };
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i]!;
    const dys = node.outputs.map((o) => grads.get(o.id) ?? null);
    if (!node.gradient) throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
    const fns = node.gradient(dys);
    const made: Tensor[] = [];
    for (const name of Object.keys(node.inputs)) {
      const fn = fns[name];
      if (!fn) throw new Error(`Cannot backprop through input ${name}. Available gradients found: ${Object.keys(fns)}.`);
      const dx = engine.tidy(() => fn());
      const x = node.inputs[name]!;
      if (dx.dtype !== 'float32') throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input ${name} must have 'float32' dtype, but has '${dx.dtype}'`);
      if (!tf.util.arraysEqual(dx.shape, x.shape)) throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input '${name}' has shape '${dx.shape}', which does not match the shape of the input '${x.shape}'`);
      made.push(dx);
      const previous = grads.get(x.id);
      if (!previous) {
        grads.set(x.id, dx);
        continue;
      }
      grads.set(x.id, tf.add(previous, dx));
      for (const t of [previous, dx]) if (t !== dy && !dys.includes(t) && !held(t)) t.dispose();
    }
    // This node's outputs have passed their gradients on: nothing later on the walk reads them.
    for (const o of node.outputs) {
      const g = grads.get(o.id);
      if (!g || results.has(o.id)) continue;
      grads.delete(o.id);
      if (g !== dy && !made.includes(g) && !held(g)) g.dispose();
    }
    for (const t of node.saved ?? []) t.dispose();
  }
  return xs.map((x) => grads.get(x.id)!);
}

/** Installs the releasing walk as tfjs's `gradients` (idempotent; used by grads, variableGrads, customGrad's callers). */
export function installFrugalGradients(): void {
  const engine = tf.engine() as unknown as EngineInternals;
  if (engine.gradients.frugal) return;
  const original = engine.gradients.bind(engine) as GradientsFn;
  const frugal: GradientsFn = (f, xs, dy, allowNoGradients = false) => {
    if (engine.state.gradientDepth > 0) return original(f, xs, dy, allowNoGradients);
    if (xs.length === 0) throw new Error('gradients() received an empty list of xs.');
    if (dy != null && dy.dtype !== 'float32') throw new Error(`dy must have 'float32' dtype, but has '${dy.dtype}'`);
    const y = engine.scopedRun(
      () => engine.startTape(),
      () => engine.endTape(),
      () => engine.tidy('forward', f),
    );
    if (!(y instanceof tf.Tensor)) throw new Error('The result y returned by f() must be a tensor.');
    const fullTape = engine.state.activeTape ?? [];
    const tape = pathFromXsToY(fullTape, xs, y);
    if (!allowNoGradients && tape.length === 0) {
      throw new Error('Cannot compute gradient of y=f(x) with respect to x. Make sure that the f you passed encloses all operations that lead from x to y.');
    }
    return engine.tidy('backward', () => {
      const grads = walk(engine, tape, xs, y, dy ?? undefined);
      // As tfjs does: every saved tensor of the tape, on the path or not, is released now.
      for (const node of fullTape) for (const t of node.saved ?? []) t.dispose();
      engine.state.activeTape = null;
      return { value: y, grads };
    });
  };
  frugal.frugal = true;
  engine.gradients = frugal;
}
