/**
 * The students of a run: two networks (2D U-Nets or 3D VNets, by the config's `network`) with their SGD optimisers and dropout/perturbation streams
 * (ALHVR), or student a alone (the supervised baseline). What a training step differentiates and
 * updates, and what a checkpoint stores and restores.
 */
import * as tf from '@tensorflow/tfjs-core';
import { InputError, Rng, type RngState } from '@alhvr/core';
import { leanVariableGrads } from './backend/lean-gradients.js';
import type { CheckpointFile } from './checkpoint.js';
import { UNet, type UNetConfig, type UNetOutput } from './model/unet.js';
import { VNet3d, type VNet3dOutput } from './model/vnet3d.js';
import type { NetworkKind } from './config.js';

/** Either network: both have a ParameterStore, a training/eval forward and the same outputs. */
export type StudentNet = UNet | VNet3d;
export type StudentOutput = UNetOutput | VNet3dOutput;
import { Sgd } from './sgd.js';

export type StudentKey = 'a' | 'b';

interface Student {
  key: StudentKey;
  net: StudentNet;
  sgd: Sgd;
  /** Dropout and feature-perturbation draws of this student's training forwards. */
  rng: Rng;
}

/** Each student's gradients by parameter name (as its ParameterStore names them). */
export type StudentGradients = Partial<Record<StudentKey, Record<string, tf.Tensor>>>;

/** What a step's objective hands back: the scalar to differentiate and the figures to log. */
export interface StepObjective {
  loss: tf.Scalar;
  terms: Record<string, tf.Scalar>;
}

export interface StudentsOptions {
  count: 1 | 2;
  /** Which network (default unet2d); `net.dropout` is the U-Net's, `net.vnetDropout` the VNet's Dropout3d (default released 0.5). */
  network?: NetworkKind;
  net: Pick<UNetConfig, 'numClasses' | 'widths' | 'dropout'> & { vnetDropout?: number };
  optimiser: { lr: number; momentum: number; weightDecay: number };
  /** Initialisation streams of a and b. */
  init: [Rng, Rng];
  /** Training-forward streams of a and b (b's is kept, unused, by a one-student run). */
  forward: [Rng, Rng];
}

export class Students {
  private readonly students: Student[];
  /** b's stream when there is no b: kept so a checkpoint's random state is the same shape. */
  private spareRng: Rng | undefined;

  constructor(opts: StudentsOptions) {
    const make = (i: 0 | 1, key: StudentKey): Student => ({
      key,
      net: opts.network === 'vnet3d' ? new VNet3d({ numClasses: opts.net.numClasses, widths: opts.net.widths, dropout: opts.net.vnetDropout }, opts.init[i], `student_${key}`) : new UNet(opts.net, opts.init[i], `student_${key}`),
      sgd: new Sgd(opts.optimiser.lr, opts.optimiser.momentum, opts.optimiser.weightDecay),
      rng: opts.forward[i],
    });
    this.students = opts.count === 2 ? [make(0, 'a'), make(1, 'b')] : [make(0, 'a')];
    this.spareRng = opts.count === 2 ? undefined : opts.forward[1];
  }

  get a(): StudentNet {
    return this.students[0].net;
  }

  get b(): StudentNet | undefined {
    return this.students[1]?.net;
  }

  /** Each student with its key, a first. */
  nets(): { key: StudentKey; net: StudentNet }[] {
    return this.students.map(({ key, net }) => ({ key, net }));
  }

  /** Training forward of every student on one batch (the auxiliary, perturbed branch when `auxiliary`). */
  forward(x: tf.Tensor, auxiliary: boolean): StudentOutput[] {
    return this.students.map((s) =>
      s.net instanceof VNet3d
        ? s.net.forward(x as tf.Tensor5D, { training: true, rng: s.rng, auxiliary })
        : s.net.forward(x as tf.Tensor4D, { training: true, rng: s.rng, auxiliary }),
    );
  }

