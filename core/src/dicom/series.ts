import { InputError } from '../errors.js';
import { type Mat4, type Vec3, isFiniteMat4 } from '../geometry/affine.js';
import { type DicomSeriesMeta, type DicomSliceRef, type Dims3, type VoxelArray, Volume } from '../volume.js';
import { type DicomFrameInfo, type DicomInstance, type Orientation6, type StoredFrame, parseDicomInstance } from './instance.js';

/** Instances that share a SeriesInstanceUID and one frame geometry: what becomes one volume. */
export interface DicomSeriesGroup {
  /** SeriesInstanceUID, suffixed `#2`, `#3`… when one UID holds several geometries. */
  id: string;
  seriesInstanceUID: string;
  instances: DicomInstance[];
  warnings: string[];
}

export interface DicomSeriesSummary {
  /** What `seriesUID` must be to select this series (the UID unless the UID was split). */
  id: string;
  seriesInstanceUID: string;
  modality?: string;
  description?: string;
  number?: string;
  files: string[];
  transferSyntaxUIDs: string[];
  /** Columns, rows, slices (frames summed over instances). */
  dims: Dims3;
  warnings: string[];
}

export interface AssembleOptions {
  /** File or folder reported in Volume.meta.path. */
  path?: string;
  /** Uneven slice spacing becomes an InputError instead of a warning. */
  strict?: boolean;
}

// Direction cosines and spacings are compared after rounding so float noise in the text values
// does not split a series, while a real change of geometry does.
const round = (v: number, step: number) => Math.round(v / step) * step;

function geometryKey(inst: DicomInstance): string {
  const f = inst.frames[0];
  const iop = f.imageOrientationPatient?.map((v) => round(v, 1e-3).toFixed(3)).join(',') ?? 'none';
  const ps = f.pixelSpacing?.map((v) => round(v, 1e-4).toFixed(4)).join(',') ?? 'none';
  return `${inst.layout.rows}x${inst.layout.columns}|${iop}|${ps}`;
}

function describeGeometry(key: string): string {
  const [size, iop, ps] = key.split('|');
  return `${size.replace('x', ' rows × ')} columns, orientation ${iop}, spacing ${ps}`;
}

/** Groups instances by SeriesInstanceUID and geometry; a UID with two geometries yields two groups. */
export function groupDicomInstances(instances: DicomInstance[]): DicomSeriesGroup[] {
  const byUid = new Map<string, Map<string, DicomInstance[]>>();
  for (const inst of instances) {
    let geo = byUid.get(inst.seriesInstanceUID);
    if (!geo) byUid.set(inst.seriesInstanceUID, (geo = new Map()));
    const key = geometryKey(inst);
    const list = geo.get(key);
    if (list) list.push(inst);
    else geo.set(key, [inst]);
  }
  const groups: DicomSeriesGroup[] = [];
  for (const [uid, geo] of byUid) {
    // The largest geometry keeps the plain UID, so selecting by UID gets the main stack.
    const entries = [...geo.entries()].sort((a, b) => b[1].length - a[1].length);
    entries.forEach(([key, list], n) => {
      const warnings: string[] = [];
      if (entries.length > 1) {
        warnings.push(
          `series ${uid} mixes ${entries.length} image geometries; split into separate volumes ` +
            `(this one: ${list.length} instance(s), ${describeGeometry(key)})`,
        );
      }
      groups.push({ id: n === 0 ? uid : `${uid}#${n + 1}`, seriesInstanceUID: uid, instances: list, warnings });
    });
  }
  return groups;
}

export function summarizeDicomGroup(group: DicomSeriesGroup): DicomSeriesSummary {
  const first = group.instances[0];
  const files = [...new Set(group.instances.map((i) => i.file ?? i.sopInstanceUID))];
  const frames = group.instances.reduce((n, i) => n + i.numberOfFrames, 0);
  return {
    id: group.id,
    seriesInstanceUID: group.seriesInstanceUID,
    modality: first.modality,
    description: first.seriesDescription,
    number: first.seriesNumber,
    files,
    transferSyntaxUIDs: [...new Set(group.instances.map((i) => i.transferSyntaxUID))],
    dims: [first.layout.columns, first.layout.rows, frames],
    warnings: [...group.warnings],
  };
}

