import dicomParser from 'dicom-parser';
import { inflateSync } from 'fflate';
import { InputError } from '../errors.js';
import type { Vec3 } from '../geometry/affine.js';
import type { DicomPatientStudy } from '../volume.js';
import {
  type FrameLayout,
  decodeCompressedFrame,
  isNativeTransferSyntax,
  isSupportedTransferSyntax,
  unsupportedTransferSyntax,
} from './codecs.js';

type DataSet = dicomParser.DataSet;

export type Orientation6 = [number, number, number, number, number, number];

/** Geometry and value transform of one frame (a single-frame instance has one). */
export interface DicomFrameInfo {
  imagePositionPatient?: Vec3;
  imageOrientationPatient?: Orientation6;
  /** [between rows, between columns] mm, as stored. */
  pixelSpacing?: [number, number];
  sliceThickness?: number;
  spacingBetweenSlices?: number;
  rescaleSlope: number;
  rescaleIntercept: number;
}

/** Stored sample values of one frame after BitsStored masking and sign extension. */
export type StoredFrame = Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array;

export interface DicomInstance {
  file?: string;
  transferSyntaxUID: string;
  sopClassUID: string;
  sopInstanceUID: string;
  seriesInstanceUID: string;
  seriesNumber?: string;
  seriesDescription?: string;
  modality?: string;
  bodyPartExamined?: string;
  frameOfReferenceUID?: string;
  manufacturer?: string;
  instanceNumber?: number;
  patientStudy: DicomPatientStudy;
  layout: FrameLayout;
  highBit: number;
  numberOfFrames: number;
  /** One entry per frame, shared and per-frame functional groups already merged. */
  frames: DicomFrameInfo[];
  /** False when only the header was read (scanning): decodeFrame then refuses. */
  hasPixelData: boolean;
  /** Decodes frame `index` (0-based) to stored values; each call decodes anew. */
  decodeFrame(index: number): Promise<StoredFrame>;
}

export interface ParseDicomOptions {
  /** Stop before the pixel data: fast, but the instance cannot decode frames. */
  headerOnly?: boolean;
  /**
   * With headerOnly: `bytes` is only the start of the file, so fail unless parsing reached the
   * PixelData tag (otherwise header elements past the cut could be silently missing).
   */
  prefixOnly?: boolean;
}

const IMPLICIT_LE = '1.2.840.10008.1.2';
const UID_RE = /^[0-9]+(\.[0-9]+)*$/;

function describe(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (typeof e === 'string') return e;
  // dicom-parser throws plain objects like { exception: "...", dataSet }.
  if (typeof e === 'object' && e !== null && typeof (e as { exception?: unknown }).exception === 'string') return (e as { exception: string }).exception;
  return String(e);
}

// Deflated syntaxes carry a raw (headerless) deflate stream after the file meta group.
function inflater(bytes: Uint8Array, position: number): Uint8Array {
  const inflated = inflateSync(bytes.subarray(position));
  const full = new Uint8Array(position + inflated.length);
  full.set(bytes.subarray(0, position));
  full.set(inflated, position);
  return full;
}

function hasPart10Preamble(bytes: Uint8Array): boolean {
  return bytes.length >= 132 && bytes[128] === 0x44 && bytes[129] === 0x49 && bytes[130] === 0x43 && bytes[131] === 0x4d;
}

