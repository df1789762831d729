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

/** What the map files of a case folder are made from: the segmentation's maps, on the image grid. */
export interface CaseMaps {
  label: Volume<Uint8Array>;
  confidence: Volume<Float32Array>;
  region?: Volume<Uint8Array>;
}

/** The case folder's file names for a result, in the order alhvr-segment lists them (mask, confidence, region, seg.dcm for DICOM input, report.json). */
export function caseFileNames(result: Pick<SegmentNiftiResult, 'image' | 'region'>): string[] {
  return [
    CASE_FILE_NAMES.mask,
    CASE_FILE_NAMES.confidence,
    ...(result.region ? [CASE_FILE_NAMES.region] : []),
    ...(result.image.meta.dicom ? [CASE_FILE_NAMES.seg] : []),
    CASE_FILE_NAMES.report,
  ];
}

/** One of the case folder's map files (mask, confidence or region NIfTI, or the DICOM SEG), as alhvr-segment writes it. */
export function caseMapFile(name: string, maps: CaseMaps, identity: ModelIdentity): Uint8Array {
  const card = identity.card;
  const nifti = (vol: Volume<VoxelArray>, datatype: 'uint8' | 'float32', what: string) => encodeNifti(vol, { datatype, description: `alhvr ${what} ${card.name}` });
  switch (name) {
    case CASE_FILE_NAMES.mask:
      return nifti(maps.label, 'uint8', 'mask');
    case CASE_FILE_NAMES.confidence:
      return nifti(maps.confidence, 'float32', 'confidence');
    case CASE_FILE_NAMES.region:
      if (!maps.region) throw new Error('this segmentation has no region map (the model has one student)');
      return nifti(maps.region, 'uint8', 'region');
    case CASE_FILE_NAMES.seg: {
      const classes = card.classes.filter((c) => c.value !== 0).map((c) => ({ value: c.value, name: c.name, color: c.color }));
      return encodeDicomSeg(maps.label, classes, modelSegOptions(identity));
    }
    default:
      throw new Error(`${name} is not a map file of a case folder`);
  }
}

/** The case folder's report.json bytes (the CLI's CaseReport, pretty-printed, with a final newline). */
export function caseReportFile(result: SegmentNiftiResult, identity: ModelIdentity, device: BrowserDevice, input: string): Uint8Array {
  const t = result.timings;
  const report = caseReport(result, identity, device, input, { preprocess: t.preprocessMs, inference: t.inferenceMs, postprocess: t.postprocessMs });
  return new TextEncoder().encode(`${JSON.stringify(report, null, 2)}\n`);
}

/**
 * Every file of the case folder, by name (bytes as alhvr-segment would write them, up to gzip
 * framing and DICOM UIDs), made at once. The viewer's worker makes the same files one by one
 * (caseReportFile with the result, caseMapFile afterwards) so that the page need not wait for them.
 */
export function caseFiles(result: SegmentNiftiResult, identity: ModelIdentity, device: BrowserDevice, input: string): Record<string, Uint8Array> {
  const files: Record<string, Uint8Array> = {};
  for (const name of caseFileNames(result)) {
    files[name] = name === CASE_FILE_NAMES.report ? caseReportFile(result, identity, device, input) : caseMapFile(name, result, identity);
  }
  return files;
}
