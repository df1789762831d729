import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InputError, Rng, Volume, readDicomSeriesFromBytes } from '../core/src/index.js';
import { daikonData, daikonSeries } from './fixtures.js';

// Deterministic mutations of real files: every case must end in a Volume or an InputError, never
// another exception, a hang, or a huge allocation.

/** Uniform [0, 1) draws from the project's seeded generator. */
function mulberry32(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

const SOURCES = [
  join(daikonData, 'implicit_little.dcm'),
  join(daikonData, 'explicit_big.dcm'),
  join(daikonData, 'deflated.dcm'),
  join(daikonData, 'rle.dcm'),
  join(daikonData, 'jpeg_lossless_sel1.dcm'),
  join(daikonData, 'jpeg_2000.dcm'),
  join(daikonData, 'explicit_little.dcm'),
  join(daikonSeries, 'brain_002.dcm'),
];

/** Offsets of a tag's 4 tag bytes in either byte order (little-endian and big-endian datasets). */
function tagOffsets(bytes: Uint8Array, group: number, element: number): number[] {
  const le = [group & 0xff, group >> 8, element & 0xff, element >> 8];
  const be = [group >> 8, group & 0xff, element >> 8, element & 0xff];
  const out: number[] = [];
  for (let p = 132; p + 12 < bytes.length; p++) {
    for (const pat of [le, be]) {
      if (bytes[p] === pat[0] && bytes[p + 1] === pat[1] && bytes[p + 2] === pat[2] && bytes[p + 3] === pat[3]) out.push(p);
    }
  }
  return out;
}

interface Case {
  name: string;
  bytes: Uint8Array;
}

function* mutations(path: string, rand: () => number): Generator<Case> {
  const orig = new Uint8Array(readFileSync(path));
  const base = path.split('/').pop()!;
  const header = Math.min(orig.length, 4096);
  for (let n = 0; n < 12; n++) {
    const b = orig.slice();
    const flips = 1 + Math.floor(rand() * 8);
    // Most flips land in the header where they change meaning; some anywhere.
    for (let f = 0; f < flips; f++) b[Math.floor(rand() * (n % 3 === 0 ? b.length : header))] ^= 1 << Math.floor(rand() * 8);
    yield { name: `${base} flip#${n}`, bytes: b };
  }
  for (let n = 0; n < 14; n++) {
    const len = n < 7 ? Math.floor(rand() * header) : Math.floor(rand() * orig.length);
    yield { name: `${base} truncated@${len}`, bytes: orig.slice(0, len) };
  }
  for (const [g, e] of [[0x0028, 0x0010], [0x0028, 0x0011], [0x0028, 0x0008], [0x0028, 0x0100]]) {
    for (const at of tagOffsets(orig, g, e).slice(0, 1)) {
      const b = orig.slice();
      b[at + 8] = 0xff;
      b[at + 9] = 0xff;
      yield { name: `${base} (${g.toString(16)},${e.toString(16)})=0xffff`, bytes: b };
    }
  }
  for (const [g, e] of [[0x7fe0, 0x0010], [0x0020, 0x0032], [0x0028, 0x0030], [0x5200, 0x9230], [0x0002, 0x0010]]) {
    for (const at of tagOffsets(orig, g, e).slice(0, 1)) {
      for (const len of [0xfffffff0, 0x7fffffff, Math.floor(rand() * 0xffffffff), 3]) {
        const b = orig.slice();
        new DataView(b.buffer).setUint32(at + 4, len, true);
        yield { name: `${base} (${g.toString(16)},${e.toString(16)}) length ${len}`, bytes: b };
        const c = orig.slice();
        new DataView(c.buffer).setUint16(at + 6, len & 0xffff, true);
        yield { name: `${base} (${g.toString(16)},${e.toString(16)}) short length ${len & 0xffff}`, bytes: c };
      }
    }
  }
}

describe('DICOM reader under mutated input', () => {
  it('every mutated file yields a Volume or an InputError, with bounded memory', async () => {
    const rand = mulberry32(20240917);
    const startBuffers = process.memoryUsage().arrayBuffers;
    let peak = startBuffers;
    let maxCase = 0;
    const outcome = { volume: 0, inputError: 0 };
    for (const src of SOURCES) {
      for (const c of mutations(src, rand)) {
        const before = process.memoryUsage().arrayBuffers;
        try {
          const v = await readDicomSeriesFromBytes([{ name: c.name, bytes: c.bytes }]);
          expect(v, c.name).toBeInstanceOf(Volume);
          expect(v.data.length, c.name).toBe(v.dims[0] * v.dims[1] * v.dims[2]);
          outcome.volume++;
        } catch (e) {
          if (!(e instanceof InputError)) throw new Error(`${c.name}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
          expect(e.message.length, c.name).toBeGreaterThan(0);
          outcome.inputError++;
        }
        const after = process.memoryUsage().arrayBuffers;
        // A single case may hold its input copy and decoded volume; more would mean a runaway allocation.
        expect(after - before, c.name).toBeLessThan(256 * 1024 * 1024);
        peak = Math.max(peak, after);
        maxCase = Math.max(maxCase, after - before);
      }
    }
    console.log(`fuzz-dicom: ${outcome.volume} volumes, ${outcome.inputError} InputErrors, arrayBuffers peak +${((peak - startBuffers) / 2 ** 20).toFixed(0)} MB, largest single case +${(maxCase / 2 ** 20).toFixed(0)} MB`);
    expect(peak - startBuffers).toBeLessThan(512 * 1024 * 1024);
    // Both outcomes must occur, or the mutations are not reaching the reader.
    expect(outcome.volume).toBeGreaterThan(20);
    expect(outcome.inputError).toBeGreaterThan(50);
  });
});
