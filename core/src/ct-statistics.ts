import type { CtForegroundNormalisation } from './model-card.js';
import { Rng } from './random.js';

/** Foreground voxels of one case kept for the percentiles (a seeded random draw when there are more). */
export const CT_PERCENTILE_SAMPLES_PER_CASE = 100_000;

/**
 * nnU-Net's CT intensity statistics over a training set, fed one case at a time: the 0.5 and
 * 99.5 percentiles of the foreground (label > 0) intensities, and their mean and population std.
 * The mean and std are exact (float64 running sums over every foreground voxel); the percentiles
 * come from a seeded random sample of each case (as nnU-Net samples; an even stride would alias
 * with periodic structure), so memory does not grow with volume size and reruns agree.
 */
export class CtForegroundStatistics {
  private sum = 0;
  private sumSquares = 0;
  private count = 0;
  private readonly samples: number[] = [];
  private readonly rng = new Rng(1234);

  constructor(private readonly samplesPerCase = CT_PERCENTILE_SAMPLES_PER_CASE) {}

  /** Add one case: its intensities and a label on the same grid (any value > 0 is foreground). */
  add(image: ArrayLike<number>, label: ArrayLike<number>): void {
    if (image.length !== label.length) throw new Error(`CT statistics: image has ${image.length} voxels, label ${label.length}`);
    let foreground = 0;
    for (let p = 0; p < image.length; p++) {
      if (label[p] > 0) {
        const v = image[p];
        this.sum += v;
        this.sumSquares += v * v;
        foreground++;
      }
    }
    this.count += foreground;
    const keep = Math.min(1, this.samplesPerCase / Math.max(foreground, 1));
    for (let p = 0; p < image.length; p++) {
      if (label[p] > 0 && (keep === 1 || this.rng.next() < keep)) this.samples.push(image[p]);
    }
  }

  /** The normalisation rule with the numbers measured so far; throws when no foreground was seen. */
  result(): CtForegroundNormalisation {
    if (this.count === 0) throw new Error('CT statistics: the labelled training cases have no foreground voxel');
    const mean = this.sum / this.count;
    const std = Math.sqrt(Math.max(this.sumSquares / this.count - mean * mean, 0));
    const sorted = Float64Array.from(this.samples).sort();
    let low = percentile(sorted, 0.5);
    let high = percentile(sorted, 99.5);
    // A constant foreground would give an empty clip range; widen it so the rule stays valid.
    if (!(high > low)) {
      low -= 0.5;
      high += 0.5;
    }
    return { kind: 'ct-foreground', low, high, mean, std: std > 0 ? std : 1 };
  }
}

/** Percentile q (0–100) of sorted values, linear between order statistics (NumPy's default). */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) throw new Error('percentile of no values');
  const at = ((n - 1) * q) / 100;
  const lo = Math.floor(at);
  const hi = Math.min(lo + 1, n - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo);
}
