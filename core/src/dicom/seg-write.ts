import type { DicomSeriesMeta, Volume } from '../volume.js';
import type { Vec3 } from '../geometry/affine.js';
import { InputError } from '../errors.js';
import { newUid } from './uid.js';
import { TOOLKIT_VERSION } from '../version.js';
import { writePart10 } from './part10-write.js';

/** A coded concept (DICOM Code Sequence item), e.g. SCT 10200004 "Liver". */
export interface CodedConcept {
  codeValue: string;
  codingSchemeDesignator: string;
  codeMeaning: string;
}

/** One label value of a label volume, written as one DICOM segment. */
export interface SegClass {
  /** Voxel value in the label volume (1–255). */
  value: number;
  name: string;
  /** sRGB display colour, 0–255 per channel. */
  color?: [number, number, number];
  /** Segmented Property Category; default from the name (see `defaultSegmentCodes`). */
  category?: CodedConcept;
  /** Segmented Property Type; default from the name. */
  type?: CodedConcept;
}

export interface DicomSegOptions {
  seriesDescription?: string;
  seriesNumber?: number;
  algorithmName?: string;
  algorithmVersion?: string;
  /**
   * AlgorithmParameters of every segment's algorithm item (free text; alhvr-segment writes
   * "model-sha256=<hash of the .onnx>", so a SEG on a PACS names the exact model that made it).
   */
  algorithmParameters?: string;
  manufacturer?: string;
  contentCreator?: string;
  /** Creation time written to ContentDate/Time, SeriesDate/Time and InstanceCreationDate/Time. */
  now?: Date;
  /** Registered UID root for the new UIDs; default UUID-derived "2.25.…" UIDs. */
  uidRoot?: string;
}

export const SEGMENTATION_SOP_CLASS_UID = '1.2.840.10008.5.1.4.1.1.66.4';

const sct = (codeValue: string, codeMeaning: string): CodedConcept => ({
  codeValue,
  codingSchemeDesignator: 'SCT',
  codeMeaning,
});
const dcm = (codeValue: string, codeMeaning: string): CodedConcept => ({
  codeValue,
  codingSchemeDesignator: 'DCM',
  codeMeaning,
});

// CID 7150's current code for "Anatomical Structure" (the older 123037004 is retired there).
const ANATOMICAL_STRUCTURE = sct('91723000', 'Anatomical Structure');
const TISSUE = sct('85756007', 'Tissue');

// Segmented Property Type codes for structure names this toolkit's models commonly produce
// (ACDC cardiac classes, abdominal organs). Keys are lower-case names with separators removed.
const KNOWN_STRUCTURES: Record<string, CodedConcept> = {
  lv: sct('87878005', 'Left ventricle'),
  leftventricle: sct('87878005', 'Left ventricle'),
  rv: sct('53085002', 'Right ventricle'),
  rightventricle: sct('53085002', 'Right ventricle'),
  myo: sct('74281007', 'Myocardium'),
  myocardium: sct('74281007', 'Myocardium'),
  la: sct('82471001', 'Left atrium'),
  leftatrium: sct('82471001', 'Left atrium'),
  liver: sct('10200004', 'Liver'),
  spleen: sct('78961009', 'Spleen'),
  kidney: sct('64033007', 'Kidney'),
  gallbladder: sct('28231008', 'Gallbladder'),
  stomach: sct('69695003', 'Stomach'),
};

/**
 * Category and type codes for a segment name: known structures get their SNOMED CT type under
 * "Anatomical Structure"; any other name gets the generic type "Tissue", which is true of every
 * segmented structure and never claims an anatomy the model did not segment.
 */
export function defaultSegmentCodes(name: string): { category: CodedConcept; type: CodedConcept } {
  const key = name.toLowerCase().replace(/[^a-z0-9]/g, '');
  return { category: ANATOMICAL_STRUCTURE, type: KNOWN_STRUCTURES[key] ?? TISSUE };
}

// Distinct display colours for segments that state none, in segment order.
const DEFAULT_COLORS: [number, number, number][] = [
  [230, 25, 75],
  [60, 180, 75],
  [0, 130, 200],
  [255, 225, 25],
  [245, 130, 48],
  [145, 30, 180],
  [70, 240, 240],
  [240, 50, 230],
];

