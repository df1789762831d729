import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { execFileSync } from 'node:child_process';
import { InputError, MODEL_CARD_KEY, validateModelCard } from '@alhvr/core';
import type { UNet } from '@alhvr/training';
import { makeCard, makeStudent, useBackend } from '../../test/export-fixtures.js';
import { decodeOnnxModel, ElemType, onnx } from './onnx-graph-builder.js';
import { exportOnnx, GAMMA_INITIALIZER } from './export-onnx.js';
import { onnxMetadata, readOnnxModelCard } from './onnx-model-card.js';

let a: UNet;
let b: UNet;
beforeAll(async () => {
  await useBackend();
  a = makeStudent(1);
  b = makeStudent(2);
});
afterAll(() => {
  a.dispose();
  b.dispose();
});

const dims = (v: onnx.IValueInfoProto) => v.type!.tensorType!.shape!.dim!.map((d) => d.dimParam || Number(d.dimValue));
const attr = (n: onnx.INodeProto, name: string) => n.attribute!.find((x) => x.name === name)!;

describe('exportOnnx graph', () => {
  test('two students: opset 17, NCHW dynamic input, the inference output contract, no BN/dropout', () => {
    const { onnx: bytes, summary } = exportOnnx([a, b], makeCard([64, 48], 0.7));
    const model = decodeOnnxModel(bytes);
    expect(model.opsetImport.map((o) => [o.domain, Number(o.version)])).toEqual([['', 17]]);
    const g = model.graph!;
    expect(g.input.map((i) => [i.name, i.type!.tensorType!.elemType, dims(i)])).toEqual([['image', ElemType.FLOAT, ['N', 1, 'H', 'W']]]);
    expect(g.output.map((o) => [o.name, o.type!.tensorType!.elemType, dims(o)])).toEqual([
      ['probabilities', ElemType.FLOAT, ['N', 4, 'H', 'W']],
      ['label', ElemType.UINT8, ['N', 'H', 'W']],
      ['confidence', ElemType.FLOAT, ['N', 'H', 'W']],
      ['entropy', ElemType.FLOAT, ['N', 'H', 'W']],
      ['student_confidence', ElemType.FLOAT, ['N', 2, 'H', 'W']],
      ['region', ElemType.UINT8, ['N', 'H', 'W']],
      ['student_label', ElemType.UINT8, ['N', 2, 'H', 'W']],
    ]);
    const ops = g.node.map((n) => n.opType);
    expect(ops).not.toContain('BatchNormalization');
    expect(ops).not.toContain('Dropout');
    // 2 students × (10 encoder + 8 decoder block + 4 reduce + 1 out) convs, 4 resizes, 4 pools each.
    expect(ops.filter((o) => o === 'Conv')).toHaveLength(46);
    const resizes = g.node.filter((n) => n.opType === 'Resize');
    expect(resizes).toHaveLength(8);
    for (const r of resizes) {
      expect(new TextDecoder().decode(attr(r, 'mode').s!)).toBe('linear');
      expect(new TextDecoder().decode(attr(r, 'coordinate_transformation_mode').s!)).toBe('align_corners');
      expect(r.input![3]).toMatch(/sizes/); // sizes from the runtime shape, no fixed scales
    }
    for (const p of g.node.filter((n) => n.opType === 'MaxPool')) {
      expect(attr(p, 'kernel_shape').ints!.map(Number)).toEqual([2, 2]);
      expect(attr(p, 'strides').ints!.map(Number)).toEqual([2, 2]);
    }
    for (const l of g.node.filter((n) => n.opType === 'LeakyRelu')) expect(attr(l, 'alpha').f).toBeCloseTo(0.01, 7);
    const gamma = g.initializer.find((t) => t.name === GAMMA_INITIALIZER)!;
    expect(gamma.floatData![0]).toBeCloseTo(0.7, 7);
    expect(summary.outputs.map((o) => o.name)).toEqual(['probabilities', 'label', 'confidence', 'entropy', 'student_confidence', 'region', 'student_label']);
    expect(summary.parameters).toBe(
      g.initializer.filter((t) => t.dataType === ElemType.FLOAT && t.dims!.length > 0).reduce((s, t) => s + t.dims!.reduce((p, d) => p * Number(d), 1), 0),
    );
    expect(summary.fileBytes).toBe(bytes.length);
  });

  test('one student: no region or student_confidence, and b really is the second network', () => {
    const onlyB = exportOnnx([a, b], makeCard([32, 32]), { students: 'b' });
    expect(onlyB.summary.outputs.map((o) => o.name)).toEqual(['probabilities', 'label', 'confidence', 'entropy']);
    expect(onlyB.card.students).toBe('b');
    expect(onlyB.card.outputs.region).toBeUndefined();
    const weights = (bytes: Uint8Array) =>
      decodeOnnxModel(bytes).graph!.initializer.filter((t) => t.name!.includes('conv')).map((t) => Buffer.from(t.rawData!).toString('base64'));
    const bAlone = exportOnnx([b], makeCard([32, 32]), { students: 'b' });
    const aAlone = exportOnnx([a, b], makeCard([32, 32]), { students: 'a' });
    expect(weights(onlyB.onnx)).toEqual(weights(bAlone.onnx));
    expect(weights(onlyB.onnx)).not.toEqual(weights(aAlone.onnx));
    expect(() => exportOnnx([a], makeCard([32, 32]), { students: 'both' })).toThrow(/needs two networks/);
  });

  test('fp16: half weights, float32 image input and outputs', () => {
    const full = exportOnnx([a, b], makeCard([32, 32]));
    const half = exportOnnx([a, b], makeCard([32, 32]), { fp16: true });
    const g = decodeOnnxModel(half.onnx).graph!;
    const weights = g.initializer.filter((t) => t.name!.includes('/'));
    expect(weights.length).toBeGreaterThan(0);
    expect(weights.every((t) => t.dataType === ElemType.FLOAT16)).toBe(true);
    expect(g.input[0].type!.tensorType!.elemType).toBe(ElemType.FLOAT);
    expect(g.output.map((o) => o.type!.tensorType!.elemType)).toEqual([ElemType.FLOAT, ElemType.UINT8, ElemType.FLOAT, ElemType.FLOAT, ElemType.FLOAT, ElemType.UINT8, ElemType.UINT8]);
    expect(half.summary.weightBytes * 2).toBe(full.summary.weightBytes);
    expect(half.summary.precision).toBe('fp16');
  });

  test('fp16-weights: half weights widened by one Cast each, float32 network compute', () => {
    const full = exportOnnx([a, b], makeCard([32, 32]));
    const stored = exportOnnx([a, b], makeCard([32, 32]), { precision: 'fp16-weights' });
    const g = decodeOnnxModel(stored.onnx).graph!;
    const weights = g.initializer.filter((t) => t.name!.includes('/'));
    expect(weights.length).toBe(decodeOnnxModel(full.onnx).graph!.initializer.filter((t) => t.name!.includes('/')).length);
    expect(weights.every((t) => t.dataType === ElemType.FLOAT16)).toBe(true);
    const casts = g.node.filter((n) => n.opType === 'Cast' && weights.some((w) => w.name === n.input[0]));
    expect(casts.length).toBe(weights.length);
    expect(casts.every((n) => Number(n.attribute.find((x) => x.name === 'to')!.i) === ElemType.FLOAT)).toBe(true);
    // The convolutions read the widened weights; no activation is cast to half.
    expect(g.node.some((n) => n.opType === 'Cast' && n.input[0] === 'image')).toBe(false);
    expect(stored.summary.weightBytes * 2).toBe(full.summary.weightBytes);
    expect(stored.summary.precision).toBe('fp16-weights');
    expect(stored.card.precision).toEqual({ network: 'fp16-weights' });
  });
});

