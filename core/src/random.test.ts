import { describe, expect, it } from 'vitest';
import { Rng } from './random.js';

describe('Rng', () => {
  it('is reproducible from its seed and differs between seeds', () => {
    const a = new Rng(1337);
    const b = new Rng(1337);
    const c = new Rng(1338);
    const xa = Array.from({ length: 100 }, () => a.next());
    expect(Array.from({ length: 100 }, () => b.next())).toEqual(xa);
    expect(Array.from({ length: 100 }, () => c.next())).not.toEqual(xa);
  });

  it('resumes the same sequence from a saved state', () => {
    const a = new Rng(7);
    for (let n = 0; n < 57; n++) a.next();
    const resumed = new Rng(a.state());
    expect(Array.from({ length: 20 }, () => resumed.nextUint32())).toEqual(Array.from({ length: 20 }, () => a.nextUint32()));
  });

  it('draws integers over the whole inclusive range with roughly equal frequency', () => {
    const r = new Rng(3);
    const counts = new Map<number, number>();
    for (let n = 0; n < 41_000; n++) {
      const v = r.int(-20, 20);
      counts.set(v, (counts.get(v) ?? 0) + 1);
    }
    expect([...counts.keys()].sort((x, y) => x - y)).toEqual(Array.from({ length: 41 }, (_, n) => n - 20));
    for (const c of counts.values()) expect(Math.abs(c - 1000)).toBeLessThan(150);
  });

  it('gives uniforms in [0,1) with mean 1/2 and normals with unit variance', () => {
    const r = new Rng(11);
    const u = Array.from({ length: 20_000 }, () => r.next());
    expect(Math.min(...u)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...u)).toBeLessThan(1);
    expect(u.reduce((s, x) => s + x, 0) / u.length).toBeCloseTo(0.5, 1);
    const z = Array.from({ length: 20_000 }, () => r.normal());
    const mean = z.reduce((s, x) => s + x, 0) / z.length;
    const variance = z.reduce((s, x) => s + (x - mean) ** 2, 0) / z.length;
    expect(Math.abs(mean)).toBeLessThan(0.05);
    expect(Math.abs(variance - 1)).toBeLessThan(0.05);
  });
});