/**
 * sRGB (0–255) to the DICOM RecommendedDisplayCIELabValue encoding: CIELab relative to the D50
 * white of the ICC profile connection space, L* 0–100 and a*, b* −128–127 each scaled to 0–65535
 * (PS3.3 C.10.7.1.1).
 */
export function rgbToDicomLab(rgb: [number, number, number]): [number, number, number] {
  const lin = rgb.map((c) => {
    const v = Math.min(255, Math.max(0, c)) / 255;
    return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  });
  // sRGB primaries to XYZ, Bradford-adapted from D65 to D50.
  const x = 0.4360747 * lin[0] + 0.3850649 * lin[1] + 0.1430804 * lin[2];
  const y = 0.2225045 * lin[0] + 0.7168786 * lin[1] + 0.0606169 * lin[2];
  const z = 0.0139322 * lin[0] + 0.0971045 * lin[1] + 0.7141733 * lin[2];
  const f = (t: number) => (t > (6 / 29) ** 3 ? Math.cbrt(t) : t / (3 * (6 / 29) ** 2) + 4 / 29);
  const fx = f(x / 0.96422);
  const fy = f(y / 1.0);
  const fz = f(z / 0.82521);
  const L = 116 * fy - 16;
  const a = 500 * (fx - fy);
  const b = 200 * (fy - fz);
  const scale = (v: number, lo: number, hi: number) =>
    Math.round((Math.min(hi, Math.max(lo, v)) - lo) * (65535 / (hi - lo)));
  return [scale(L, 0, 100), scale(a, -128, 127), scale(b, -128, 127)];
}

/** A number as a DICOM Decimal String (at most 16 characters). */
function ds(n: number): string {
  if (!Number.isFinite(n)) throw new Error(`cannot encode ${n} as a DICOM decimal string`);
  let s = String(n);
  for (let p = 15; s.length > 16 && p > 0; p--) s = String(Number(n.toPrecision(p)));
  return s;
}

function pad2(n: number): string {
  return String(n).padStart(2, '0');
}

function dicomDate(d: Date): string {
  return `${d.getFullYear()}${pad2(d.getMonth() + 1)}${pad2(d.getDate())}`;
}

