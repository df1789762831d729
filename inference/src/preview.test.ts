import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { Volume, canonicalOrientation, scalingAffine, type ModelCard } from '@alhvr/core';
import { missedReason, missedSlice, renderPreview, type PreviewAnnotation } from './preview.js';

const RV: [number, number, number] = [230, 25, 75];
const card = { classes: [{ value: 0, name: 'background', color: [0, 0, 0] }, { value: 1, name: 'RV', color: RV }] } as unknown as ModelCard;

describe('renderPreview', () => {
  it('blends the class colour and the region colour over the windowed image of the foreground slice', () => {
    // Three 4×4 slices at intensities 0, 50, 100: the window is [0, 100], so slice 1 is grey 128.
    const dims: [number, number, number] = [4, 4, 3];
    const image = new Volume({ data: Float32Array.from({ length: 48 }, (_, n) => 50 * Math.floor(n / 16)), dims, affine: scalingAffine([1, 1, 3]) });
    const inSlice1 = (n: number) => (Math.floor(n / 16) === 1 ? 1 : 0);
    const label = image.withData(Uint8Array.from({ length: 48 }, (_, n) => inSlice1(n)));
    // Region 2 (one student confident) on slice 1, region 1 elsewhere.
    const region = image.withData(Uint8Array.from({ length: 48 }, (_, n) => 1 + inSlice1(n)));
    const orientation = canonicalOrientation(image.affine, 'largest-spacing');
    const png = PNG.sync.read(Buffer.from(renderPreview(image, label, region, card, orientation, { tileSize: 40 })));
    // One foreground slice: one tile of 40×40 per panel, 2-pixel gaps.
    expect([png.width, png.height]).toEqual([2 * (40 + 2) + 2, 40 + 2 * 2]);
    const pixel = (x: number, y: number) => Array.from(png.data.subarray((y * png.width + x) * 4, (y * png.width + x) * 4 + 4));
    const blend = (c: [number, number, number]) => [...c.map((v) => Math.round(0.55 * 128 + 0.45 * v)), 255];
    for (const [x, y] of [[2, 2], [41, 41], [20, 30]]) {
      expect(pixel(x, y)).toEqual(blend(RV));
      expect(pixel(x + 42, y)).toEqual(blend([255, 170, 0]));
    }
    expect(pixel(0, 0)).toEqual([0, 0, 0, 255]);
  });

  it('shows the plain windowed image where there is no label, and a single panel without regions', () => {
    const dims: [number, number, number] = [4, 4, 3];
    const image = new Volume({ data: Float32Array.from({ length: 48 }, (_, n) => 50 * Math.floor(n / 16)), dims, affine: scalingAffine([1, 1, 3]) });
    const label = image.withData(new Uint8Array(48));
    const orientation = canonicalOrientation(image.affine, 'largest-spacing');
    const png = PNG.sync.read(Buffer.from(renderPreview(image, label, undefined, card, orientation, { tileSize: 40 })));
    // No foreground: all three slices, four tiles per row at most.
    expect([png.width, png.height]).toEqual([3 * (40 + 2) + 2, 40 + 2 * 2]);
    const grey = (x: number) => Array.from(png.data.subarray((10 * png.width + x) * 4, (10 * png.width + x) * 4 + 4));
    expect(grey(10)).toEqual([0, 0, 0, 255]);
    expect(grey(10 + 42)).toEqual([128, 128, 128, 255]);
    expect(grey(10 + 84)).toEqual([255, 255, 255, 255]);
  });
});

describe('renderPreview on non-finite voxels', () => {
  it('draws a NaN voxel black, plain or under a colour, and an infinite one at the top of the window', () => {
    const dims: [number, number, number] = [4, 4, 3];
    const data = Float32Array.from({ length: 48 }, (_, n) => 50 * Math.floor(n / 16));
    // slice 1: NaN at (0, 0) without label and at (3, 3) under RV; +Infinity at (1, 0)
    data[16] = NaN;
    data[16 + 15] = NaN;
    data[16 + 1] = Infinity;
    const image = new Volume({ data, dims, affine: scalingAffine([1, 1, 3]) });
    const label = image.withData(Uint8Array.from({ length: 48 }, (_, n) => (n === 16 + 15 ? 1 : 0)));
    const orientation = canonicalOrientation(image.affine, 'largest-spacing');
    const png = PNG.sync.read(Buffer.from(renderPreview(image, label, undefined, card, orientation, { tileSize: 4 })));
    // Single foreground slice (1), one 4×4 tile at (2, 2); both in-plane axes flipped for display.
    const pixel = (i: number, j: number) => {
      const o = ((2 + 3 - j) * png.width + 2 + 3 - i) * 4;
      return Array.from(png.data.subarray(o, o + 4));
    };
    expect(pixel(0, 0)).toEqual([0, 0, 0, 255]);
    expect(pixel(3, 3)).toEqual([0, 0, 0, 255]);
    expect(pixel(1, 0)).toEqual([255, 255, 255, 255]);
    expect(pixel(2, 0)).toEqual([128, 128, 128, 255]);
  });
});

