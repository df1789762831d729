/**
 * DICOM Segmentation reader: the counterpart of seg-write.ts, for label maps that come back from
 * a reviewer's tool (3D Slicer, OHIF, our own alhvr-segment) as a SEG instance. Decoding is split
 * from placing: `decodeDicomSeg` reads segments and frames as stored; `dicomSegToLabelVolume`
 * places them on a source series read by `readDicomSeries`, refusing (one line each) anything
 * that does not lie exactly on that series' grid, so a label is never silently shifted or
 * resampled. Frames may be uncompressed, deflated or RLE-compressed (`readDicomSeg`, which loads
 * the codec); BINARY (1-bit) and FRACTIONAL (8-bit, in the segment from half of
 * MaximumFractionalValue on) segmentations are read.
 */
import dcmjs from 'dcmjs';
import { InputError } from '../errors.js';
import { Volume, type VoxelArray } from '../volume.js';
import type { Vec3 } from '../geometry/affine.js';
import { SEGMENTATION_SOP_CLASS_UID } from './seg-write.js';
import { decodeCompressedFrame, isSupportedTransferSyntax, transferSyntaxName } from './codecs.js';

/** One segment of a SEG instance, as labelled by whoever wrote it. */
export interface DicomSegSegment {
  number: number;
  label: string;
}

/** One stored frame: which segment it belongs to, where it lies, and its pixels (1 = in the segment). */
export interface DicomSegFrame {
  segment: number;
  /** The source image it was derived from, when the frame names one. */
  sopInstanceUID?: string;
  frameNumber?: number;
  /** ImagePositionPatient of the frame, LPS mm. */
  position?: Vec3;
  /** rows × columns values, 0 or 1, row by row. */
  pixels: Uint8Array;
}

/** Who wrote a SEG, when, and on which series: what tells a reviewer's SEG from a model's on a PACS. */
export interface DicomSegIdentity {
  studyInstanceUID: string;
  seriesInstanceUID: string;
  sopInstanceUID: string;
  /** The series its frames were derived from (ReferencedSeriesSequence; else none). */
  referencedSeriesInstanceUIDs: string[];
  manufacturer: string;
  manufacturerModelName: string;
  seriesDescription: string;
  /** The first segment's AlgorithmParameters ('' when absent): alhvr-segment writes "model-sha256=<hash>". */
  algorithmParameters: string;
  /** SeriesDate + SeriesTime as written (YYYYMMDDHHMMSS.FFFFFF), falling back to ContentDate/Time, then InstanceCreationDate/Time; '' when none. */
  createdAt: string;
}

export interface DecodedDicomSeg {
  identity: DicomSegIdentity;
  rows: number;
  columns: number;
  frameOfReferenceUID?: string;
  imageOrientationPatient?: [number, number, number, number, number, number];
  segments: DicomSegSegment[];
  frames: DicomSegFrame[];
}

// Deflated Explicit VR Little Endian is native pixel data inside a deflated dataset.
const NATIVE_SYNTAXES = new Set(['1.2.840.10008.1.2', '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.1.99', '1.2.840.10008.1.2.2']);
const RLE_LOSSLESS = '1.2.840.10008.1.2.5';

// dcmjs gives a single-item sequence or value as the item itself, several as an array.
const asArray = <T>(v: T | T[] | undefined | null): T[] => (v === undefined || v === null ? [] : Array.isArray(v) ? v : [v]);

type Item = Record<string, unknown>;
const first = (item: Item | undefined, key: string): Item | undefined => asArray(item?.[key] as Item | Item[] | undefined)[0];
const numbers = (v: unknown): number[] => asArray(v as unknown).map(Number);

/** A SEG instance parsed up to its pixels; `encapsulated` frames still need their codec. */
interface ParsedSeg {
  ds: Item;
  syntax: string;
  encapsulated: boolean;
  rows: number;
  columns: number;
  count: number;
  bits: number;
  segments: DicomSegSegment[];
  where?: string;
}

