import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InputError, MODEL_CARD_KEY } from '@alhvr/core';
import { makeToyModel } from '../../test/segment-toy-model.js';
import { readOnnxMetadataProps } from './model-metadata.js';
import { readModelIdentity, sha256Hex } from './session.js';
import { openModelFile } from './session-node.js';

let dir: string;
let model: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'alhvr-session-'));
  model = makeToyModel(dir, { size: [32, 32] });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('model card from ONNX metadata', () => {
  it('reads the card the python exporter stored, and hashes it', async () => {
    const bytes = new Uint8Array(readFileSync(model));
    const props = readOnnxMetadataProps(bytes);
    const json = props.get(MODEL_CARD_KEY)!;
    expect(JSON.parse(json).input.size).toEqual([32, 32]);
    const id = await readModelIdentity(bytes, model);
    expect(id.card.name).toBe('toy-two-student');
    expect(id.cardHash).toBe(await sha256Hex(json));
    expect(id.cardHash).not.toBe(id.modelHash);
  });

  it('names the file for an invalid card, a non-ONNX file or a missing file', async () => {
    const noCard = makeToyModel(dir, { name: 'bad-card.onnx', card: { classes: [] } });
    await expect(openModelFile(noCard, { device: 'cpu' })).rejects.toThrow(/bad-card\.onnx: model card: card\.classes/);
    const garbage = join(dir, 'garbage.onnx');
    writeFileSync(garbage, 'this is not protobuf \u0000\u0001');
    await expect(openModelFile(garbage, { device: 'cpu' })).rejects.toThrow(InputError);
    await expect(openModelFile(join(dir, 'missing.onnx'), { device: 'cpu' })).rejects.toThrow(/missing\.onnx: cannot read model \(ENOENT\)/);
  });

  it.each([
    ['a normalisation it does not implement', { normalisation: { kind: 'percentile' } }, 'card.normalisation.kind'],
    ['an unknown slice axis', { input: { size: [32, 32], channels: 1, sliceAxis: 'smallest-spacing', name: 'image', layout: 'NCHW' } }, 'card.input.sliceAxis'],
    ['labels resized back by interpolation', { resize: { image: { interpolation: 'nearest', alignment: 'corners' }, labelBack: { interpolation: 'linear', alignment: 'corners' }, mapBack: { interpolation: 'linear', alignment: 'corners' } } }, 'card.resize.labelBack.interpolation'],
    ['an unknown resize alignment', { resize: { image: { interpolation: 'nearest', alignment: 'centre' }, labelBack: { interpolation: 'nearest', alignment: 'corners' }, mapBack: { interpolation: 'linear', alignment: 'corners' } } }, 'card.resize.image.alignment'],
  ])('refuses a card whose preprocessing has %s, in one line naming the file and the field', async (_what, card, field) => {
    const file = makeToyModel(dir, { name: 'odd-preprocessing.onnx', card });
    const error = await openModelFile(file, { device: 'cpu' }).then(() => undefined, (err: Error) => err);
    expect(error).toBeInstanceOf(InputError);
    expect(error!.message).toContain('odd-preprocessing.onnx');
    expect(error!.message).toContain(`model card: ${field} `);
    expect(error!.message).not.toContain('\n');
  });

  it('exposes the contract outputs of a two-student model', async () => {
    const opened = await openModelFile(model, { device: 'cpu', threads: 1 });
    expect([...opened.model.available].sort()).toEqual(['confidence', 'label', 'probabilities', 'region', 'studentConfidence']);
    expect(opened.device).toBe('cpu');
    await opened.model.release();
  });
});
