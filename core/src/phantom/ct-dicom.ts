import { InputError } from '../errors.js';
import { Rng } from '../random.js';
import type { Volume } from '../volume.js';
import { TOOLKIT_VERSION } from '../version.js';
import { CT_HU_MAX, CT_HU_MIN } from './abdomen-ct.js';
import { writePart10 } from '../dicom/part10-write.js';

/**
 * A generated CT volume (integer HU, axial, i → patient left, j → posterior, k → superior) as a
 * DICOM CT Image Storage series: one Part-10 instance per slice, unsigned 16-bit pixels with
 * RescaleIntercept −1024 and RescaleSlope 1 as scanners store them. Every UID is derived from
 * `uidSeed`, and dates are fixed, so the same case always gives the same bytes.
 */
export interface CtSeriesOptions {
  /** Source of the study/series/frame/instance UIDs (e.g. a hash of seed and case index). */
  uidSeed: number;
  patientId: string;
  seriesDescription: string;
  /** Contrast agent for the Contrast/Bolus module; omitted for an unenhanced series. */
  contrastAgent?: string;
}

export const CT_IMAGE_STORAGE_SOP_CLASS_UID = '1.2.840.10008.5.1.4.1.1.2';
const RESCALE_INTERCEPT = -1024;
// A fixed acquisition date: synthetic data has none, and a clock date would break same-seed-same-bytes.
const FIXED_DATE = '20260101';
const FIXED_TIME = '120000';

/** A "2.25." UID from 122 random bits laid out as a version-4 UUID (PS3.5 §B.2). */
function derivedUid(rng: Rng): string {
  let n = 0n;
  for (let w = 0; w < 4; w++) n = (n << 32n) | BigInt(rng.nextUint32());
  n = (n & ~(0xfn << 76n)) | (0x4n << 76n);
  n = (n & ~(0x3n << 62n)) | (0x2n << 62n);
  return `2.25.${n.toString()}`;
}

const ds = (x: number) => {
  // Decimal String: at most 16 characters.
  const s = String(Number(x.toPrecision(10)));
  return s.length <= 16 ? s : x.toExponential(8);
};

export function encodeCtSeries(image: Volume, opts: CtSeriesOptions): Uint8Array[] {
  const [cols, rows, nSlices] = image.dims;
  const a = image.affine;
  // Only the axial layout the phantom writes: RAS columns (−sx,0,0), (0,−sy,0), (0,0,sz).
  const axial = a[0][1] === 0 && a[0][2] === 0 && a[1][0] === 0 && a[1][2] === 0 && a[2][0] === 0 && a[2][1] === 0;
  if (!axial || !(a[0][0] < 0 && a[1][1] < 0 && a[2][2] > 0)) {
    throw new InputError('CT series writer needs an axial volume (i → left, j → posterior, k → superior)', image.meta.path);
  }
  const [sx, sy, sz] = [-a[0][0], -a[1][1], a[2][2]];
  const rng = new Rng(opts.uidSeed);
  const study = derivedUid(rng);
  const series = derivedUid(rng);
  const frame = derivedUid(rng);
  const plane = cols * rows;
  const files: Uint8Array[] = [];
  for (let k = 0; k < nSlices; k++) {
    const pixels = new Uint16Array(plane);
    for (let n = 0; n < plane; n++) {
      const hu = image.data[k * plane + n];
      if (!Number.isInteger(hu) || hu < CT_HU_MIN || hu > CT_HU_MAX) {
        throw new InputError(`voxel value ${hu} of slice ${k} is not a whole HU in [${CT_HU_MIN}, ${CT_HU_MAX}]`, image.meta.path);
      }
      pixels[n] = hu - RESCALE_INTERCEPT;
    }
    // LPS position of voxel (0, 0, k): RAS negated in x and y.
    const position = [-a[0][3], -a[1][3], a[2][3] + k * sz];
    const dataset: Record<string, unknown> = {
      SpecificCharacterSet: 'ISO_IR 192',
      ImageType: ['DERIVED', 'SECONDARY', 'AXIAL'],
      SOPClassUID: CT_IMAGE_STORAGE_SOP_CLASS_UID,
      SOPInstanceUID: derivedUid(rng),
      StudyDate: FIXED_DATE,
      SeriesDate: FIXED_DATE,
      ContentDate: FIXED_DATE,
      StudyTime: FIXED_TIME,
      SeriesTime: FIXED_TIME,
      ContentTime: FIXED_TIME,
      AccessionNumber: '',
      Modality: 'CT',
      Manufacturer: 'ALHVR Toolkit phantom',
      ReferringPhysicianName: '',
      StudyDescription: 'ALHVR synthetic abdomen CT',
      SeriesDescription: opts.seriesDescription,
      ManufacturerModelName: 'alhvr-phantom',
      PatientName: 'Phantom^Abdomen',
      PatientID: opts.patientId,
      PatientBirthDate: '',
      PatientSex: 'O',
      BodyPartExamined: 'ABDOMEN',
      ...(opts.contrastAgent ? { ContrastBolusAgent: opts.contrastAgent } : {}),
      SliceThickness: ds(sz),
      KVP: '120',
      SoftwareVersions: `ALHVR ${TOOLKIT_VERSION}`,
      PatientPosition: 'HFS',
      StudyInstanceUID: study,
      SeriesInstanceUID: series,
      StudyID: '1',
      SeriesNumber: '1',
      AcquisitionNumber: '1',
      InstanceNumber: String(k + 1),
      ImagePositionPatient: position.map(ds),
      ImageOrientationPatient: ['1', '0', '0', '0', '1', '0'],
      FrameOfReferenceUID: frame,
      PositionReferenceIndicator: '',
      SliceLocation: ds(position[2]),
      SamplesPerPixel: 1,
      PhotometricInterpretation: 'MONOCHROME2',
      Rows: rows,
      Columns: cols,
      PixelSpacing: [ds(sy), ds(sx)],
      BitsAllocated: 16,
      BitsStored: 16,
      HighBit: 15,
      PixelRepresentation: 0,
      WindowCenter: '40',
      WindowWidth: '400',
      RescaleIntercept: String(RESCALE_INTERCEPT),
      RescaleSlope: '1',
      RescaleType: 'HU',
      PixelData: [pixels.buffer],
      _vrMap: { PixelData: 'OW' },
    };
    files.push(writePart10(dataset));
  }
  return files;
}

