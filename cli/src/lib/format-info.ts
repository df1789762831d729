import type { ImageInfo } from './image-info.js';
import type { SkippedFile } from './inputs.js';

/** Numbers as a person reads them: up to 6 significant digits, no float noise, no "-0". */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Object.is(v, -0) || Math.abs(v) < 1e-9) return '0';
  return String(Number(v.toPrecision(6)));
}

function row(label: string, value: string): string {
  return `  ${(label ? `${label}:` : '').padEnd(14)}${value}`;
}

function affineLines(affine: number[][]): string[] {
  const cells = affine.map((r) => r.map(formatNumber));
  const width = Math.max(...cells.flat().map((c) => c.length));
  return cells.map((r, n) => row(n === 0 ? 'affine' : '', `[ ${r.map((c) => c.padStart(width)).join('  ')} ]`));
}

/** The readable block `alhvr-info` prints for one image. */
export function formatImageInfo(info: ImageInfo): string {
  const lines = [info.path];
  if (info.kind === 'nifti' && info.nifti) {
    const n = info.nifti;
    const layout = n.layout === 'single' ? 'single file' : n.layout === 'pair' ? '.hdr/.img pair' : 'Analyze 7.5 .hdr/.img';
    lines.push(row('kind', `NIfTI-${n.version} (${layout}${n.gzip ? ', gzip' : ''})`));
    lines.push(row('dims', `${info.dims.join(' × ')}${n.volumes > 1 ? ` × ${n.volumes} volumes (file dims ${n.allDims.join(' × ')})` : ''}`));
  } else {
    lines.push(row('kind', 'DICOM series'));
    lines.push(row('series UID', info.seriesUID ?? '?'));
    if (info.seriesId && info.seriesId !== info.seriesUID) lines.push(row('series id', info.seriesId));
    lines.push(row('series', [info.seriesNumber ? `#${info.seriesNumber}` : '', info.seriesDescription ?? ''].filter(Boolean).join(' ') || '-'));
    lines.push(row('modality', info.modality ?? '-'));
    lines.push(row('files', String(info.fileCount ?? '?')));
    lines.push(row('transfer', (info.transferSyntaxes ?? []).map((t) => `${t.name} (${t.uid})`).join(', ') || '-'));
    lines.push(row('dims', info.dims.join(' × ')));
  }
  lines.push(row('spacing', `${info.spacing.map(formatNumber).join(' × ')} mm`));
  lines.push(...affineLines(info.affine));
  if (info.nifti) {
    const n = info.nifti;
    lines.push(row('orientation', `from ${n.affineSource} (sform code ${n.sformCode}, qform code ${n.qformCode})`));
  }
  const scaling = info.nifti && (info.nifti.sclSlope !== 0 && !(info.nifti.sclSlope === 1 && info.nifti.sclInter === 0))
    ? ` (scl_slope ${formatNumber(info.nifti.sclSlope)}, scl_inter ${formatNumber(info.nifti.sclInter)})`
    : '';
  lines.push(row('datatype', `${info.datatype}${scaling}`));
  lines.push(row('range', `${formatNumber(info.range[0])} … ${formatNumber(info.range[1])}`));
  if (info.nifti?.description) lines.push(row('description', info.nifti.description));
  info.warnings.forEach((w, n) => lines.push(row(n === 0 ? 'warnings' : '', w)));
  return lines.join('\n');
}

export function formatSkipped(skipped: SkippedFile[], verbose: boolean): string {
  if (skipped.length === 0) return '';
  const head = `skipped ${skipped.length} file(s) that are not NIfTI or DICOM images${verbose ? ':' : ' (--verbose lists them)'}`;
  return verbose ? [head, ...skipped.map((s) => `  ${s.path}: ${s.reason}`)].join('\n') : head;
}