function parseDataSet(bytes: Uint8Array, file: string | undefined, headerOnly: boolean): DataSet {
  const untilTag = headerOnly ? 'x7fe00010' : undefined;
  const opts = { untilTag, inflater } as unknown as dicomParser.ParseDicomOptions;
  if (hasPart10Preamble(bytes)) {
    try {
      return dicomParser.parseDicom(bytes, opts);
    } catch (e) {
      throw new InputError(`not a readable DICOM file: ${describe(e)}`, file);
    }
  }
  // Files without the Part-10 preamble exist (old exports); accept them only if they parse as an
  // implicit-VR dataset that names an image, otherwise random bytes would pass as DICOM.
  let ds: DataSet;
  try {
    ds = dicomParser.parseDicom(bytes, { ...opts, TransferSyntaxUID: IMPLICIT_LE } as dicomParser.ParseDicomOptions);
  } catch {
    throw new InputError('not a DICOM file (no DICM preamble and not a parseable dataset)', file);
  }
  const sop = ds.string('x00080018');
  const series = ds.string('x0020000e');
  if (!sop || !series || !UID_RE.test(sop) || !UID_RE.test(series)) {
    throw new InputError('not a DICOM file (no DICM preamble and no SOP/series UIDs)', file);
  }
  return ds;
}

function num(ds: DataSet, tag: string, index = 0): number | undefined {
  const s = ds.string(tag, index);
  if (s === undefined || s.trim() === '') return undefined;
  const v = Number(s);
  return Number.isFinite(v) ? v : undefined;
}

function nums(ds: DataSet, tag: string, count: number): number[] | undefined {
  const el = ds.elements[tag];
  if (!el) return undefined;
  const text = dicomParser.readFixedString(ds.byteArray, el.dataOffset, el.length);
  const parts = text.split('\\').map((p) => Number(p.trim()));
  if (parts.length < count || parts.slice(0, count).some((v) => !Number.isFinite(v))) return undefined;
  return parts.slice(0, count);
}

function us(ds: DataSet, tag: string): number | undefined {
  const el = ds.elements[tag];
  if (!el || el.length < 2) return undefined;
  return ds.uint16(tag);
}

function str(ds: DataSet, tag: string): string | undefined {
  const s = ds.string(tag);
  return s === undefined || s === '' ? undefined : s;
}

/** Geometry attributes that live in classic headers or inside functional-group items alike. */
function readFrameAttributes(ds: DataSet, into: Partial<DicomFrameInfo>): void {
  const ipp = nums(ds, 'x00200032', 3);
  if (ipp) into.imagePositionPatient = ipp as Vec3;
  const iop = nums(ds, 'x00200037', 6);
  if (iop) into.imageOrientationPatient = iop as Orientation6;
  const ps = nums(ds, 'x00280030', 2);
  if (ps) into.pixelSpacing = ps as [number, number];
  const st = num(ds, 'x00180050');
  if (st !== undefined) into.sliceThickness = st;
  const sbs = num(ds, 'x00180088');
  if (sbs !== undefined) into.spacingBetweenSlices = sbs;
  const slope = num(ds, 'x00281053');
  if (slope !== undefined) into.rescaleSlope = slope;
  const intercept = num(ds, 'x00281052');
  if (intercept !== undefined) into.rescaleIntercept = intercept;
}

/** Reads the macros of one functional-group item (shared or per-frame). */
function readFunctionalGroup(item: DataSet, into: Partial<DicomFrameInfo>): void {
  for (const seqTag of ['x00209113', 'x00209116', 'x00289110', 'x00289145']) {
    const inner = item.elements[seqTag]?.items?.[0]?.dataSet;
    if (inner) readFrameAttributes(inner, into);
  }
}

const MAX_FRAMES = 100_000;

function readFrames(ds: DataSet, numberOfFrames: number, file?: string): DicomFrameInfo[] {
  const base: Partial<DicomFrameInfo> = {};
  readFrameAttributes(ds, base);
  const shared = ds.elements.x52009229?.items?.[0]?.dataSet;
  if (shared) readFunctionalGroup(shared, base);
  const perFrame = ds.elements.x52009230?.items;
  if (perFrame && perFrame.length !== numberOfFrames) {
    throw new InputError(
      `PerFrameFunctionalGroupsSequence has ${perFrame.length} items but NumberOfFrames is ${numberOfFrames}`,
      file,
    );
  }
  const frames: DicomFrameInfo[] = [];
  for (let f = 0; f < numberOfFrames; f++) {
    const info: Partial<DicomFrameInfo> = { ...base };
    const item = perFrame?.[f]?.dataSet;
    if (item) readFunctionalGroup(item, info);
    frames.push({ rescaleSlope: 1, rescaleIntercept: 0, ...info } as DicomFrameInfo);
  }
  return frames;
}

