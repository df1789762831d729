/**
 * Seeded pseudo-random numbers with a state that can be saved and restored, so a training run
 * or a phantom is reproducible from its seed and a resumed run continues the same sequence.
 * Generator: sfc32 (small fast chaotic, 128-bit state), seeded through splitmix32.
 */
export type RngState = [number, number, number, number];

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number | RngState) {
    if (Array.isArray(seed)) {
      [this.a, this.b, this.c, this.d] = seed.map((x) => x >>> 0);
    } else {
      const mix = splitmix32(seed);
      this.a = mix();
      this.b = mix();
      this.c = mix();
      this.d = mix();
      for (let n = 0; n < 12; n++) this.nextUint32();
    }
  }

  /** An independent stream derived from this one and a label (e.g. one per student or worker). */
  fork(label: number): Rng {
    return new Rng((this.nextUint32() ^ Math.imul(label + 1, 0x9e3779b1)) >>> 0);
  }

  state(): RngState {
    return [this.a, this.b, this.c, this.d];
  }

  nextUint32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** Integer uniform in [lo, hi] inclusive. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  /** Standard normal (Box–Muller). */
  normal(): number {
    let u = this.next();
    while (u === 0) u = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }

  /** Fisher–Yates shuffle in place. */
  shuffle<T>(items: T[]): T[] {
    for (let n = items.length - 1; n > 0; n--) {
      const m = Math.floor(this.next() * (n + 1));
      [items[n], items[m]] = [items[m], items[n]];
    }
    return items;
  }
}