  /**
   * The objective's value and every student's gradients, in one backward pass over all
   * trainable parameters. The logged terms are kept past the pass; the caller disposes them.
   */
  gradients<T extends StepObjective>(objective: () => T): T & { grads: StudentGradients } {
    let result: T | undefined;
    let terms: Record<string, tf.Scalar> = {};
    const trainable = this.students.flatMap((s) => s.net.params.trainableVariables());
    const { value, grads } = leanVariableGrads(() => {
      result = objective();
      terms = Object.fromEntries(Object.entries(result.terms).map(([k, t]) => [k, tf.keep(t)]));
      return result.loss;
    }, trainable);
    // leanVariableGrads names gradients by tfjs variable; each student wants its own parameter names.
    const byStudent: StudentGradients = {};
    for (const s of this.students) {
      const own: Record<string, tf.Tensor> = {};
      for (const [name, v] of s.net.params.variables) if (grads[v.name]) own[name] = grads[v.name];
      byStudent[s.key] = own;
    }
    return { ...result!, loss: value, terms, grads: byStudent };
  }

  /** One SGD step of each student; the gradients are disposed. */
  step(grads: StudentGradients): void {
    for (const s of this.students) s.sgd.step(s.net.params.variables, grads[s.key] ?? {});
    tf.dispose(Object.values(grads).flatMap((g) => Object.values(g ?? {})));
  }

  /** The training-forward streams, as TrainState.rng stores them. */
  rngState(): { netA: RngState; netB: RngState } {
    return { netA: this.students[0].rng.state(), netB: (this.students[1]?.rng ?? this.spareRng!).state() };
  }

  /** Parameters and momentum buffers by checkpoint group ("a.params", "a.momentum", …). */
  state(): Record<string, Map<string, tf.Tensor>> {
    return Object.fromEntries(
      this.students.flatMap((s) => [
        [`${s.key}.params`, new Map<string, tf.Tensor>(s.net.params.variables)],
        [`${s.key}.momentum`, new Map<string, tf.Tensor>(s.sgd.state())],
      ]),
    );
  }

  /**
   * Replace the parameters (not the momentum) of each student named in `params`, refusing in one
   * line a source whose parameter names or shapes differ (another width, class count or network).
   */
  assignParameters(params: Partial<Record<StudentKey, CheckpointFile<unknown>['groups'][string]>>, source: string): void {
    for (const s of this.students) {
      const group = params[s.key];
      if (!group) continue;
      const mine = s.net.params.variables;
      const differs = [...mine].find(([n, v]) => !group.has(n) || group.get(n)!.shape.join() !== v.shape.join()) ?? [...group.keys()].find((n) => !mine.has(n));
      if (differs) {
        const name = Array.isArray(differs) ? differs[0] : differs;
        throw new InputError(`student ${s.key}'s parameter ${name} differs in name or shape (another network width or class count?)`, source);
      }
      const values = Object.fromEntries([...group].map(([n, t]) => [n, tf.tensor(t.data, t.shape)]));
      s.net.params.assign(values);
      tf.dispose(Object.values(values));
    }
  }

  /** Restore what `state` and `rngState` saved. */
  restore(groups: CheckpointFile<unknown>['groups'], rng: { netA: RngState; netB: RngState }): void {
    for (const s of this.students) {
      const params = groups[`${s.key}.params`];
      const momentum = groups[`${s.key}.momentum`];
      if (!params) throw new InputError(`checkpoint has no parameters for student ${s.key}`);
      const values = Object.fromEntries([...params].map(([n, t]) => [n, tf.tensor(t.data, t.shape)]));
      s.net.params.assign(values);
      tf.dispose(Object.values(values));
      if (momentum) s.sgd.restore(new Map([...momentum].map(([n, t]) => [n, t.data])), new Map([...momentum].map(([n, t]) => [n, t.shape])), s.key);
    }
    this.students[0].rng = new Rng(rng.netA);
    if (this.students[1]) this.students[1].rng = new Rng(rng.netB);
    else this.spareRng = new Rng(rng.netB);
  }

  dispose(): void {
    for (const s of this.students) {
      s.net.dispose();
      s.sgd.dispose();
    }
  }
}
