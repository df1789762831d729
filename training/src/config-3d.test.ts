import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { ALHVR_3D_RECIPE_PREPROCESSING, InputError, validatePreprocessing } from '@alhvr/core';
import { DEFAULT_CONFIG, THREE_D_DEFAULTS, resolveConfig } from './config.js';

const paths = { data: '/d', out: '/o' };

describe('network choice in the training config', () => {
  it('defaults to the 2D U-Net with the 2D recipe', () => {
    const c = resolveConfig(paths);
    expect(c.network).toBe('unet2d');
    expect(c.patch).toBe(256);
    expect(c.proportion).toBe(0.8);
    expect(c.preprocessing.targetSpacing).toBeUndefined();
  });

  it('vnet3d takes the released 3D recipe where the user set nothing, and the user where they did', () => {
    const c = resolveConfig({ ...paths, network: 'vnet3d' });
    expect([c.patch, c.batchLabeled, c.batchUnlabeled, c.proportion, c.iterations, c.rampIterations]).toEqual([96, 2, 2, 0.7, 15_000, 30_000]);
    expect(c.preprocessing).toEqual(ALHVR_3D_RECIPE_PREPROCESSING);
    const mine = resolveConfig({ ...paths, network: 'vnet3d', patch: 32, proportion: 0.6, preprocessing: { targetSpacing: [0.8, 0.8, 2.5], normalisation: { kind: 'ct-foreground' } as never } });
    expect([mine.patch, mine.proportion, mine.batchLabeled]).toEqual([32, 0.6, THREE_D_DEFAULTS.batchLabeled]);
    expect(mine.preprocessing.targetSpacing).toEqual([0.8, 0.8, 2.5]);
    // The CT rule may be asked for before its numbers exist; the trainer measures them.
    expect(mine.preprocessing.normalisation).toEqual({ kind: 'ct-foreground' });
    expect(mine.preprocessing.resize).toEqual(ALHVR_3D_RECIPE_PREPROCESSING.resize);
    expect(DEFAULT_CONFIG.patch).toBe(256);
  });

  it.each([
    ['an unknown network', { network: 'unet3d' }, /^invalid training config: network must be one of unet2d, vnet3d/],
    ['a 3D patch that is no multiple of 16', { network: 'vnet3d', patch: 40 }, /^invalid training config: patch must be a positive multiple of 16 \(got 40\)$/],
    ['a target spacing on a 2D run', { preprocessing: { targetSpacing: [1, 1, 1] } }, /targetSpacing is for 3D networks only/],
    ['the CT rule on a 2D run', { preprocessing: { normalisation: { kind: 'ct-foreground', low: -100, high: 200, mean: 50, std: 40 } } }, /"ct-foreground" is for 3D networks only/],
    ['a spacing that is not three positive numbers', { network: 'vnet3d', preprocessing: { targetSpacing: [1, 0, 1] } }, /preprocessing\.targetSpacing must be \[x, y, z\]/],
    ['half the CT numbers', { network: 'vnet3d', preprocessing: { normalisation: { kind: 'ct-foreground', low: -100 } } }, /preprocessing\.normalisation\.high must be a finite number/],
    ['a zero CT std', { network: 'vnet3d', preprocessing: { normalisation: { kind: 'ct-foreground', low: -100, high: 200, mean: 50, std: 0 } } }, /preprocessing\.normalisation\.std must be positive/],
    ['a VNet dropout of 1', { network: 'vnet3d', vnetDropout: 1 }, /vnetDropout must be in \[0, 1\) \(got 1\)/],
    ['a VNet dropout on a 2D run', { vnetDropout: 0 }, /vnetDropout is the 3D VNet's dropout/],
    ['an unknown crop augmentation', { network: 'vnet3d', cropAugment: 'flip' }, /cropAugment must be rot90-flip or none \(got "flip"\)/],
    ['a crop augmentation on a 2D run', { cropAugment: 'none' }, /cropAugment applies to 3D crops only/],
  ])('rejects %s in one line', (_what, user, message) => {
    const attempt = () => resolveConfig({ ...paths, ...(user as object) });
    expect(attempt).toThrow(message);
    try {
      attempt();
    } catch (err) {
      expect((err as Error).message).not.toContain('\n');
    }
  });

  it('a card or checkpoint block needs the CT numbers (no pending rule outside a training config)', () => {
    const pending = { ...ALHVR_3D_RECIPE_PREPROCESSING, normalisation: { kind: 'ct-foreground' } };
    expect(() => validatePreprocessing(pending)).toThrow(InputError);
    expect(() => validatePreprocessing(pending)).toThrow(/preprocessing\.normalisation\.low must be a finite number/);
    expect(validatePreprocessing(pending, 'x', 'pending-allowed').normalisation).toEqual({ kind: 'ct-foreground' });
  });

  it('the shipped CPU recipe for abdominal CT resolves to a 3D run with a target spacing', () => {
    const recipe = JSON.parse(readFileSync(new URL('../../models/recipes/alhvr-abdomen-ct.train.json', import.meta.url), 'utf8'));
    const c = resolveConfig({ ...paths, ...recipe });
    expect(c.network).toBe('vnet3d');
    expect(c.patch % 16).toBe(0);
    expect(c.preprocessing.targetSpacing).toHaveLength(3);
    // Normalisation is left to the dataset's modality (CT → measured ct-foreground).
    expect(c.preprocessing.normalisation).toEqual(ALHVR_3D_RECIPE_PREPROCESSING.normalisation);
    expect(c.proportion).toBe(0.7);
    // Abdominal organs are not mirror images of each other: the recipe keeps left and right.
    expect(c.cropAugment).toBe('none');
    expect(resolveConfig({ ...paths, network: 'vnet3d' }).cropAugment).toBe('rot90-flip');
  });
});
