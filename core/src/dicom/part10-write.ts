import dcmjs from 'dcmjs';
import { TOOLKIT_VERSION } from '../version.js';

export const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';
// Fixed identity of this toolkit's writers in the File Meta header (a UUID-derived UID minted once).
const IMPLEMENTATION_CLASS_UID = '2.25.175149127545411993304652585446954910218';

/** A naturalized dcmjs dataset → a DICOM Part 10 file (explicit VR little endian) with our File Meta. */
export function writePart10(dataset: Record<string, unknown>): Uint8Array {
  const { DicomMetaDictionary, DicomDict } = dcmjs.data;
  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: dataset.SOPClassUID,
    MediaStorageSOPInstanceUID: dataset.SOPInstanceUID,
    TransferSyntaxUID: EXPLICIT_VR_LITTLE_ENDIAN,
    ImplementationClassUID: IMPLEMENTATION_CLASS_UID,
    ImplementationVersionName: `ALHVR_${TOOLKIT_VERSION}`,
  };
  const dict = new DicomDict(DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = DicomMetaDictionary.denaturalizeDataset(dataset);
  return new Uint8Array(dict.write() as ArrayBuffer);
}