function listSeries(groups: DicomSeriesGroup[]): string {
  return groups
    .map((g) => {
      const s = summarizeDicomGroup(g);
      return `${s.id} (${s.modality ?? '?'} #${s.number ?? '?'} "${s.description ?? ''}", ${s.dims.join('×')})`;
    })
    .join('; ');
}

/** The one group to read: the only one, or the one whose id or UID is `seriesUID`. */
export function selectDicomGroup(groups: DicomSeriesGroup[], seriesUID: string | undefined, where: string): DicomSeriesGroup {
  if (groups.length === 0) throw new InputError('no DICOM image series found', where);
  if (seriesUID !== undefined) {
    const hit = groups.find((g) => g.id === seriesUID) ?? groups.find((g) => g.seriesInstanceUID === seriesUID);
    if (!hit) throw new InputError(`series ${seriesUID} not found; available: ${listSeries(groups)}`, where);
    return hit;
  }
  if (groups.length > 1) {
    throw new InputError(`${groups.length} series found, choose one by series UID: ${listSeries(groups)}`, where);
  }
  return groups[0];
}

interface Slice {
  inst: DicomInstance;
  frame: number;
  info: DicomFrameInfo;
  position: number;
}

const dot = (a: Vec3, b: Vec3) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const cross = (a: Vec3, b: Vec3): Vec3 => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
const where = (s: Slice) => `${s.inst.file ?? s.inst.sopInstanceUID}${s.inst.numberOfFrames > 1 ? ` frame ${s.frame + 1}` : ''}`;
const fmt = (v: number) => Number(v.toFixed(4)).toString();

function sameOrientation(a: Orientation6, b: Orientation6): boolean {
  return a.every((v, n) => Math.abs(v - b[n]) < 1e-3);
}

function framesEqual(a: StoredFrame, b: StoredFrame): boolean {
  if (a.length !== b.length) return false;
  for (let n = 0; n < a.length; n++) if (a[n] !== b[n]) return false;
  return true;
}

/** Output type: stored type when every slice maps stored values 1:1, else Float32. */
function outputKind(slices: Slice[]): { float: boolean; sourceDatatype: string } {
  const l = slices[0].inst.layout;
  const sourceDatatype = `${l.pixelRepresentation === 1 ? 'int' : 'uint'}${l.bitsAllocated}`;
  const mixedLayout = slices.some(
    (s) => s.inst.layout.bitsAllocated !== l.bitsAllocated || s.inst.layout.pixelRepresentation !== l.pixelRepresentation,
  );
  const rescaled = slices.some((s) => s.info.rescaleSlope !== 1 || s.info.rescaleIntercept !== 0);
  return { float: mixedLayout || rescaled, sourceDatatype };
}

function allocate(float: boolean, sourceDatatype: string, n: number): VoxelArray {
  if (float) return new Float32Array(n);
  switch (sourceDatatype) {
    case 'uint8':
      return new Uint8Array(n);
    case 'int8':
      return new Int8Array(n);
    case 'uint16':
      return new Uint16Array(n);
    case 'int16':
      return new Int16Array(n);
    case 'uint32':
      return new Uint32Array(n);
    default:
      return new Int32Array(n);
  }
}

/** MONOCHROME1 stores bright as low: flip within the BitsStored range so higher means brighter. */
function inversionSum(inst: DicomInstance): number | undefined {
  if (inst.layout.photometricInterpretation !== 'MONOCHROME1') return undefined;
  const bs = inst.layout.bitsStored;
  return inst.layout.pixelRepresentation === 1 ? -1 : 2 ** bs - 1;
}