describe('missed-slice rule', () => {
  // A 4×4×10 label whose per-slice foreground is given: slice s holds counts[s] voxels of class 1.
  const labelWith = (counts: number[]) => {
    const dims: [number, number, number] = [4, 4, counts.length];
    const data = new Uint8Array(16 * counts.length);
    counts.forEach((n, s) => data.fill(1, s * 16, s * 16 + n));
    return new Volume({ data, dims, affine: scalingAffine([1, 1, 3]) });
  };
  const orientationOf = (v: Volume<Uint8Array>) => canonicalOrientation(v.affine, 'largest-spacing');

  it('picks the middle of the longest gap inside the foreground, else the slice past the more abrupt end', () => {
    const gap = labelWith([0, 4, 0, 4, 0, 0, 0, 4, 2, 0]);
    expect(missedSlice(gap, orientationOf(gap))).toBe(5);
    // Foreground 2–5 tapering at the start (1 voxel) and cut off at the end (9): look past the end.
    const cut = labelWith([0, 0, 1, 5, 8, 9, 0, 0, 0, 0]);
    expect(missedSlice(cut, orientationOf(cut))).toBe(6);
    const tapering = labelWith([0, 0, 9, 5, 8, 1, 0, 0, 0, 0]);
    expect(missedSlice(tapering, orientationOf(tapering))).toBe(1);
    // No empty slice, or no foreground at all: nothing to add.
    const full = labelWith(new Array(10).fill(3));
    expect(missedSlice(full, orientationOf(full))).toBeUndefined();
    const none = labelWith(new Array(10).fill(0));
    expect(missedSlice(none, orientationOf(none))).toBeUndefined();
  });

  it('asks for an empty slice only when the signals say something was missed', () => {
    expect(missedReason({ caseId: 'a', verdict: 'accept', reasons: [] })).toBeUndefined();
    expect(missedReason({ caseId: 'a', verdict: 'review', reasons: ['predicted Dice 0.612 < 0.800'] })).toBe('predicted Dice 0.612 < 0.800');
    expect(missedReason({ caseId: 'a', verdict: 'review', reasons: ['no foreground voxels predicted'] })).toBe('no foreground voxels predicted');
    expect(missedReason({ caseId: 'a', verdict: 'reject', reasons: ["out of the model's domain: intensity"] })).toBeUndefined();
    expect(missedReason({ caseId: 'a', verdict: 'accept', reasons: [], absentClasses: ['LV'] })).toBe('no LV predicted');
  });

  it('refuses a rasterizer whose layer is not the size of the picture', () => {
    const label = labelWith([0, 0, 4, 4, 4, 4, 0, 0, 0, 0]);
    const image = label.withData(Float32Array.from({ length: label.data.length }, (_, n) => n % 7));
    const annotation = { caseId: 'c', verdict: 'accept' as const, reasons: [] };
    const wrong = () => ({ width: 3, height: 3, pixels: new Uint8Array(36) });
    expect(() => renderPreview(image, label, undefined, card, orientationOf(label), { tileSize: 40, annotation, rasterize: wrong })).toThrow(/rasterizer returned 3×3 for a \d+×\d+ layer/);
  });

  it('adds the empty slice to the montage, framed and captioned, when asked; not otherwise', () => {
    const label = labelWith([0, 0, 4, 4, 4, 4, 0, 0, 0, 0]);
    const image = label.withData(Float32Array.from({ length: label.data.length }, (_, n) => n % 7));
    const orientation = orientationOf(label);
    const svgOf = (annotation: PreviewAnnotation) => {
      let svg = '';
      renderPreview(image, label, undefined, card, orientation, {
        tileSize: 40,
        maxSlices: 4,
        annotation,
        rasterize: (s) => {
          svg += s;
          const [width, height] = [/width="(\d+)"/, /height="(\d+)"/].map((r) => Number(r.exec(s)![1]));
          return { width, height, pixels: new Uint8Array(width * height * 4) };
        },
      });
      return svg;
    };
    const shown = (svg: string) => [...svg.matchAll(/>slice (\d+)</g)].map((m) => Number(m[1]));
    const missed = svgOf({ caseId: 'case-7', verdict: 'review', reasons: ['predicted Dice 0.612 < 0.800'], predictedDice: 0.612 });
    // Three foreground slices and the empty one past the abrupt end (2 and 5 are equally abrupt: after wins).
    expect(shown(missed)).toEqual([2, 4, 5, 6]);
    expect(missed).toContain('nothing predicted here');
    expect(missed).toContain('predicted Dice 0.612 &#60; 0.800');
    expect(missed).toContain('case case-7');
    expect(missed).toContain('>REVIEW<');
    expect(missed).toContain('predicted Dice 0.612');
    const fine = svgOf({ caseId: 'case-7', verdict: 'accept', reasons: [], predictedDice: 0.9 });
    expect(shown(fine)).toEqual([2, 3, 4, 5]);
    expect(fine).not.toContain('nothing predicted here');
    // The legend lists the foreground classes in their colours (no regions without a region map).
    expect(fine).toContain(`fill="rgb(${RV.join(',')})"`);
    expect(fine).toContain('>1 RV<');
    expect(fine).not.toContain('region 2');
    // An accepted case with a class absent still gets the empty slice, and the header says why.
    const absent = svgOf({ caseId: 'case-7', verdict: 'accept', reasons: [], absentClasses: ['LV'] });
    expect(shown(absent)).toEqual([2, 4, 5, 6]);
    expect(absent).toContain('no LV predicted');
  });

  it('rasterizes a piece of the annotation once per rasterizer and reuses it in later pictures', () => {
    const label = labelWith([0, 0, 4, 4, 4, 4, 0, 0, 0, 0]);
    const image = label.withData(Float32Array.from({ length: label.data.length }, (_, n) => n % 7));
    const orientation = orientationOf(label);
    const asked: string[] = [];
    // Each piece drawn as an opaque fill of a colour taken from its document, so a piece put in the wrong place or reused for another document shows.
    const rasterize = (svg: string) => {
      asked.push(svg);
      const [width, height] = [/width="(\d+)"/, /height="(\d+)"/].map((r) => Number(r.exec(svg)![1]));
      const shade = [...svg].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 251, 7);
      const pixels = new Uint8Array(width * height * 4);
      for (let p = 0; p < pixels.length; p += 4) pixels.set([shade, 255 - shade, 128, 255], p);
      return { width, height, pixels };
    };
    const render = (caseId: string) => renderPreview(image, label, undefined, card, orientation, { tileSize: 40, annotation: { caseId, verdict: 'accept', reasons: [], predictedDice: 0.9 }, rasterize });
    const first = render('case-1');
    const pieces = asked.length;
    expect(new Set(asked).size).toBe(pieces);
    expect(Buffer.from(render('case-1')).equals(Buffer.from(first))).toBe(true);
    expect(asked.length).toBe(pieces);
    // Another case id: only the header line that names it is new.
    const other = PNG.sync.read(Buffer.from(render('case-2')));
    expect(asked.length).toBe(pieces + 1);
    expect(asked.at(-1)).toContain('case case-2');
    const again = PNG.sync.read(Buffer.from(first));
    let differing = 0;
    for (let p = 0; p < again.data.length; p += 4) if (again.data[p] !== other.data[p]) differing++;
    // The case line's box is the picture's width by 23 rows.
    expect(differing).toBe(again.width * 23);
    // A piece fills its own box: the legend swatch's piece starts 6 pixels from the left edge.
    const legendY = again.height - 6 - 22;
    const at = (x: number) => Array.from(again.data.subarray((legendY * again.width + x) * 4, (legendY * again.width + x) * 4 + 3));
    expect(at(5)).toEqual([0, 0, 0]);
    expect(at(6)).not.toEqual([0, 0, 0]);
  });
});