function dicomTime(d: Date): string {
  return `${pad2(d.getHours())}${pad2(d.getMinutes())}${pad2(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

/** DICOM Code String: upper case, digits, space and underscore, at most 16 characters. */
function codeString(s: string): string {
  return s.toUpperCase().replace(/[^A-Z0-9 _]/g, '_').slice(0, 16);
}

function codeItem(c: CodedConcept): Record<string, string> {
  return { CodeValue: c.codeValue, CodingSchemeDesignator: c.codingSchemeDesignator, CodeMeaning: c.codeMeaning };
}

function validateClasses(classes: SegClass[], where: string | undefined): void {
  if (classes.length === 0) throw new InputError('no segment classes given for the DICOM SEG', where);
  const seen = new Set<number>();
  for (const c of classes) {
    if (!Number.isInteger(c.value) || c.value < 1 || c.value > 255) {
      throw new InputError(`segment class "${c.name}" has label value ${c.value}; values must be integers 1–255`, where);
    }
    if (seen.has(c.value)) throw new InputError(`label value ${c.value} is given to more than one segment class`, where);
    seen.add(c.value);
    if (!c.name || !c.name.trim()) throw new InputError(`segment class with label value ${c.value} has no name`, where);
    if (c.color && !c.color.every((v) => Number.isFinite(v) && v >= 0 && v <= 255)) {
      throw new InputError(`segment class "${c.name}" has colour ${JSON.stringify(c.color)}; channels must be 0–255`, where);
    }
  }
}

/** Each slice's position along the slice normal (row × column direction), mm. */
function positionsAlongNormal(meta: DicomSeriesMeta): number[] {
  const o = meta.imageOrientationPatient;
  const n: Vec3 = [o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]];
  return meta.slices.map((s) => s.imagePositionPatient[0] * n[0] + s.imagePositionPatient[1] * n[1] + s.imagePositionPatient[2] * n[2]);
}

interface FrameRef {
  segment: number; // 0-based index into classes
  slice: number; // k
  positionIndex: number; // 1-based rank along the normal
}

/**
 * Encode a label volume as a DICOM Segmentation (BINARY) instance, Part-10 bytes in Explicit VR
 * Little Endian. `labels` must carry the source series' DICOM metadata (`meta.dicom`), slice k
 * being `meta.dicom.slices[k]`; each class becomes one segment, numbered in the order given.
 */
export function encodeDicomSeg(labels: Volume<Uint8Array>, classes: SegClass[], opts: DicomSegOptions = {}): Uint8Array {
  const where = labels.meta.path;
  const src = labels.meta.dicom;
  if (!src) throw new InputError('label volume has no DICOM source metadata; a DICOM SEG can only be written for a DICOM series', where);
  if (!(labels.data instanceof Uint8Array)) throw new InputError('DICOM SEG labels must be a Uint8Array label volume', where);
  if (labels.frames !== 1) throw new InputError(`label volume has ${labels.frames} frames; a DICOM SEG needs a single 3D label map`, where);
  const [cols, rows, nSlices] = labels.dims;
  if (src.slices.length !== nSlices) {
    throw new InputError(`label volume has ${nSlices} slices but its DICOM metadata lists ${src.slices.length} source images`, where);
  }
  if (!src.frameOfReferenceUID) throw new InputError('source DICOM series has no FrameOfReferenceUID; a SEG cannot be registered to it', where);
  validateClasses(classes, where);

  // Which (segment, slice) pairs hold any voxel; 0 is background, unknown values are an error
  // because silently dropping them would lose part of the segmentation.
  const segOfValue = new Int16Array(256).fill(-2);
  segOfValue[0] = -1;
  classes.forEach((c, s) => (segOfValue[c.value] = s));
  const sliceSize = cols * rows;
  const present = new Uint8Array(classes.length * nSlices);
  const data = labels.data;
  for (let k = 0; k < nSlices; k++) {
    const base = k * sliceSize;
    for (let n = 0; n < sliceSize; n++) {
      const s = segOfValue[data[base + n]];
      if (s >= 0) present[s * nSlices + k] = 1;
      else if (s === -2) throw new InputError(`label value ${data[base + n]} (slice ${k}) has no segment class`, where);
    }
  }

  const along = positionsAlongNormal(src);
  const order = along.map((_, k) => k).sort((a, b) => along[a] - along[b] || a - b);
  // Mean distance between slice planes, measured along the normal as SpacingBetweenSlices is
  // defined (a sheared stack's k step is longer than its plane spacing).
  const sliceSpacing = (nSlices > 1 && (along[order[nSlices - 1]] - along[order[0]]) / (nSlices - 1)) || labels.spacing[2];
  const positionIndex = new Int32Array(nSlices);
  order.forEach((k, rank) => (positionIndex[k] = rank + 1));
  const frames: FrameRef[] = [];
  for (let s = 0; s < classes.length; s++) {
    for (const k of order) if (present[s * nSlices + k]) frames.push({ segment: s, slice: k, positionIndex: positionIndex[k] });
  }
  // The Segmentation IOD requires at least one frame (NumberOfFrames ≥ 1, Per-Frame Functional
  // Groups with ≥ 1 item), so an empty result is written as one all-zero frame of segment 1 on the
  // first slice: readers then see a valid SEG that marks nothing.
  if (frames.length === 0) frames.push({ segment: 0, slice: order[0], positionIndex: 1 });

  const pixelData = packFrames(data, frames, classes, sliceSize);
  const dataset = buildDataset(labels, src, classes, frames, pixelData, sliceSpacing, opts);
  return writePart10(dataset);
}

/** Frames as one continuous little-endian bit stream (PS3.5 §8.1.1: no per-frame padding). */
function packFrames(data: Uint8Array, frames: FrameRef[], classes: SegClass[], sliceSize: number): ArrayBuffer {
  const totalBits = frames.length * sliceSize;
  const bytes = Math.ceil(totalBits / 8);
  const out = new Uint8Array(bytes + (bytes & 1)); // OB values have even length
  frames.forEach((f, idx) => {
    const value = classes[f.segment].value;
    const src = f.slice * sliceSize;
    const bit0 = idx * sliceSize;
    for (let n = 0; n < sliceSize; n++) {
      if (data[src + n] === value) {
        const bit = bit0 + n;
        out[bit >>> 3] |= 1 << (bit & 7);
      }
    }
  });
  return out.buffer;
}

function buildDataset(
  labels: Volume<Uint8Array>,
  src: DicomSeriesMeta,
  classes: SegClass[],
  frames: FrameRef[],
  pixelData: ArrayBuffer,
  sliceSpacing: number,
  opts: DicomSegOptions,
): Record<string, unknown> {
  const now = opts.now ?? new Date();
  const date = dicomDate(now);
  const time = dicomTime(now);
  const seriesUid = newUid(opts.uidRoot);
  const sopUid = newUid(opts.uidRoot);
  const dimensionOrganizationUid = newUid(opts.uidRoot);
  const algorithmName = opts.algorithmName ?? 'ALHVR';
  const algorithmVersion = opts.algorithmVersion ?? TOOLKIT_VERSION;
  const manufacturer = opts.manufacturer ?? 'ALHVR Toolkit';
  const ps = src.patientStudy;

  const referencedInstances = new Map<string, string>();
  for (const s of src.slices) referencedInstances.set(s.sopInstanceUID, s.sopClassUID);

  const segments = classes.map((c, s) => {
    const codes = defaultSegmentCodes(c.name);
    return {
      SegmentNumber: s + 1,
      SegmentLabel: c.name.slice(0, 64),
      SegmentAlgorithmType: 'AUTOMATIC',
      SegmentAlgorithmName: algorithmName,
      SegmentationAlgorithmIdentificationSequence: [
        {
          AlgorithmFamilyCodeSequence: [codeItem(dcm('123110', 'Artificial Intelligence'))],
          AlgorithmName: algorithmName,
          AlgorithmVersion: algorithmVersion,
          ...(opts.algorithmParameters ? { AlgorithmParameters: opts.algorithmParameters } : {}),
        },
      ],
      SegmentedPropertyCategoryCodeSequence: [codeItem(c.category ?? codes.category)],
      SegmentedPropertyTypeCodeSequence: [codeItem(c.type ?? codes.type)],
      RecommendedDisplayCIELabValue: rgbToDicomLab(c.color ?? DEFAULT_COLORS[s % DEFAULT_COLORS.length]),
    };
  });

  const perFrame = frames.map((f) => {
    const slice = src.slices[f.slice];
    const sourceImage: Record<string, unknown> = {
      ReferencedSOPClassUID: slice.sopClassUID,
      ReferencedSOPInstanceUID: slice.sopInstanceUID,
      PurposeOfReferenceCodeSequence: [codeItem(dcm('121322', 'Source image for image processing operation'))],
    };
    if (slice.frameNumber !== undefined) sourceImage.ReferencedFrameNumber = slice.frameNumber;
    return {
      DerivationImageSequence: [
        {
          SourceImageSequence: [sourceImage],
          DerivationCodeSequence: [codeItem(dcm('113076', 'Segmentation'))],
        },
      ],
      FrameContentSequence: [{ DimensionIndexValues: [f.segment + 1, f.positionIndex] }],
      PlanePositionSequence: [{ ImagePositionPatient: slice.imagePositionPatient.map(ds) }],
      SegmentIdentificationSequence: [{ ReferencedSegmentNumber: f.segment + 1 }],
    };
  });

  return {
    // SOP Common
    SpecificCharacterSet: 'ISO_IR 192',
    SOPClassUID: SEGMENTATION_SOP_CLASS_UID,
    SOPInstanceUID: sopUid,
    InstanceCreationDate: date,
    InstanceCreationTime: time,
    // Patient, General Study (copied from the source so the SEG files under the same study)
    PatientName: ps.PatientName ?? '',
    PatientID: ps.PatientID ?? '',
    PatientBirthDate: ps.PatientBirthDate ?? '',
    PatientSex: ps.PatientSex ?? '',
    StudyInstanceUID: ps.StudyInstanceUID,
    StudyDate: ps.StudyDate ?? '',
    StudyTime: ps.StudyTime ?? '',
    StudyID: ps.StudyID ?? '',
    AccessionNumber: ps.AccessionNumber ?? '',
    ReferringPhysicianName: ps.ReferringPhysicianName ?? '',
    ...(ps.StudyDescription ? { StudyDescription: ps.StudyDescription } : {}),
    // General Series, Segmentation Series
    Modality: 'SEG',
    SeriesInstanceUID: seriesUid,
    SeriesNumber: opts.seriesNumber ?? 1000 + (Number.parseInt(src.seriesNumber ?? '', 10) || 0),
    SeriesDescription: (opts.seriesDescription ?? `${algorithmName} segmentation`).slice(0, 64),
    SeriesDate: date,
    SeriesTime: time,
    // Frame of Reference
    FrameOfReferenceUID: src.frameOfReferenceUID,
    PositionReferenceIndicator: '',
    // General Equipment, Enhanced General Equipment (this software is the "device")
    Manufacturer: manufacturer,
    ManufacturerModelName: algorithmName,
    DeviceSerialNumber: '0',
    SoftwareVersions: TOOLKIT_VERSION,
    // Segmentation Image, Content Identification
    ImageType: ['DERIVED', 'PRIMARY'],
    InstanceNumber: 1,
    ContentLabel: codeString(opts.algorithmName ?? 'SEGMENTATION') || 'SEGMENTATION',
    ContentDescription: (opts.seriesDescription ?? `${algorithmName} segmentation`).slice(0, 64),
    ContentCreatorName: opts.contentCreator ?? '',
    ContentDate: date,
    ContentTime: time,
    SamplesPerPixel: 1,
    PhotometricInterpretation: 'MONOCHROME2',
    PixelRepresentation: 0,
    BitsAllocated: 1,
    BitsStored: 1,
    HighBit: 0,
    LossyImageCompression: '00',
    SegmentationType: 'BINARY',
    SegmentSequence: segments,
    // Common Instance Reference
    ReferencedSeriesSequence: [
      {
        SeriesInstanceUID: src.seriesInstanceUID,
        ReferencedInstanceSequence: [...referencedInstances].map(([sopInstanceUID, sopClassUID]) => ({
          ReferencedSOPClassUID: sopClassUID,
          ReferencedSOPInstanceUID: sopInstanceUID,
        })),
      },
    ],
    // Multi-frame Dimension: frames are indexed by segment, then by position along the normal.
    DimensionOrganizationSequence: [{ DimensionOrganizationUID: dimensionOrganizationUid }],
    DimensionOrganizationType: '3D',
    DimensionIndexSequence: [
      {
        DimensionOrganizationUID: dimensionOrganizationUid,
        DimensionIndexPointer: 0x0062000b, // ReferencedSegmentNumber
        FunctionalGroupPointer: 0x0062000a, // SegmentIdentificationSequence
        DimensionDescriptionLabel: 'ReferencedSegmentNumber',
      },
      {
        DimensionOrganizationUID: dimensionOrganizationUid,
        DimensionIndexPointer: 0x00200032, // ImagePositionPatient
        FunctionalGroupPointer: 0x00209113, // PlanePositionSequence
        DimensionDescriptionLabel: 'ImagePositionPatient',
      },
    ],
    // Multi-frame Functional Groups
    SharedFunctionalGroupsSequence: [
      {
        PlaneOrientationSequence: [{ ImageOrientationPatient: src.imageOrientationPatient.map(ds) }],
        PixelMeasuresSequence: [
          {
            PixelSpacing: src.pixelSpacing.map(ds),
            SliceThickness: ds(sliceSpacing),
            SpacingBetweenSlices: ds(sliceSpacing),
          },
        ],
      },
    ],
    PerFrameFunctionalGroupsSequence: perFrame,
    NumberOfFrames: frames.length,
    Rows: labels.dims[1],
    Columns: labels.dims[0],
    PixelData: [pixelData],
    _vrMap: { PixelData: 'OB' },
  };
}