function readLayout(ds: DataSet, file?: string): { layout: FrameLayout; highBit: number } {
  const rows = us(ds, 'x00280010') ?? 0;
  const columns = us(ds, 'x00280011') ?? 0;
  const bitsAllocated = us(ds, 'x00280100') ?? 0;
  const bitsStored = us(ds, 'x00280101') ?? bitsAllocated;
  const highBit = us(ds, 'x00280102') ?? bitsStored - 1;
  const pixelRepresentation = us(ds, 'x00280103') ?? 0;
  const samplesPerPixel = us(ds, 'x00280002') ?? 1;
  const photometricInterpretation = (str(ds, 'x00280004') ?? 'MONOCHROME2').trim().toUpperCase();
  if (rows < 1 || columns < 1) throw new InputError(`missing or zero Rows/Columns (${rows}×${columns})`, file);
  if (![8, 16, 32].includes(bitsAllocated)) throw new InputError(`unsupported BitsAllocated ${bitsAllocated}`, file);
  if (bitsStored < 1 || bitsStored > bitsAllocated || highBit < bitsStored - 1 || highBit >= bitsAllocated) {
    throw new InputError(`inconsistent BitsStored ${bitsStored} / HighBit ${highBit} for BitsAllocated ${bitsAllocated}`, file);
  }
  if (pixelRepresentation !== 0 && pixelRepresentation !== 1) {
    throw new InputError(`invalid PixelRepresentation ${pixelRepresentation}`, file);
  }
  if (samplesPerPixel < 1 || samplesPerPixel > 4) throw new InputError(`invalid SamplesPerPixel ${samplesPerPixel}`, file);
  return {
    layout: { rows, columns, bitsAllocated, bitsStored, pixelRepresentation, samplesPerPixel, photometricInterpretation },
    highBit,
  };
}

/** Little-endian sample bytes → typed stored values, keeping only the BitsStored bits. */
export function storedValues(bytes: Uint8Array, layout: FrameLayout, highBit: number, bigEndian = false): StoredFrame {
  const { bitsAllocated, bitsStored, pixelRepresentation } = layout;
  const bps = bitsAllocated / 8;
  const n = bytes.length / bps;
  const signed = pixelRepresentation === 1;
  const aligned = new Uint8Array(bytes.length);
  if (bigEndian && bps > 1) {
    for (let p = 0; p < bytes.length; p += bps) for (let b = 0; b < bps; b++) aligned[p + b] = bytes[p + bps - 1 - b];
  } else {
    aligned.set(bytes);
  }
  const buf = aligned.buffer;
  const out: StoredFrame =
    bps === 1
      ? signed
        ? new Int8Array(buf, 0, n)
        : new Uint8Array(buf, 0, n)
      : bps === 2
        ? signed
          ? new Int16Array(buf, 0, n)
          : new Uint16Array(buf, 0, n)
        : signed
          ? new Int32Array(buf, 0, n)
          : new Uint32Array(buf, 0, n);
  const shift = highBit + 1 - bitsStored;
  if (bitsStored === bitsAllocated && shift === 0) return out;
  // Bits above HighBit may hold overlays or garbage; drop them, then sign-extend from BitsStored.
  const mask = bitsStored >= 32 ? 0xffffffff : (1 << bitsStored) - 1;
  const unsignedView =
    bps === 1 ? new Uint8Array(buf, 0, n) : bps === 2 ? new Uint16Array(buf, 0, n) : new Uint32Array(buf, 0, n);
  const ext = 32 - bitsStored;
  for (let p = 0; p < n; p++) {
    const v = (unsignedView[p] >>> shift) & mask;
    out[p] = signed ? (v << ext) >> ext : v;
  }
  return out;
}

