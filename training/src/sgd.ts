import * as tf from '@tensorflow/tfjs-core';

/**
 * torch.optim.SGD with momentum and L2 weight decay, step for step:
 *   d = g + wd·p;  buf = momentum·buf + d (buf = d on the first step);  p ← p − lr·buf.
 * Momentum buffers are named like the parameters so a checkpoint restores them exactly.
 */
export class Sgd {
  private readonly buffers = new Map<string, tf.Variable>();

  constructor(
    readonly lr: number,
    readonly momentum: number,
    readonly weightDecay: number,
  ) {}

  step(params: Map<string, tf.Variable>, grads: Record<string, tf.Tensor>): void {
    tf.tidy(() => {
      for (const [name, p] of params) {
        const g = grads[name];
        if (!g) continue;
        const d = this.weightDecay ? tf.add(g, tf.mul(p, this.weightDecay)) : g;
        let buf = this.buffers.get(name);
        if (!buf) {
          buf = tf.variable(d, false, `${p.name}/momentum`);
          this.buffers.set(name, buf);
        } else {
          buf.assign(tf.add(tf.mul(buf, this.momentum), d));
        }
        p.assign(tf.sub(p, tf.mul(buf, this.lr)));
      }
    });
  }

  /** Momentum buffers by parameter name (for checkpoints). */
  state(): Map<string, tf.Variable> {
    return this.buffers;
  }

  restore(values: Map<string, Float32Array>, shapes: Map<string, number[]>, prefix: string): void {
    for (const [name, data] of values) {
      const existing = this.buffers.get(name);
      const t = tf.tensor(data, shapes.get(name));
      if (existing) {
        existing.assign(t);
        t.dispose();
      } else {
        this.buffers.set(name, tf.variable(t, false, `${prefix}/${name}/momentum`));
        t.dispose();
      }
    }
  }

  dispose(): void {
    for (const b of this.buffers.values()) b.dispose();
    this.buffers.clear();
  }
}