/** Sorts slices along the normal; falls back to instance order when no slice has a position. */
function orderSlices(slices: Slice[], warnings: string[], where0: string): { normal?: Vec3; iop?: Orientation6 } {
  const withPos = slices.filter((s) => s.info.imagePositionPatient && s.info.imageOrientationPatient);
  if (withPos.length === 0) {
    warnings.push('no ImagePositionPatient/ImageOrientationPatient: slices stacked in instance/frame order, orientation assumed axial');
    slices.sort((a, b) => (a.inst.instanceNumber ?? 0) - (b.inst.instanceNumber ?? 0) || a.frame - b.frame);
    slices.forEach((s, k) => (s.position = k));
    return {};
  }
  if (withPos.length !== slices.length) {
    const bad = slices.find((s) => !s.info.imagePositionPatient || !s.info.imageOrientationPatient)!;
    throw new InputError(`${where(bad)} has no ImagePositionPatient/ImageOrientationPatient while other slices do`, where0);
  }
  const iop = slices[0].info.imageOrientationPatient!;
  for (const s of slices) {
    if (!sameOrientation(iop, s.info.imageOrientationPatient!)) {
      throw new InputError(
        `inconsistent ImageOrientationPatient: ${where(slices[0])} has ${iop.join('\\')}, ` +
          `${where(s)} has ${s.info.imageOrientationPatient!.join('\\')}`,
        where0,
      );
    }
  }
  const normal = cross([iop[0], iop[1], iop[2]], [iop[3], iop[4], iop[5]]);
  if (Math.hypot(...normal) < 0.5) throw new InputError(`degenerate ImageOrientationPatient ${iop.join('\\')}`, where0);
  for (const s of slices) s.position = dot(s.info.imagePositionPatient!, normal);
  slices.sort((a, b) => a.position - b.position || (a.inst.instanceNumber ?? 0) - (b.inst.instanceNumber ?? 0) || a.frame - b.frame);
  return { normal, iop };
}

/** Drops same-position slices whose pixels match; different pixels at one position are an error. */
async function removeDuplicates(slices: Slice[], warnings: string[], where0: string): Promise<Slice[]> {
  const kept: Slice[] = [];
  for (const s of slices) {
    const prev = kept[kept.length - 1];
    if (!prev || Math.abs(s.position - prev.position) > 0.01) {
      kept.push(s);
      continue;
    }
    const [a, b] = await Promise.all([prev.inst.decodeFrame(prev.frame), s.inst.decodeFrame(s.frame)]);
    const sameRescale = prev.info.rescaleSlope === s.info.rescaleSlope && prev.info.rescaleIntercept === s.info.rescaleIntercept;
    if (!sameRescale || !framesEqual(a, b)) {
      throw new InputError(
        `two different images at the same slice position ${fmt(s.position)} mm: ${where(prev)} and ${where(s)}`,
        where0,
      );
    }
    warnings.push(`duplicate slice at position ${fmt(s.position)} mm: ${where(s)} has the same pixels as ${where(prev)}; kept one`);
  }
  return kept;
}

function median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/** Refuses gaps (missing slices) and reports uneven spacing between consecutive slices. */
function checkSpacing(slices: Slice[], warnings: string[], where0: string, strict: boolean): void {
  if (slices.length < 3) return;
  const steps = slices.slice(1).map((s, k) => s.position - slices[k].position);
  const step = median(steps);
  const tol = Math.max(0.01, 0.01 * step);
  const missing: string[] = [];
  const uneven: string[] = [];
  steps.forEach((d, k) => {
    if (Math.abs(d - step) <= tol) return;
    const ratio = d / step;
    const n = Math.round(ratio);
    const between = `${fmt(slices[k].position)} → ${fmt(slices[k + 1].position)} mm`;
    if (n >= 2 && Math.abs(d - n * step) <= Math.max(tol, 0.1 * step)) {
      missing.push(`${n - 1} slice(s) missing between ${where(slices[k])} and ${where(slices[k + 1])} (${between})`);
    } else {
      uneven.push(`${between} (step ${fmt(d)})`);
    }
  });
  if (missing.length > 0) {
    throw new InputError(`missing slices (median step ${fmt(step)} mm): ${missing.join('; ')}`, where0);
  }
  if (uneven.length > 0) {
    const msg = `uneven slice spacing (median step ${fmt(step)} mm): ${uneven.join('; ')}`;
    if (strict) throw new InputError(msg, where0);
    warnings.push(msg);
  }
}

