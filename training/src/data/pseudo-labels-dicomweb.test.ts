import { describe, expect, it } from 'vitest';
import { decodeDicomSeg, encodeDicomSeg, type Volume } from '@alhvr/core';
import { readDicomSeries } from '@alhvr/core/node';
import { daikonSeries } from '../../../test/fixtures.js';
import { dicomwebSourceName, isDicomwebSource, isOurSeg, segsFingerprint } from './pseudo-labels-dicomweb.js';
import { pseudoSourceLocation, pseudoSourceRecordName } from './pseudo-labels.js';

const series = await readDicomSeries(daikonSeries);
const label = series.withData(new Uint8Array(series.voxelCount)) as Volume<Uint8Array>;
const classes = [{ value: 1, name: 'LV' }];
/** What alhvr-segment writes (inference outputs.ts): description "ALHVR <model name>", the name as algorithm. */
const ours = (name: string) => decodeDicomSeg(encodeDicomSeg(label, classes, { seriesDescription: `ALHVR ${name}`.slice(0, 64), algorithmName: name.slice(0, 64) }));

describe('pseudo-labels from a DICOMweb server', () => {
  it("tells alhvr-segment's SEGs from a reviewer's by writer, model name and description", () => {
    expect(isOurSeg(ours('acdc-alhvr'))).toBe(true);
    // A model name long enough for the description to be cut at 64 characters.
    expect(isOurSeg(ours('x'.repeat(70)))).toBe(true);
    expect(isOurSeg(decodeDicomSeg(encodeDicomSeg(label, classes, { manufacturer: 'OHIF', seriesDescription: 'ALHVR acdc-alhvr', algorithmName: 'acdc-alhvr' })))).toBe(false);
    // Our writer, but saved under another description (a reviewer's tool that kept the equipment).
    expect(isOurSeg(decodeDicomSeg(encodeDicomSeg(label, classes, { seriesDescription: 'Reviewed', algorithmName: 'acdc-alhvr' })))).toBe(false);
  });

  it('records a server by host name only, and keeps its location without credentials or query', () => {
    const url = 'https://pacs.example:8443/dicom-web/?token=abc#x';
    expect(isDicomwebSource(url)).toBe(true);
    expect(isDicomwebSource('seg/round1')).toBe(false);
    expect(dicomwebSourceName(url)).toBe('pacs.example');
    expect(pseudoSourceRecordName(url)).toBe('pacs.example');
    expect(pseudoSourceLocation(url)).toBe('https://pacs.example:8443/dicom-web');
    expect(pseudoSourceRecordName('/data/seg/round1')).toBe('round1');
  });

  it('fingerprints the SEGs used by their UIDs, whatever the order', () => {
    expect(segsFingerprint(['1.2', '1.3'])).toBe(segsFingerprint(['1.3', '1.2']));
    expect(segsFingerprint(['1.2', '1.3'])).not.toBe(segsFingerprint(['1.2']));
  });
});
