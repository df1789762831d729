import { describe, expect, it } from 'vitest';
import { BatchSampler } from './batch-sampler.js';

describe('BatchSampler', () => {
  it('visits every labelled slice once per epoch and drops the incomplete tail', () => {
    const s = new BatchSampler(10, 7, 3, 2, 1337);
    const epoch = [s.next(), s.next(), s.next()].flatMap((b) => b.labeled);
    expect(new Set(epoch).size).toBe(9);
    expect(epoch.every((i) => i >= 0 && i < 10)).toBe(true);
    // The 10th slice would make an incomplete batch: the next batch starts a new permutation.
    const next = s.next().labeled;
    expect(next).toHaveLength(3);
  });

  it('reads the unlabeled stream continuously, reshuffling when it runs out', () => {
    const s = new BatchSampler(4, 5, 1, 2, 3);
    const drawn = Array.from({ length: 5 }, () => s.next().unlabeled).flat();
    // First 5 draws are one permutation of 0..4, the next 5 another.
    expect(new Set(drawn.slice(0, 5)).size).toBe(5);
    expect(new Set(drawn.slice(5, 10)).size).toBe(5);
  });

  it('resumes from its state with exactly the batches the uninterrupted run draws', () => {
    const a = new BatchSampler(20, 33, 4, 4, 42);
    for (let n = 0; n < 11; n++) a.next();
    const b = new BatchSampler(20, 33, 4, 4, JSON.parse(JSON.stringify(a.state())));
    for (let n = 0; n < 30; n++) expect(b.next()).toEqual(a.next());
  });

  it('refuses a batch larger than the labelled pool', () => {
    expect(() => new BatchSampler(3, 10, 4, 4, 1)).toThrow(/larger than the 3 labelled slices/);
  });
});
