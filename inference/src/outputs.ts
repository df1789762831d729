import { join } from 'node:path';
import { InputError, type ModelCard, type Volume, type VoxelArray } from '@alhvr/core';
import { writeFileAtomic, writeDicomSegFile } from '@alhvr/core/node';
import { writeNiftiGzip } from './nifti-gzip-node.js';
import type { SegmentResult } from './pipeline.js';
import { modelSegOptions } from './seg-identity.js';
import { renderPreview, type PreviewAnnotation, type PreviewRasterizer } from './preview.js';
import type { CaseStats, Triage } from './report.js';

export type OutputFormat = 'nifti' | 'dicom-seg';
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['nifti', 'dicom-seg'];

/** File names inside a case folder. */
export const CASE_FILES = {
  mask: 'mask.nii.gz',
  confidence: 'confidence.nii.gz',
  region: 'region.nii.gz',
  probabilities: 'probabilities.nii.gz',
  seg: 'seg.dcm',
  preview: 'preview.png',
  report: 'report.json',
} as const;

export function parseFormats(value: string): Set<OutputFormat> {
  const formats = new Set<OutputFormat>();
  for (const part of value.split(',').map((s) => s.trim()).filter(Boolean)) {
    if (!(OUTPUT_FORMATS as readonly string[]).includes(part)) {
      throw new InputError(`--formats: unknown format "${part}" (known: ${OUTPUT_FORMATS.join(', ')})`);
    }
    formats.add(part as OutputFormat);
  }
  if (formats.size === 0) throw new InputError('--formats must name at least one format');
  return formats;
}

export interface CaseOutputOptions {
  formats: ReadonlySet<OutputFormat>;
  preview: boolean;
  /** sha256 of the model file: the SEG names it (seg-identity.ts). */
  modelHash: string;
}

/**
 * Write one case's outputs into `caseDir`, each file atomically. Returns the file names
 * written. DICOM SEG is written only for DICOM input (it must reference the source images).
 */
export async function writeCaseOutputs(
  caseDir: string,
  image: Volume<VoxelArray>,
  result: SegmentResult,
  card: ModelCard,
  opts: CaseOutputOptions,
): Promise<string[]> {
  const written: string[] = [];
  const describe = (what: string) => `alhvr ${what} ${card.name}`;
  if (opts.formats.has('nifti')) {
    await writeNiftiGzip(join(caseDir, CASE_FILES.mask), result.label, { datatype: 'uint8', description: describe('mask') });
    written.push(CASE_FILES.mask);
    await writeNiftiGzip(join(caseDir, CASE_FILES.confidence), result.confidence, { datatype: 'float32', description: describe('confidence') });
    written.push(CASE_FILES.confidence);
    if (result.region) {
      await writeNiftiGzip(join(caseDir, CASE_FILES.region), result.region, { datatype: 'uint8', description: describe('region') });
      written.push(CASE_FILES.region);
    }
  }
  if (result.probabilities) {
    await writeNiftiGzip(join(caseDir, CASE_FILES.probabilities), result.probabilities, {
      datatype: 'float32',
      description: describe('probabilities'),
    });
    written.push(CASE_FILES.probabilities);
  }
  if (opts.formats.has('dicom-seg') && image.meta.dicom) {
    const classes = card.classes.filter((c) => c.value !== 0).map((c) => ({ value: c.value, name: c.name, color: c.color }));
    await writeDicomSegFile(join(caseDir, CASE_FILES.seg), result.label, classes, modelSegOptions({ card, modelHash: opts.modelHash }));
    written.push(CASE_FILES.seg);
  }
  if (opts.preview) {
    await writeFileAtomic(join(caseDir, CASE_FILES.preview), renderPreview(image, result.label, result.region, card, result.orientation));
    written.push(CASE_FILES.preview);
  }
  return written;
}

/** What preview.png's header and missed-slice rule take from a case's assessment. */
export function previewAnnotation(caseId: string, stats: CaseStats, triage: Triage, predictedDice: number | null | undefined): PreviewAnnotation {
  const found = stats.foreground.voxels > 0;
  return {
    caseId,
    verdict: triage.verdict,
    reasons: triage.reasons,
    predictedDice,
    // A class with no voxel is a sign of something missed only when the case has foreground at all.
    absentClasses: found ? stats.classes.filter((c) => c.value !== 0 && c.voxels === 0).map((c) => c.name) : [],
  };
}

/**
 * Write preview.png once the case is assessed, so it can name its verdict; `rasterize` draws the
 * header, slice numbers and legend (without it the montage alone is written). Returns the file name.
 */
export async function writeCasePreview(
  caseDir: string,
  image: Volume<VoxelArray>,
  result: SegmentResult,
  card: ModelCard,
  annotation: PreviewAnnotation,
  rasterize?: PreviewRasterizer,
): Promise<string> {
  await writeFileAtomic(join(caseDir, CASE_FILES.preview), renderPreview(image, result.label, result.region, card, result.orientation, { annotation, rasterize }));
  return CASE_FILES.preview;
}
