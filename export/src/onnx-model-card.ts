import { InputError, MODEL_CARD_KEY, parseModelCard, type ModelCard } from '@alhvr/core';
import { decodeOnnxModel } from './onnx-graph-builder.js';

/** The `metadata_props` of a serialised ONNX model. */
export function onnxMetadata(bytes: Uint8Array): Map<string, string> {
  let model;
  try {
    model = decodeOnnxModel(bytes);
  } catch (err) {
    throw new InputError(`not an ONNX model (${(err as Error).message})`);
  }
  return new Map(model.metadataProps.map((p) => [p.key ?? '', p.value ?? '']));
}

/** The validated model card an exported model carries. */
export function readOnnxModelCard(bytes: Uint8Array): ModelCard {
  const json = onnxMetadata(bytes).get(MODEL_CARD_KEY);
  if (json === undefined) throw new InputError(`ONNX model has no ${MODEL_CARD_KEY} metadata entry`);
  return parseModelCard(json);
}
