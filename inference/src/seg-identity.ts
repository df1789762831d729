import type { DicomSegOptions } from '@alhvr/core';
import type { ModelIdentity } from './session.js';

/**
 * How a model's DICOM SEG names what made it, decided once for alhvr-segment and the viewer:
 * SeriesDescription "ALHVR <model>", the model's name and toolkit version as the algorithm, and
 * the model file's sha256 in AlgorithmParameters ("model-sha256=…"), so that a SEG found on a
 * PACS identifies the exact model (alhvr-train --pseudo-labels URL reads these back).
 */
export function modelSegOptions(identity: Pick<ModelIdentity, 'card' | 'modelHash'>): DicomSegOptions {
  const { card } = identity;
  return {
    seriesDescription: `ALHVR ${card.name}`.slice(0, 64),
    algorithmName: card.name.slice(0, 64),
    algorithmVersion: card.toolkit.version,
    algorithmParameters: `model-sha256=${identity.modelHash}`,
  };
}