/**
 * Assembles one volume from the instances of one group (see groupDicomInstances): orders slices
 * along the normal, checks for gaps, duplicates and uneven spacing, decodes every frame, applies
 * per-slice rescale and MONOCHROME1 inversion, and derives the voxel→RAS affine.
 */
export async function assembleDicomVolume(instances: DicomInstance[], opts: AssembleOptions = {}): Promise<Volume> {
  const where0 = opts.path ?? instances[0]?.file ?? 'DICOM series';
  if (instances.length === 0) throw new InputError('no DICOM instances to assemble', opts.path);
  const groups = groupDicomInstances(instances);
  if (groups.length > 1) throw new InputError(`instances form several series: ${listSeries(groups)}`, where0);
  const warnings = [...groups[0].warnings];
  const first = instances[0];
  const { rows, columns } = first.layout;

  let slices: Slice[] = instances.flatMap((inst) => inst.frames.map((info, frame) => ({ inst, frame, info, position: 0 })));
  const { normal, iop } = orderSlices(slices, warnings, where0);
  if (normal) {
    slices = await removeDuplicates(slices, warnings, where0);
    checkSpacing(slices, warnings, where0, opts.strict ?? false);
  }

  const nz = slices.length;
  const info0 = slices[0].info;
  let pixelSpacing = info0.pixelSpacing;
  if (!pixelSpacing || !(pixelSpacing[0] > 0 && pixelSpacing[1] > 0)) {
    warnings.push('no valid PixelSpacing: 1 mm assumed');
    pixelSpacing = [1, 1];
  }
  const orient: Orientation6 = iop ?? [1, 0, 0, 0, 1, 0];
  const rowDir: Vec3 = [orient[0], orient[1], orient[2]];
  const colDir: Vec3 = [orient[3], orient[4], orient[5]];
  const origin: Vec3 = info0.imagePositionPatient ?? [0, 0, 0];
  let kStep: Vec3;
  if (nz > 1 && normal) {
    const last = slices[nz - 1].info.imagePositionPatient!;
    kStep = [0, 1, 2].map((a) => (last[a] - origin[a]) / (nz - 1)) as Vec3;
  } else {
    const stated = info0.spacingBetweenSlices ?? info0.sliceThickness;
    const spacing = stated !== undefined && stated > 0 ? stated : 1;
    if (!(stated !== undefined && stated > 0)) warnings.push('slice spacing unknown (no SpacingBetweenSlices/SliceThickness): 1 mm assumed');
    const n = normal ?? cross(rowDir, colDir);
    const len = Math.hypot(n[0], n[1], n[2]);
    kStep = [(n[0] / len) * spacing, (n[1] / len) * spacing, (n[2] / len) * spacing];
  }
  // PixelSpacing[1] is the distance between columns, i.e. the step along a row (index i).
  const lps: Mat4 = [
    [rowDir[0] * pixelSpacing[1], colDir[0] * pixelSpacing[0], kStep[0], origin[0]],
    [rowDir[1] * pixelSpacing[1], colDir[1] * pixelSpacing[0], kStep[1], origin[1]],
    [rowDir[2] * pixelSpacing[1], colDir[2] * pixelSpacing[0], kStep[2], origin[2]],
    [0, 0, 0, 1],
  ];
  const affine = lps.map((row, r) => (r < 2 ? row.map((v) => -v) : row));
  if (!isFiniteMat4(affine)) throw new InputError('geometry attributes give a non-finite affine', where0);

  const { float, sourceDatatype } = outputKind(slices);
  const plane = rows * columns;
  const data = allocate(float, sourceDatatype, plane * nz);
  for (let k = 0; k < nz; k++) {
    const s = slices[k];
    const stored = await s.inst.decodeFrame(s.frame);
    if (stored.length !== plane) throw new InputError(`${where(s)} decoded to ${stored.length} values, expected ${plane}`, where0);
    const inv = inversionSum(s.inst);
    const { rescaleSlope: m, rescaleIntercept: b } = s.info;
    const off = k * plane;
    if (inv === undefined && !float) {
      data.set(stored, off);
    } else {
      for (let p = 0; p < plane; p++) {
        const v = inv === undefined ? stored[p] : inv - stored[p];
        data[off + p] = float ? v * m + b : v;
      }
    }
  }
  if (first.layout.photometricInterpretation === 'MONOCHROME1') warnings.push('MONOCHROME1 image inverted so that higher values are brighter');

  const sliceRefs: DicomSliceRef[] = slices.map((s) => {
    const ref: DicomSliceRef = {
      sopClassUID: s.inst.sopClassUID,
      sopInstanceUID: s.inst.sopInstanceUID,
      imagePositionPatient: s.info.imagePositionPatient ?? [0, 0, 0],
    };
    if (s.inst.numberOfFrames > 1) ref.frameNumber = s.frame + 1;
    if (s.inst.file !== undefined) ref.file = s.inst.file;
    return ref;
  });
  const dicom: DicomSeriesMeta = {
    patientStudy: { ...first.patientStudy },
    seriesInstanceUID: first.seriesInstanceUID,
    seriesNumber: first.seriesNumber,
    seriesDescription: first.seriesDescription,
    modality: first.modality,
    bodyPartExamined: first.bodyPartExamined,
    frameOfReferenceUID: first.frameOfReferenceUID,
    manufacturer: first.manufacturer,
    imageOrientationPatient: [...orient] as Orientation6,
    pixelSpacing: [pixelSpacing[0], pixelSpacing[1]],
    slices: sliceRefs,
    transferSyntaxUIDs: [...new Set(slices.map((s) => s.inst.transferSyntaxUID))],
    fileCount: new Set(slices.map((s) => s.inst.file ?? s.inst.sopInstanceUID)).size,
  };
  return new Volume({
    data,
    dims: [columns, rows, nz],
    affine,
    meta: {
      kind: 'dicom-series',
      path: opts.path,
      sourceDatatype,
      description: first.seriesDescription,
      warnings,
      dicom,
    },
  });
}

export interface DicomBytesFile {
  name: string;
  bytes: Uint8Array;
}

/** Parses in-memory files (e.g. a browser folder drop), skipping non-DICOM ones, and assembles one series. */
export async function readDicomSeriesFromBytes(
  files: DicomBytesFile[],
  opts: AssembleOptions & { seriesUID?: string } = {},
): Promise<Volume> {
  const instances: DicomInstance[] = [];
  const skipped: string[] = [];
  for (const f of files) {
    try {
      instances.push(parseDicomInstance(f.bytes, f.name));
    } catch (e) {
      if (!(e instanceof InputError)) throw e;
      skipped.push(e.message);
    }
  }
  const where0 = opts.path ?? 'DICOM files';
  if (instances.length === 0) {
    throw new InputError(`no readable DICOM image among ${files.length} file(s)${skipped.length ? `: ${skipped[0]}` : ''}`, where0);
  }
  const group = selectDicomGroup(groupDicomInstances(instances), opts.seriesUID, where0);
  const vol = await assembleDicomVolume(group.instances, opts);
  if (skipped.length > 0) vol.meta.warnings.push(`${skipped.length} file(s) skipped: ${skipped.slice(0, 5).join('; ')}`);
  return vol;
}