function parseSeg(bytes: Uint8Array, where?: string): ParsedSeg {
  let file: { meta: Record<string, { Value?: unknown[] }>; dict: Record<string, unknown> };
  try {
    // dcmjs inflates a Deflated Explicit VR Little Endian dataset while reading it.
    file = dcmjs.data.DicomMessage.readFile(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
  } catch (err) {
    throw new InputError(`not a readable DICOM file (${(err as Error).message.split('\n')[0]})`, where);
  }
  const syntax = String(file.meta['00020010']?.Value?.[0] ?? '');
  const encapsulated = !NATIVE_SYNTAXES.has(syntax);
  if (encapsulated && !isSupportedTransferSyntax(syntax)) throw new InputError(`DICOM SEG in transfer syntax ${transferSyntaxName(syntax)} (${syntax || 'unknown'}) is not supported`, where);
  const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(file.dict) as Item;
  if (ds.SOPClassUID !== SEGMENTATION_SOP_CLASS_UID) throw new InputError(`not a DICOM Segmentation (SOP class ${String(ds.SOPClassUID ?? 'missing')})`, where);
  const rows = Number(ds.Rows);
  const columns = Number(ds.Columns);
  const count = Number(ds.NumberOfFrames ?? 1);
  const type = String(ds.SegmentationType ?? 'BINARY');
  const bits = Number(ds.BitsAllocated);
  if (!(rows > 0 && columns > 0 && count > 0)) throw new InputError(`DICOM SEG has no frames (${rows}×${columns}, ${count} frames)`, where);
  if (!((type === 'BINARY' && bits === 1) || (type === 'FRACTIONAL' && bits === 8))) {
    throw new InputError(`DICOM SEG of type ${type} with ${bits}-bit pixels is not supported (BINARY 1-bit or FRACTIONAL 8-bit)`, where);
  }
  // 1-bit frames compress as their packed bytes, which only a byte-stream codec (RLE) keeps intact.
  if (encapsulated && bits === 1 && syntax !== RLE_LOSSLESS) {
    throw new InputError(`BINARY DICOM SEG in ${transferSyntaxName(syntax)} is not supported (1-bit frames: uncompressed, deflated or RLE Lossless)`, where);
  }
  const segments = asArray(ds.SegmentSequence as Item | Item[]).map((s) => ({ number: Number(s.SegmentNumber), label: String(s.SegmentLabel ?? '').trim() }));
  if (segments.length === 0) throw new InputError('DICOM SEG has no segments', where);
  return { ds, syntax, encapsulated, rows, columns, count, bits, segments, where };
}

/**
 * Decode a DICOM SEG instance (Part-10 bytes) into its segments and frames: uncompressed or
 * deflated. A SEG with compressed frames (RLE Lossless) needs its codec, which loads
 * asynchronously: read those with `readDicomSeg`.
 */
export function decodeDicomSeg(bytes: Uint8Array, where?: string): DecodedDicomSeg {
  const parsed = parseSeg(bytes, where);
  if (parsed.encapsulated) throw new InputError(`DICOM SEG frames are compressed (${transferSyntaxName(parsed.syntax)}); read it with readDicomSeg`, where);
  const pixelData = asArray(parsed.ds.PixelData as ArrayBuffer | ArrayBuffer[])[0];
  if (!pixelData) throw new InputError('DICOM SEG has no pixel data', where);
  const packed = new Uint8Array(pixelData);
  const { rows, columns, count, bits } = parsed;
  const size = rows * columns;
  const needed = bits === 1 ? Math.ceil((count * size) / 8) : count * size;
  if (packed.length < needed) throw new InputError(`DICOM SEG pixel data holds ${packed.length} bytes, ${count} frames of ${rows}×${columns} need ${needed}`, where);
  // Native 1-bit frames are one continuous bit stream (no padding between frames).
  return assembleSeg(parsed, (f) => ({ bytes: packed, firstBit: f * size, offset: f * size }));
}

/**
 * Decode a DICOM SEG instance in any transfer syntax its frames may come in: uncompressed,
 * deflated, RLE Lossless (each 1-bit frame compressed as its own packed bytes, as PS3.5 §8.2
 * has it: frames start on a byte boundary), and for FRACTIONAL 8-bit frames any codec of
 * codecs.ts.
 */
export async function readDicomSeg(bytes: Uint8Array, where?: string): Promise<DecodedDicomSeg> {
  const parsed = parseSeg(bytes, where);
  if (!parsed.encapsulated) return decodeDicomSeg(bytes, where);
  const { rows, columns, count, bits, syntax } = parsed;
  const size = rows * columns;
  const encoded = asArray(parsed.ds.PixelData as ArrayBuffer | ArrayBuffer[]);
  if (encoded.length !== count) throw new InputError(`DICOM SEG holds ${encoded.length} compressed frames, NumberOfFrames says ${count}`, where);
  // A 1-bit frame is decoded as one row of its packed bytes; an 8-bit one as the image it is.
  const layout = bits === 1 ? { rows: 1, columns: Math.ceil(size / 8), bitsAllocated: 8, bitsStored: 8 } : { rows, columns, bitsAllocated: 8, bitsStored: 8 };
  const decoded: Uint8Array[] = [];
  for (const [f, frame] of encoded.entries()) {
    decoded.push(await decodeCompressedFrame(syntax, new Uint8Array(frame), { ...layout, pixelRepresentation: 0, samplesPerPixel: 1, photometricInterpretation: 'MONOCHROME2' }, where ? `${where} frame ${f + 1}` : `frame ${f + 1}`));
  }
  return assembleSeg(parsed, (f) => ({ bytes: decoded[f], firstBit: 0, offset: 0 }));
}

/** Frames, orientation and identity of a parsed SEG; `frameBytes(f)` says where frame f's pixels start. */
function assembleSeg(parsed: ParsedSeg, frameBytes: (f: number) => { bytes: Uint8Array; firstBit: number; offset: number }): DecodedDicomSeg {
  const { ds, rows, columns, count, bits, segments, where } = parsed;
  const size = rows * columns;
  // Fractional frames hold occupancy 0…MaximumFractionalValue: a voxel is in the segment from half on.
  const half = Number(ds.MaximumFractionalValue ?? 255) / 2;

  const shared = first(ds, 'SharedFunctionalGroupsSequence');
  const perFrame = asArray(ds.PerFrameFunctionalGroupsSequence as Item | Item[]);
  const orientationOf = (group: Item | undefined) => {
    const v = numbers(first(group, 'PlaneOrientationSequence')?.ImageOrientationPatient);
    return v.length === 6 ? (v as [number, number, number, number, number, number]) : undefined;
  };
  const orientation = orientationOf(shared) ?? orientationOf(perFrame[0]);
  const segmentOf = (group: Item | undefined) => first(group, 'SegmentIdentificationSequence')?.ReferencedSegmentNumber;
  const frames: DicomSegFrame[] = [];
  for (let f = 0; f < count; f++) {
    const group = perFrame[f];
    const segment = Number(segmentOf(group) ?? segmentOf(shared) ?? (segments.length === 1 ? segments[0].number : NaN));
    if (!segments.some((s) => s.number === segment)) throw new InputError(`DICOM SEG frame ${f + 1} names no known segment`, where);
    const frameOrientation = orientationOf(group);
    if (frameOrientation && orientation && frameOrientation.some((v, n) => Math.abs(v - orientation[n]) > 1e-4)) {
      throw new InputError(`DICOM SEG frame ${f + 1} has another orientation than frame 1`, where);
    }
    const source = first(first(group, 'DerivationImageSequence'), 'SourceImageSequence');
    const pos = numbers(first(group, 'PlanePositionSequence')?.ImagePositionPatient);
    const pixels = new Uint8Array(size);
    const { bytes: packed, firstBit, offset } = frameBytes(f);
    if (bits === 1) {
      for (let n = 0, bit = firstBit; n < size; n++, bit++) pixels[n] = (packed[bit >>> 3] >>> (bit & 7)) & 1;
    } else {
      for (let n = 0, o = offset; n < size; n++, o++) pixels[n] = packed[o] >= half && packed[o] > 0 ? 1 : 0;
    }
    frames.push({
      segment,
      ...(source?.ReferencedSOPInstanceUID ? { sopInstanceUID: String(source.ReferencedSOPInstanceUID) } : {}),
      ...(source?.ReferencedFrameNumber !== undefined ? { frameNumber: Number(source.ReferencedFrameNumber) } : {}),
      ...(pos.length === 3 ? { position: pos as Vec3 } : {}),
      pixels,
    });
  }
  const text = (v: unknown) => (v === undefined || v === null ? '' : String(v).trim());
  // Times may stop at hours or minutes (HH, HHMM): padded to HHMMSS so stamps compare as text.
  const stamp = (date: unknown, time: unknown) => {
    if (!/^\d{8}$/.test(text(date))) return '';
    const [hms, fraction] = text(time).split('.');
    return `${text(date)}${(hms ?? '').padEnd(6, '0')}${fraction ? `.${fraction}` : ''}`;
  };
  const identity: DicomSegIdentity = {
    studyInstanceUID: text(ds.StudyInstanceUID),
    seriesInstanceUID: text(ds.SeriesInstanceUID),
    sopInstanceUID: text(ds.SOPInstanceUID),
    referencedSeriesInstanceUIDs: asArray(ds.ReferencedSeriesSequence as Item | Item[]).map((r) => text(r.SeriesInstanceUID)).filter(Boolean),
    manufacturer: text(ds.Manufacturer),
    manufacturerModelName: text(ds.ManufacturerModelName),
    seriesDescription: text(ds.SeriesDescription),
    algorithmParameters: text(first(first(ds as Item, 'SegmentSequence'), 'SegmentationAlgorithmIdentificationSequence')?.AlgorithmParameters),
    createdAt: stamp(ds.SeriesDate, ds.SeriesTime) || stamp(ds.ContentDate, ds.ContentTime) || stamp(ds.InstanceCreationDate, ds.InstanceCreationTime),
  };
  return {
    identity,
    rows,
    columns,
    ...(ds.FrameOfReferenceUID ? { frameOfReferenceUID: String(ds.FrameOfReferenceUID) } : {}),
    ...(orientation ? { imageOrientationPatient: orientation } : {}),
    segments,
    frames,
  };
}

/** How close (mm) a frame's position must be to its source slice's: far below any slice spacing. */
const POSITION_TOLERANCE_MM = 0.01;

const normalise = (s: string) => s.trim().toLowerCase();

/**
 * Place a decoded SEG on the grid of `source` (a series read by readDicomSeries, which carries
 * `meta.dicom`): each segment becomes the value of the class whose name equals its label (case and
 * surrounding blanks ignored), each frame goes to the slice it references (or, lacking a
 * reference, the slice at its position). Refuses a SEG of another frame of reference, size or
 * orientation, a frame off the series' slices, a segment label that is not a class, and a voxel
 * claimed by two segments (a label map has one class per voxel).
 */
export function dicomSegToLabelVolume(
  seg: DecodedDicomSeg,
  source: Volume<VoxelArray>,
  classes: readonly { value: number; name: string }[],
  where?: string,
): Volume<Uint8Array> {
  const src = source.meta.dicom;
  if (!src) throw new InputError('the DICOM SEG needs a DICOM source series to lie on, and the source is not one', where);
  const [cols, rows, slices] = source.dims;
  if (seg.columns !== cols || seg.rows !== rows) {
    throw new InputError(`DICOM SEG frames are ${seg.columns}×${seg.rows} pixels, its source series' images ${cols}×${rows}`, where);
  }
  if (seg.frameOfReferenceUID && src.frameOfReferenceUID && seg.frameOfReferenceUID !== src.frameOfReferenceUID) {
    throw new InputError('DICOM SEG is in another frame of reference than its source series (FrameOfReferenceUID differs)', where);
  }
  if (seg.imageOrientationPatient && seg.imageOrientationPatient.some((v, n) => Math.abs(v - src.imageOrientationPatient[n]) > 1e-4)) {
    throw new InputError(`DICOM SEG orientation [${seg.imageOrientationPatient.join(', ')}] differs from its source series' [${src.imageOrientationPatient.join(', ')}]`, where);
  }

  const byName = new Map(classes.filter((c) => c.value !== 0).map((c) => [normalise(c.name), c.value]));
  const valueOf = new Map<number, number>();
  for (const s of seg.segments) {
    const value = byName.get(normalise(s.label));
    if (value === undefined) {
      throw new InputError(`DICOM SEG segment ${s.number} "${s.label}" is not one of the classes (${classes.filter((c) => c.value !== 0).map((c) => c.name).join(', ')})`, where);
    }
    valueOf.set(s.number, value);
  }

  const sliceOfRef = new Map(src.slices.map((s, k) => [`${s.sopInstanceUID}#${s.frameNumber ?? ''}`, k]));
  const size = cols * rows;
  const out = new Uint8Array(size * slices);
  seg.frames.forEach((frame, f) => {
    let k: number | undefined;
    if (frame.sopInstanceUID) {
      k = sliceOfRef.get(`${frame.sopInstanceUID}#${frame.frameNumber ?? ''}`) ?? sliceOfRef.get(`${frame.sopInstanceUID}#`);
      if (k === undefined) throw new InputError(`DICOM SEG frame ${f + 1} references image ${frame.sopInstanceUID}, which is not in its source series`, where);
    } else if (frame.position) {
      k = src.slices.findIndex((s) => s.imagePositionPatient.every((v, n) => Math.abs(v - frame.position![n]) <= POSITION_TOLERANCE_MM));
      if (k < 0) throw new InputError(`DICOM SEG frame ${f + 1} at [${frame.position.join(', ')}] lies on no slice of its source series`, where);
    } else {
      throw new InputError(`DICOM SEG frame ${f + 1} names neither its source image nor its position`, where);
    }
    const expected = src.slices[k].imagePositionPatient;
    if (frame.position && frame.position.some((v, n) => Math.abs(v - expected[n]) > POSITION_TOLERANCE_MM)) {
      throw new InputError(`DICOM SEG frame ${f + 1} lies at [${frame.position.join(', ')}], its source image at [${expected.join(', ')}]`, where);
    }
    const value = valueOf.get(frame.segment)!;
    const base = k * size;
    for (let n = 0; n < size; n++) {
      if (!frame.pixels[n]) continue;
      const had = out[base + n];
      if (had !== 0 && had !== value) {
        throw new InputError(`DICOM SEG segments overlap (slice ${k}, values ${had} and ${value}); a label map needs one class per voxel`, where);
      }
      out[base + n] = value;
    }
  });
  return new Volume({ data: out, dims: source.dims, affine: source.affine, meta: { ...source.meta, path: where ?? source.meta.path, warnings: [] } });
}