describe('model card in metadata_props', () => {
  test('round-trips, validates, and carries γ, β, training record and the git commit', () => {
    const card = makeCard([64, 48], 0.65);
    const { onnx: bytes, card: written } = exportOnnx([a, b], card);
    expect([...onnxMetadata(bytes).keys()]).toEqual([MODEL_CARD_KEY]);
    const read = readOnnxModelCard(bytes);
    expect(read).toEqual(written);
    expect(validateModelCard(JSON.parse(onnxMetadata(bytes).get(MODEL_CARD_KEY)!))).toEqual(written);
    expect(read.regions).toEqual({ gamma: 0.65, beta: 0.8, gammaSource: 'training-final' });
    expect(read.input).toEqual({ size: [64, 48], channels: 1, sliceAxis: 'largest-spacing', name: 'image', layout: 'NCHW' });
    expect(read.outputs).toEqual({ probabilities: 'probabilities', label: 'label', confidence: 'confidence', region: 'region' });
    expect(read.resize.image).toEqual({ interpolation: 'nearest', alignment: 'corners' });
    expect(read.training).toEqual(card.training);
    expect(read.classes).toEqual(card.classes);
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
    expect(read.toolkit).toEqual({ version: '0.1.0', gitCommit: head });
    expect(Number.isNaN(Date.parse(read.createdAt))).toBe(false);
  });

  test('a card that does not fit the network or the schema stops the export', () => {
    const threeClasses = { ...makeCard([32, 32]), classes: makeCard([32, 32]).classes.slice(0, 3) };
    expect(() => exportOnnx([a, b], threeClasses)).toThrow(/card lists 3 classes but the network outputs 4/);
    const badGamma = makeCard([32, 32], 1.5);
    expect(() => exportOnnx([a, b], badGamma)).toThrow(InputError);
    expect(() => exportOnnx([a, b], badGamma)).toThrow(/card\.regions\.gamma/);
    expect(() => exportOnnx([a, b], makeCard([40, 32]))).toThrow(/card\.input\.size/);
  });
});
