import { Rng, type RngState } from '@alhvr/core';

export interface BatchSamplerState {
  rng: RngState;
  labeledOrder: number[];
  labeledPos: number;
  unlabeledOrder: number[];
  unlabeledPos: number;
}

/**
 * Two index streams as SSL4MIS's TwoStreamBatchSampler draws them: the labelled pool is shuffled
 * once per epoch and cut into batches of `labeledPerBatch` (an incomplete tail is dropped), the
 * unlabeled pool is reshuffled whenever it runs out and read continuously. State is plain data,
 * so a resumed run draws exactly the batches the uninterrupted run would have.
 */
export class BatchSampler {
  private rng: Rng;
  private labeledOrder: number[];
  private labeledPos: number;
  private unlabeledOrder: number[];
  private unlabeledPos: number;

  constructor(
    readonly labeledCount: number,
    readonly unlabeledCount: number,
    readonly labeledPerBatch: number,
    readonly unlabeledPerBatch: number,
    seedOrState: number | BatchSamplerState,
  ) {
    if (labeledPerBatch > labeledCount) throw new Error(`a batch of ${labeledPerBatch} labelled slices is larger than the ${labeledCount} labelled slices available`);
    if (unlabeledPerBatch > 0 && unlabeledCount === 0) throw new Error('the unlabeled pool is empty');
    if (typeof seedOrState === 'number') {
      this.rng = new Rng(seedOrState);
      this.labeledOrder = this.permutation(labeledCount);
      this.labeledPos = 0;
      this.unlabeledOrder = this.permutation(unlabeledCount);
      this.unlabeledPos = 0;
    } else {
      this.rng = new Rng(seedOrState.rng);
      this.labeledOrder = seedOrState.labeledOrder.slice();
      this.labeledPos = seedOrState.labeledPos;
      this.unlabeledOrder = seedOrState.unlabeledOrder.slice();
      this.unlabeledPos = seedOrState.unlabeledPos;
    }
  }

  private permutation(n: number): number[] {
    return this.rng.shuffle(Array.from({ length: n }, (_, i) => i));
  }

  /** Indices into the labelled and unlabeled pools for the next batch. */
  next(): { labeled: number[]; unlabeled: number[] } {
    if (this.labeledPos + this.labeledPerBatch > this.labeledOrder.length) {
      this.labeledOrder = this.permutation(this.labeledCount);
      this.labeledPos = 0;
    }
    const labeled = this.labeledOrder.slice(this.labeledPos, this.labeledPos + this.labeledPerBatch);
    this.labeledPos += this.labeledPerBatch;
    const unlabeled: number[] = [];
    while (unlabeled.length < this.unlabeledPerBatch) {
      if (this.unlabeledPos >= this.unlabeledOrder.length) {
        this.unlabeledOrder = this.permutation(this.unlabeledCount);
        this.unlabeledPos = 0;
      }
      unlabeled.push(this.unlabeledOrder[this.unlabeledPos++]);
    }
    return { labeled, unlabeled };
  }

  state(): BatchSamplerState {
    return {
      rng: this.rng.state(),
      labeledOrder: this.labeledOrder.slice(),
      labeledPos: this.labeledPos,
      unlabeledOrder: this.unlabeledOrder.slice(),
      unlabeledPos: this.unlabeledPos,
    };
  }
}
