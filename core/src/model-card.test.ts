import { describe, expect, it } from 'vitest';
import { ALHVR_RECIPE_RESIZE, MODEL_CARD_SCHEMA, parseModelCard, validateModelCard, type ModelCard } from './model-card.js';
import { InputError } from './errors.js';

const card = (): ModelCard => ({
  schema: MODEL_CARD_SCHEMA,
  name: 'acdc-alhvr',
  classes: [
    { value: 0, name: 'background', color: [0, 0, 0] },
    { value: 1, name: 'RV', color: [230, 25, 75] },
  ],
  input: { size: [256, 256], channels: 1, sliceAxis: 'largest-spacing', name: 'image', layout: 'NCHW' },
  normalisation: { kind: 'minmax-volume' },
  resize: ALHVR_RECIPE_RESIZE,
  regions: { gamma: 0.9, beta: 0.8, gammaSource: 'training-final' },
  students: 'both',
  outputs: { probabilities: 'probabilities', label: 'label', confidence: 'confidence', region: 'region' },
  training: { method: 'alhvr', iterations: 100 },
  toolkit: { version: '0.1.0' },
  createdAt: '2026-11-25T00:00:00Z',
});

describe('model card', () => {
  it('accepts a complete card and round-trips through JSON', () => {
    expect(parseModelCard(JSON.stringify(card()))).toEqual(card());
  });

  it.each([
    ['input size not a multiple of 16', (c: any) => (c.input.size = [250, 256]), 'card.input.size'],
    ['gamma out of range', (c: any) => (c.regions.gamma = 1.5), 'card.regions.gamma'],
    ['duplicate class value', (c: any) => (c.classes[1].value = 0), 'card.classes[1].value'],
    ['bad colour', (c: any) => (c.classes[0].color = [0, 0, 300]), 'card.classes[0].color'],
    ['two students without region output', (c: any) => delete c.outputs.region, 'card.outputs.region'],
    ['unknown normalisation', (c: any) => (c.normalisation = { kind: 'percentile' }), 'card.normalisation.kind'],
    ['window without bounds', (c: any) => (c.normalisation = { kind: 'window', low: 0 }), 'card.normalisation.high'],
    ['empty window', (c: any) => (c.normalisation = { kind: 'window', low: 10, high: -10 }), 'card.normalisation.high'],
    ['labels resized back by interpolation', (c: any) => (c.resize = { ...c.resize, labelBack: { interpolation: 'linear', alignment: 'corners' } }), 'card.resize.labelBack.interpolation'],
    ['unknown resize alignment', (c: any) => (c.resize = { ...c.resize, mapBack: { interpolation: 'linear', alignment: 'centre' } }), 'card.resize.mapBack.alignment'],
    ['wrong schema', (c: any) => (c.schema = 'other/1'), 'card.schema'],
  ])('rejects %s, naming the field', (_name, mutate, field) => {
    const c = card();
    mutate(c);
    expect(() => validateModelCard(c)).toThrow(InputError);
    expect(() => validateModelCard(c)).toThrow(field);
  });

  it('accepts a card written before resize.label was recorded', () => {
    const { label: _label, ...older } = ALHVR_RECIPE_RESIZE;
    expect(validateModelCard({ ...card(), resize: older }).resize.label).toBeUndefined();
  });

  it('rejects text that is not JSON', () => {
    expect(() => parseModelCard('{not json')).toThrow(/not valid JSON/);
  });
});
