/**
 * int8 export: the fp32 export, its activation ranges measured with ONNX Runtime on the
 * calibration volumes' model-input slices (made by inference's own pipeline, so the slices are
 * exactly what a user's run feeds the model), then the QDQ rewrite (quantize.ts).
 */
import { InputError, MODEL_CARD_KEY, type ModelCard, type Volume, type VoxelArray } from '@alhvr/core';
import { ort, segmentVolume, type SliceModel, type SliceOutputKind, type SliceOutputs } from '@alhvr/inference/node';
import { exportOnnx, ONNX_INPUT, type ExportCard, type ExportOptions, type ExportResult } from './export-onnx.js';
import { decodeOnnxModel } from './onnx-graph-builder.js';
import { ACTIVATION_SCALE_RULE, observeRange, planQuantization, quantizeModel, withActivationOutputs, type ActivationRange } from './quantize.js';

/** A batch of preprocessed model inputs, [n, 1, height, width]. */
export interface ModelInputBatch {
  data: Float32Array;
  n: number;
  height: number;
  width: number;
}

/**
 * The model-input slices inference makes of `volume` for a model with `card`: the pipeline runs
 * with a stand-in model that keeps a copy of each batch and answers with empty outputs.
 */
export async function modelInputSlices(volume: Volume<VoxelArray>, card: ModelCard, batch = 8): Promise<ModelInputBatch[]> {
  if (volume.frames !== 1) return []; // not a 3D volume: the pipeline would refuse it too
  const batches: ModelInputBatch[] = [];
  const C = card.classes.length;
  const recorder: SliceModel = {
    card: { ...card, students: 'a', outputs: { ...card.outputs, region: undefined } },
    available: new Set<SliceOutputKind>(['probabilities', 'label', 'confidence']),
    async run(data, n, height, width, fetch) {
      batches.push({ data: data.slice(0, n * height * width), n, height, width });
      const plane = n * height * width;
      const out: SliceOutputs = {};
      for (const kind of fetch) out[kind] = kind === 'label' ? new Uint8Array(plane) : new Float32Array(kind === 'probabilities' ? plane * C : plane);
      return out;
    },
  };
  await segmentVolume(volume, recorder, { batch });
  return batches;
}

/** Min/max of each named activation of `model` over all batches (ONNX Runtime, CPU). */
export async function measureActivationRanges(model: Uint8Array, tensors: readonly string[], batches: readonly ModelInputBatch[], onProgress?: (done: number, total: number) => void): Promise<Map<string, ActivationRange>> {
  const session = await ort.InferenceSession.create(withActivationOutputs(model, tensors), { executionProviders: ['cpu'], graphOptimizationLevel: 'all' });
  const ranges = new Map<string, ActivationRange>();
  try {
    for (const [i, b] of batches.entries()) {
      const out = await session.run({ [ONNX_INPUT]: new ort.Tensor('float32', b.data, [b.n, 1, b.height, b.width]) }, [...tensors]);
      for (const t of tensors) observeRange(ranges, t, out[t].data as Float32Array);
      onProgress?.(i + 1, batches.length);
    }
  } finally {
    await session.release();
  }
  return ranges;
}

export interface Int8ExportOptions extends Omit<ExportOptions, 'precision'> {
  /** Which volumes the scales come from, by name (recorded in the card). */
  source: string;
  cases: number;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Export with int8 convolutions: weights symmetric per output channel, activation scales from
 * the calibration volumes' model inputs (`modelInputSlices`; or batches made by the caller). The
 * card records the precision and how the scales were calibrated. `float` is the fp32 graph the
 * int8 one was made from (same card), for the TensorFlow.js parity check.
 */
export async function exportOnnxInt8(
  students: readonly unknown[],
  card: ExportCard,
  calibration: { batches: readonly ModelInputBatch[] } | { volumes: readonly Volume<VoxelArray>[] },
  opts: Int8ExportOptions,
): Promise<ExportResult & { float: ExportResult }> {
  let batches: readonly ModelInputBatch[];
  if ('volumes' in calibration) {
    // The card decides the slices (axis, normalisation, resize), so they come from the complete card.
    const fullCard = exportOnnx(students, card, { students: opts.students }).card;
    const made: ModelInputBatch[] = [];
    for (const v of calibration.volumes) made.push(...(await modelInputSlices(v, fullCard)));
    batches = made;
  } else {
    batches = calibration.batches;
  }
  if (batches.length === 0) throw new InputError('--precision int8 needs calibration volumes to measure activation ranges on (the run\'s validation cases or --calibration DIR)');
  const slices = batches.reduce((s, b) => s + b.n, 0);
  const precision: NonNullable<ModelCard['precision']> = {
    network: 'int8',
    activationScales: { rule: ACTIVATION_SCALE_RULE, source: opts.source, cases: opts.cases, slices },
  };
  const fp32 = exportOnnx(students, { ...card, precision }, { students: opts.students, debugLogits: opts.debugLogits });
  const plan = planQuantization(decodeOnnxModel(fp32.onnx), ONNX_INPUT);
  const ranges = await measureActivationRanges(fp32.onnx, plan.measured, batches, opts.onProgress);
  const metadata = { [MODEL_CARD_KEY]: JSON.stringify(fp32.card) };
  const { onnx, weightBytes } = quantizeModel(fp32.onnx, { plan, ranges, metadata });
  const summary = { ...fp32.summary, precision: 'int8' as const, weightBytes, fileBytes: onnx.length, nodes: decodeOnnxModel(onnx).graph?.node?.length ?? 0 };
  return { onnx, card: fp32.card, summary, float: fp32 };
}
