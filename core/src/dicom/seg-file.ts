import type { Volume } from '../volume.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import { encodeDicomSeg, type DicomSegOptions, type SegClass } from './seg-write.js';

/** Write a label volume as a DICOM SEG file; the file appears whole or not at all. */
export async function writeDicomSegFile(
  path: string,
  labels: Volume<Uint8Array>,
  classes: SegClass[],
  opts: DicomSegOptions = {},
): Promise<void> {
  await writeFileAtomic(path, encodeDicomSeg(labels, classes, opts));
}
