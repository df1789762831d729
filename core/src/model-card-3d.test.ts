import { describe, expect, it } from 'vitest';
import { ALHVR_RECIPE_RESIZE, MODEL_CARD_SCHEMA, parseModelCard, validateModelCard, type ModelCard } from './model-card.js';
import { InputError } from './errors.js';

const card3d = (): ModelCard => ({
  schema: MODEL_CARD_SCHEMA,
  name: 'abdomen-ct-alhvr',
  classes: [
    { value: 0, name: 'background', color: [0, 0, 0] },
    { value: 1, name: 'liver', color: [230, 25, 75] },
  ],
  dimensions: 3,
  input: { size: [96, 96, 64], channels: 1, sliceAxis: 'largest-spacing', name: 'image', layout: 'NCDHW' },
  targetSpacing: [0.8, 0.8, 2.5],
  normalisation: { kind: 'zscore-volume' },
  resize: ALHVR_RECIPE_RESIZE,
  regions: { gamma: 0.5, beta: 0.7, gammaSource: 'default' },
  students: 'both',
  outputs: { probabilities: 'probabilities', label: 'label', confidence: 'confidence', region: 'region' },
  training: { method: 'alhvr', iterations: 3 },
  toolkit: { version: '0.1.0' },
  createdAt: '2026-12-03T00:00:00Z',
});

describe('3D model card', () => {
  it('accepts dimensions 3 with an NCDHW patch and target spacing, and round-trips through JSON', () => {
    expect(parseModelCard(JSON.stringify(card3d()))).toEqual(card3d());
  });

  it('still loads a 2D card without the field (dimensions absent = 2)', () => {
    const { dimensions: _d, targetSpacing: _t, ...rest } = card3d();
    const old = { ...rest, input: { ...rest.input, size: [256, 256], layout: 'NCHW' } };
    const valid = validateModelCard(old);
    expect(valid.dimensions).toBeUndefined();
    expect(valid.input.size).toEqual([256, 256]);
  });

  it.each([
    ['a 3D card with a plane layout', (c: any) => (c.input.layout = 'NCHW'), /card\.input\.layout must be "NCDHW"/],
    ['a 3D card with a plane size', (c: any) => (c.input.size = [96, 96]), /card\.input\.size must be a 3D patch/],
    ['a 3D card without target spacing', (c: any) => delete c.targetSpacing, /card\.targetSpacing is required/],
    ['a patch side not a multiple of 16', (c: any) => (c.input.size = [96, 96, 40]), /card\.input\.size/],
    ['a non-positive spacing', (c: any) => (c.targetSpacing = [0.8, 0, 2]), /card\.targetSpacing must be/],
    ['dimensions 4', (c: any) => (c.dimensions = 4), /card\.dimensions must be one of 2, 3/],
    ['a 2D card with an NCDHW layout', (c: any) => delete c.dimensions, /card\.input\.layout "NCDHW" needs card\.dimensions 3/],
    ['a 2D card with a 3D patch', (c: any) => ((c.dimensions = 2), (c.input.layout = 'NCHW')), /has three sides/],
    ['a 2D card with target spacing', (c: any) => ((c.dimensions = 2), (c.input.layout = 'NCHW'), (c.input.size = [96, 96])), /targetSpacing is for 3D models only/],
  ])('rejects %s in one line naming the field', (_name, mutate, message) => {
    const c = card3d();
    mutate(c);
    let error: unknown;
    try {
      validateModelCard(c);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(InputError);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).not.toContain('\n');
  });
});