function sampleBytes(layout: FrameLayout): number {
  return layout.rows * layout.columns * layout.samplesPerPixel * (layout.bitsAllocated / 8);
}

/** Encoded bytes of frame `index` from encapsulated pixel data. */
function encapsulatedFrame(
  ds: DataSet,
  el: dicomParser.Element,
  index: number,
  numberOfFrames: number,
  transferSyntaxUID: string,
): Uint8Array {
  const fragments = el.fragments ?? [];
  if (fragments.length === 0) throw new Error('encapsulated pixel data has no fragments');
  if (numberOfFrames === 1) return dicomParser.readEncapsulatedPixelDataFromFragments(ds, el, 0, fragments.length);
  const bot = el.basicOffsetTable ?? [];
  if (bot.length > 0) {
    if (bot.length !== numberOfFrames) throw new Error(`basic offset table has ${bot.length} entries for ${numberOfFrames} frames`);
    return dicomParser.readEncapsulatedImageFrame(ds, el, index);
  }
  if (fragments.length === numberOfFrames) return dicomParser.readEncapsulatedPixelDataFromFragments(ds, el, index, 1);
  if (transferSyntaxUID.startsWith('1.2.840.10008.1.2.4.5') || transferSyntaxUID.startsWith('1.2.840.10008.1.2.4.7')) {
    const table = dicomParser.createJPEGBasicOffsetTable(ds, el);
    if (table.length !== numberOfFrames) throw new Error(`found ${table.length} JPEG frames for ${numberOfFrames} frames`);
    return dicomParser.readEncapsulatedImageFrame(ds, el, index, table);
  }
  throw new Error(`${fragments.length} fragments for ${numberOfFrames} frames and no basic offset table`);
}

/**
 * Parses one DICOM file (Part 10, or a bare implicit-VR dataset) into an instance record. Throws
 * InputError for anything that is not a usable image: no pixel attributes, unsupported transfer
 * syntax, pixel data shorter than Rows×Columns×frames.
 */
export function parseDicomInstance(bytes: Uint8Array, file?: string, opts: ParseDicomOptions = {}): DicomInstance {
  try {
    return readInstance(bytes, file, opts);
  } catch (e) {
    if (e instanceof InputError) throw e;
    // dicom-parser reads element values lazily and throws plain strings/objects when an element
    // claims bytes past the end of a damaged file.
    throw new InputError(`corrupt DICOM file: ${describe(e)}`, file);
  }
}

