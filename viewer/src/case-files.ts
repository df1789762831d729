// The files alhvr-segment writes for one case, made in the browser from the same results: the
// NIfTI maps (same header, datatype and description as inference/src/outputs.ts), DICOM SEG for
// DICOM input, and report.json with the CLI's CaseReport fields.
import { encodeDicomSeg, encodeNifti, type Volume, type VoxelArray } from '@alhvr/core';
import { buildCaseReport, modelSegOptions, type CaseReport, type ModelIdentity } from '@alhvr/inference';
import type { SegmentNiftiResult } from './segment-nifti.js';

/** File names of a case folder; the same as inference's CASE_FILES (test/viewer-browser.test.ts checks). */
export const CASE_FILE_NAMES = {
  mask: 'mask.nii.gz',
  confidence: 'confidence.nii.gz',
  region: 'region.nii.gz',
  seg: 'seg.dcm',
  report: 'report.json',
} as const;

/** How the page ran the model, for the report's `device`. */
export interface BrowserDevice {
  /** Execution provider: "webgpu" or "wasm". */
  backend: string;
  threads: number;
  /** Why WebGPU was not used (completes "WebGPU not used: …"). */
  fallback?: string;
}

/** A case id from a file name: its stem with what a folder name cannot hold replaced by "_". */
export function browserCaseId(name: string): string {
  const stem = name.replace(/\.(nii\.gz|nii|dcm)$/i, '');
  const safe = stem.normalize('NFC').replace(/[^\p{L}\p{N}\p{M}._-]+/gu, '_').replace(/^[.-]+/, '').slice(0, 80);
  return safe || 'case';
}

/** The CLI's report.json for a segmentation made in the page. */
export function caseReport(
  result: SegmentNiftiResult,
  identity: ModelIdentity,
  device: BrowserDevice,
  input: string,
  timingsMs: Record<string, number>,
): CaseReport {
  return buildCaseReport({
    caseId: browserCaseId(input),
    input,
    image: result.image,
    slices: result.slices,
    gamma: result.gamma,
    model: identity,
    device: {
      used: `browser-${device.backend}`,
      note: `onnxruntime-web (${device.backend}) in a Web Worker${device.fallback ? `; WebGPU not used: ${device.fallback}` : ''}`,
      threads: device.threads,
    },
    stats: result.stats,
    assessment: result.assessment,
    timingsMs,
    // A 3D model's coverage, as alhvr-segment records it (the viewer weights windows uniformly, its default).
    ...(result.windows !== undefined && result.modelGrid
      ? {
          slidingWindow: {
            windows: result.windows,
            patch: [...identity.card.input.size],
            targetSpacingMm: [...(identity.card.targetSpacing ?? [])],
            modelGrid: result.modelGrid,
            weighting: 'uniform' as const,
          },
        }
      : {}),
  });
}

/** Every file of the case folder, by name (bytes as alhvr-segment would write them, up to gzip framing and DICOM UIDs). */
export function caseFiles(result: SegmentNiftiResult, identity: ModelIdentity, device: BrowserDevice, input: string): Record<string, Uint8Array> {
  const card = identity.card;
  const describe = (what: string) => `alhvr ${what} ${card.name}`;
  const nifti = (vol: Volume<VoxelArray>, datatype: 'uint8' | 'float32', what: string) => encodeNifti(vol, { datatype, description: describe(what) });
  const files: Record<string, Uint8Array> = {
    [CASE_FILE_NAMES.mask]: nifti(result.label, 'uint8', 'mask'),
    [CASE_FILE_NAMES.confidence]: nifti(result.confidence, 'float32', 'confidence'),
  };
  if (result.region) files[CASE_FILE_NAMES.region] = nifti(result.region, 'uint8', 'region');
  if (result.image.meta.dicom) {
    const classes = card.classes.filter((c) => c.value !== 0).map((c) => ({ value: c.value, name: c.name, color: c.color }));
    files[CASE_FILE_NAMES.seg] = encodeDicomSeg(result.label, classes, modelSegOptions(identity));
  }
  const t = result.timings;
  const report = caseReport(result, identity, device, input, { preprocess: t.preprocessMs, inference: t.inferenceMs, postprocess: t.postprocessMs });
  files[CASE_FILE_NAMES.report] = new TextEncoder().encode(`${JSON.stringify(report, null, 2)}\n`);
  return files;
}
