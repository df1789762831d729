/**
 * `tf.variableGrads` with the memory profile of PyTorch's autograd.
 *
 * tfjs-core's `Engine.gradients` (4.x) walks the tape backward but frees nothing until the end:
 * every node's output gradient stays alive, and so do the tensors each node saved for its
 * backward pass. Peak memory of a training step is therefore all saved activations plus all
 * gradients of all intermediate tensors. Here each output gradient is released as soon as its
 * producing node has been processed (no other node can read it afterwards: tensors have one
 * producer, and its consumers come later on the tape), and each node's saved tensors right after
 * its gradient has been computed. The arithmetic, and the order of every operation, is the same
 * as tfjs's, so the gradients are bitwise identical.
 *
 * Reads the engine's tape through fields that are not in tfjs's public types (pinned version).
 */
import * as tf from '@tensorflow/tfjs-core';
import { util } from '@tensorflow/tfjs-core';

interface TapeNode {
  id: number;
  kernelName: string;
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  gradient?: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>;
  saved?: tf.Tensor[];
}

interface EngineInternals {
  state: { activeTape: TapeNode[] | null; gradientDepth: number };
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  startTape(): void;
  endTape(): void;
  tidy<T extends tf.TensorContainer>(name: string, f: () => T): T;
}

/** The nodes on a path from some x to y, with inputs that do not depend on any x pruned (as tfjs does). */
function nodesFromXToY(tape: TapeNode[], xs: readonly tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const fromX = new Set<number>(xs.map((x) => x.id));
  const nodeFromX = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((t) => fromX.has(t.id))) {
      nodeFromX.add(node.id);
      for (const o of node.outputs) fromX.add(o.id);
    }
  }
  const toY = new Set<number>([y.id]);
  const nodeToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i];
    if (node.outputs.some((o) => toY.has(o.id))) {
      nodeToY.add(node.id);
      for (const t of Object.values(node.inputs)) toY.add(t.id);
    }
  }
  const out: TapeNode[] = [];
  for (const node of tape) {
    if (!nodeFromX.has(node.id) || !nodeToY.has(node.id)) continue;
    const inputs: Record<string, tf.Tensor> = {};
    for (const [name, t] of Object.entries(node.inputs)) if (fromX.has(t.id)) inputs[name] = t;
    out.push({ ...node, inputs });
  }
  return out;
}

/**
 * Accumulated gradients by tensor id. A gradient function may hand back the same tensor object
 * for several inputs, so objects are reference-counted and disposed when the last entry goes.
 */
class GradientMap {
  private readonly byId = new Map<number, tf.Tensor>();
  private readonly refs = new Map<tf.Tensor, number>();

  get(id: number): tf.Tensor | undefined {
    return this.byId.get(id);
  }

  set(id: number, t: tf.Tensor): void {
    this.release(id);
    this.byId.set(id, t);
    this.refs.set(t, (this.refs.get(t) ?? 0) + 1);
  }

  holds(t: tf.Tensor): boolean {
    return this.refs.has(t);
  }

  /** Drops the entry and disposes its tensor if nothing else refers to it. */
  release(id: number): void {
    const t = this.byId.get(id);
    if (t === undefined) return;
    this.byId.delete(id);
    const n = (this.refs.get(t) ?? 1) - 1;
    if (n > 0) {
      this.refs.set(t, n);
    } else {
      this.refs.delete(t);
      t.dispose();
    }
  }
}

/** Drop-in for `tf.variableGrads(f, vars)`: same value and gradients, lower peak memory. */
export function leanVariableGrads(f: () => tf.Scalar, vars: readonly tf.Variable[]): { value: tf.Scalar; grads: tf.NamedTensorMap } {
  const engine = tf.engine() as unknown as EngineInternals;
  // Inside another gradient computation the tape belongs to the outer one: keep tfjs's behaviour.
  if (engine.state.gradientDepth !== 0) return tf.variableGrads(f, [...vars]);
  const trainable = vars.filter((v) => v.trainable);
  if (trainable.length === 0) throw new Error('leanVariableGrads: none of the variables is trainable');

  const y = engine.scopedRun(() => engine.startTape(), () => engine.endTape(), () => engine.tidy('forward', f));
  if (!(y instanceof tf.Tensor) || y.rank !== 0) throw new Error('leanVariableGrads: f must return a scalar tensor');
  const tape = engine.state.activeTape ?? [];
  const path = nodesFromXToY(tape, trainable, y);
  if (path.length === 0) throw new Error('leanVariableGrads: the result does not depend on any of the variables');

  const grads = engine.tidy('backward', () => {
    const acc = new GradientMap();
    acc.set(y.id, tf.onesLike(y));
    const keep = new Set<number>(trainable.map((v) => v.id));
    for (let i = path.length - 1; i >= 0; i--) {
      const node = path[i];
      if (node.gradient === undefined) throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
      const inputGradients = node.gradient(node.outputs.map((o) => acc.get(o.id) ?? null));
      for (const [name, x] of Object.entries(node.inputs)) {
        if (!(name in inputGradients)) throw new Error(`Cannot backprop through input ${name} of ${node.kernelName}.`);
        const dx = tf.tidy(() => inputGradients[name]());
        if (dx.dtype !== 'float32') throw new Error(`Error in gradient for op ${node.kernelName}: the gradient of input '${name}' is ${dx.dtype}`);
        if (!util.arraysEqual(dx.shape, x.shape)) {
          throw new Error(`Error in gradient for op ${node.kernelName}: the gradient of input '${name}' has shape ${dx.shape}, the input ${x.shape}`);
        }
        const current = acc.get(x.id);
        if (current === undefined) {
          acc.set(x.id, dx);
        } else {
          acc.set(x.id, tf.add(current, dx));
          if (!acc.holds(dx)) dx.dispose();
        }
      }
      for (const o of node.outputs) if (!keep.has(o.id)) acc.release(o.id);
      for (const t of node.saved ?? []) t.dispose();
    }
    const named: tf.NamedTensorMap = {};
    for (const v of trainable) {
      const g = acc.get(v.id);
      if (g !== undefined) named[v.name] = g;
    }
    return named;
  });
  for (const node of tape) for (const t of node.saved ?? []) t.dispose();
  engine.state.activeTape = null;
  return { value: y as tf.Scalar, grads };
}