function readInstance(bytes: Uint8Array, file: string | undefined, opts: ParseDicomOptions): DicomInstance {
  const headerOnly = opts.headerOnly ?? false;
  const ds = parseDataSet(bytes, file, headerOnly);
  const transferSyntaxUID = (str(ds, 'x00020010') ?? IMPLICIT_LE).replace(/\0/g, '').trim();
  const sopInstanceUID = str(ds, 'x00080018');
  const seriesInstanceUID = str(ds, 'x0020000e');
  if (!sopInstanceUID) throw new InputError('missing SOPInstanceUID', file);
  if (!seriesInstanceUID) throw new InputError('missing SeriesInstanceUID', file);
  if (!ds.elements.x00280010 || !ds.elements.x00280011) throw new InputError('not an image (no Rows/Columns)', file);
  if (!isSupportedTransferSyntax(transferSyntaxUID)) throw unsupportedTransferSyntax(transferSyntaxUID, file);
  const { layout, highBit } = readLayout(ds, file);
  const nf = num(ds, 'x00280008') ?? 1;
  if (!Number.isInteger(nf) || nf < 1 || nf > MAX_FRAMES) throw new InputError(`invalid NumberOfFrames ${nf}`, file);
  const frames = readFrames(ds, nf, file);
  const frameBytes = sampleBytes(layout);
  if (frameBytes * nf > 2 ** 31) {
    throw new InputError(`image too large: ${layout.columns}×${layout.rows}×${nf} frames of ${layout.bitsAllocated} bits`, file);
  }

  const pixelEl = ds.elements.x7fe00010;
  if (opts.prefixOnly && !pixelEl) throw new InputError('header extends past the bytes read', file);
  const hasPixelData = !headerOnly && pixelEl !== undefined;
  if (!headerOnly) {
    if (!pixelEl) throw new InputError('no PixelData (7FE0,0010)', file);
    if (isNativeTransferSyntax(transferSyntaxUID)) {
      if (pixelEl.encapsulatedPixelData) throw new InputError('encapsulated pixel data in an uncompressed transfer syntax', file);
      if (pixelEl.length < frameBytes * nf || pixelEl.dataOffset + frameBytes * nf > ds.byteArray.length) {
        throw new InputError(
          `PixelData has ${Math.min(pixelEl.length, ds.byteArray.length - pixelEl.dataOffset)} bytes, ` +
            `${layout.columns}×${layout.rows}×${nf} frames × ${layout.samplesPerPixel} samples × ${layout.bitsAllocated / 8} bytes need ${frameBytes * nf}`,
          file,
        );
      }
    } else if (!pixelEl.encapsulatedPixelData) {
      throw new InputError('compressed transfer syntax but PixelData is not encapsulated', file);
    }
  }

  const str0 = (tag: string) => str(ds, tag);
  const patientStudy: DicomPatientStudy = {
    PatientName: str0('x00100010'),
    PatientID: str0('x00100020'),
    PatientBirthDate: str0('x00100030'),
    PatientSex: str0('x00100040'),
    StudyInstanceUID: str0('x0020000d') ?? '',
    StudyDate: str0('x00080020'),
    StudyTime: str0('x00080030'),
    StudyID: str0('x00200010'),
    AccessionNumber: str0('x00080050'),
    ReferringPhysicianName: str0('x00080090'),
    StudyDescription: str0('x00081030'),
  };
  for (const k of Object.keys(patientStudy) as (keyof DicomPatientStudy)[]) {
    if (patientStudy[k] === undefined) delete patientStudy[k];
  }
  const bigEndian = transferSyntaxUID === '1.2.840.10008.1.2.2';

  const decodeFrame = async (index: number): Promise<StoredFrame> => {
    if (!hasPixelData || !pixelEl) throw new InputError('pixel data was not read (header-only parse)', file);
    if (!Number.isInteger(index) || index < 0 || index >= nf) throw new RangeError(`frame ${index} out of range 0..${nf - 1}`);
    if (layout.samplesPerPixel !== 1) {
      throw new InputError(`colour images are not supported (SamplesPerPixel ${layout.samplesPerPixel}, ${layout.photometricInterpretation})`, file);
    }
    let sample: Uint8Array;
    if (isNativeTransferSyntax(transferSyntaxUID)) {
      const start = pixelEl.dataOffset + index * frameBytes;
      sample = ds.byteArray.subarray(start, start + frameBytes);
    } else {
      let encoded: Uint8Array;
      try {
        encoded = encapsulatedFrame(ds, pixelEl, index, nf, transferSyntaxUID);
      } catch (e) {
        throw new InputError(`cannot read encapsulated frame ${index + 1}: ${describe(e)}`, file);
      }
      sample = await decodeCompressedFrame(transferSyntaxUID, encoded, layout, file);
    }
    return storedValues(sample, layout, highBit, bigEndian);
  };

  return {
    file,
    transferSyntaxUID,
    sopClassUID: str0('x00080016') ?? '',
    sopInstanceUID,
    seriesInstanceUID,
    seriesNumber: str0('x00200011'),
    seriesDescription: str0('x0008103e'),
    modality: str0('x00080060'),
    bodyPartExamined: str0('x00180015'),
    frameOfReferenceUID: str0('x00200052'),
    manufacturer: str0('x00080070'),
    instanceNumber: num(ds, 'x00200013'),
    patientStudy,
    layout,
    highBit,
    numberOfFrames: nf,
    frames,
    hasPixelData,
    decodeFrame,
  };
}
