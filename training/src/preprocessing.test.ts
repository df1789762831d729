import { describe, expect, it } from 'vitest';
import { ALHVR_RECIPE_PREPROCESSING, InputError } from '@alhvr/core';
import { DEFAULT_CONFIG, preprocessingOf, resolveConfig } from './config.js';
import { openAcdcH5Dataset } from './data/acdc-h5-dataset.js';
import { SliceAugmenter } from './data/augment.js';

const paths = { data: '/d', out: '/o' };

describe('training config preprocessing block', () => {
  it('defaults to the recipe, and a partial block is merged over it field by field', () => {
    expect(DEFAULT_CONFIG.preprocessing).toBe(ALHVR_RECIPE_PREPROCESSING);
    expect(resolveConfig(paths).preprocessing).toEqual(ALHVR_RECIPE_PREPROCESSING);
    const c = resolveConfig({ ...paths, preprocessing: { normalisation: { kind: 'window', low: -100, high: 300 }, resize: { mapBack: { interpolation: 'nearest', alignment: 'corners' } } } });
    expect(c.preprocessing).toEqual({
      ...ALHVR_RECIPE_PREPROCESSING,
      normalisation: { kind: 'window', low: -100, high: 300 },
      resize: { ...ALHVR_RECIPE_PREPROCESSING.resize, mapBack: { interpolation: 'nearest', alignment: 'corners' } },
    });
  });

  it.each([
    ['an unknown normalisation', { normalisation: { kind: 'percentile' } }, 'preprocessing.normalisation.kind'],
    ['an empty window', { normalisation: { kind: 'window', low: 5, high: 5 } }, 'preprocessing.normalisation.high'],
    ['a slice axis that is no axis', { sliceAxis: 3 }, 'preprocessing.sliceAxis'],
    ['interpolated labels', { resize: { label: { interpolation: 'linear', alignment: 'corners' } } }, 'preprocessing.resize.label.interpolation'],
    ['an unknown alignment', { resize: { image: { interpolation: 'nearest', alignment: 'centre' } } }, 'preprocessing.resize.image.alignment'],
  ])('rejects %s in one line naming the field', (_what, preprocessing, field) => {
    const attempt = () => resolveConfig({ ...paths, preprocessing: preprocessing as never });
    expect(attempt).toThrow(InputError);
    expect(attempt).toThrow(new RegExp(`^invalid training config: ${field.replace(/\./g, '\\.')} [^\\n]+$`));
  });

  it('lets pseudo-labels train with any preprocessing (they are read with the same block)', () => {
    expect(resolveConfig({ ...paths, pseudoLabels: ['/seg'], preprocessing: { normalisation: { kind: 'zscore-volume' } } }).preprocessing.normalisation).toEqual({ kind: 'zscore-volume' });
    expect(resolveConfig({ ...paths, pseudoLabels: ['/seg'], preprocessing: { sliceAxis: 0 } }).preprocessing.sliceAxis).toBe(0);
  });

  it('a config saved before the block existed reads as the recipe', () => {
    const { preprocessing: _p, ...old } = resolveConfig(paths);
    expect(preprocessingOf(old)).toBe(ALHVR_RECIPE_PREPROCESSING);
  });

  it('acdc-h5 refuses a normalisation its pre-normalised slices were not made with', async () => {
    await expect(openAcdcH5Dataset('/nowhere', { labeledSlices: 2, preprocessing: { sliceAxis: 'largest-spacing', normalisation: { kind: 'zscore-volume' } } })).rejects.toThrow(/acdc-h5 slices come normalised \(minmax-volume\).*zscore-volume/);
  });
});

describe('SliceAugmenter resize rules', () => {
  it('resizes the image with the image rule and the label with the label rule', () => {
    // A 2×1 ramp to 4×4: nearest repeats the two values, linear (corners) interpolates between them.
    const slice = { width: 2, height: 1, image: Float32Array.from([0, 3]), label: Uint8Array.from([1, 2]) };
    const linear = new SliceAugmenter(4, 2, { image: { interpolation: 'linear', alignment: 'corners' }, label: { interpolation: 'nearest', alignment: 'corners' } });
    linear.apply(slice, { kind: 'none' });
    expect(Array.from(linear.image.subarray(0, 4))).toEqual([0, 1, 2, 3]);
    expect(Array.from(linear.label.subarray(0, 4))).toEqual([1, 1, 2, 2]);
    const recipe = new SliceAugmenter(4, 2);
    recipe.apply(slice, { kind: 'none' });
    expect(Array.from(recipe.image.subarray(0, 4))).toEqual([0, 0, 3, 3]);
  });
});
