import { describe, expect, it } from 'vitest';
import { InputError } from '@alhvr/core';
import { CASE_ID_MAX_LENGTH, anonymousCaseId, dicomCaseStem, parseShard, sanitiseCaseId, uniqueCaseIds } from './case-id.js';
import { CUDA_INSTALL_COMMAND, planDevice } from './device.js';

describe('case ids', () => {
  it('cannot escape the output folder whatever the tag values hold', () => {
    const nasty = ['../../etc/passwd', '..', '.hidden', 'a/b\\c', '-rf', 'x'.repeat(500), '', '\u0000\u202e..//', 'ÄÖ  ü'];
    for (const raw of nasty) {
      const id = sanitiseCaseId(raw);
      expect(id).toMatch(/^[\p{L}\p{N}][\p{L}\p{M}\p{N}._-]*$/u);
      expect(id).not.toContain('..');
      expect(id.length).toBeLessThanOrEqual(CASE_ID_MAX_LENGTH);
    }
    expect(sanitiseCaseId('../../etc/passwd')).toBe('etc_passwd');
    expect(sanitiseCaseId('\u0000\u202e..//')).toBe('case');
  });

  it('keeps letters of any script, composed (NFC), within the file-name byte limit', () => {
    expect(sanitiseCaseId('Müller')).toBe('Müller');
    expect(sanitiseCaseId('Mu\u0308ller')).toBe('Müller');
    expect(sanitiseCaseId('山田太郎')).toBe('山田太郎');
    expect(sanitiseCaseId('Ølsen/Ærø 2024')).toBe('Ølsen_Ærø_2024');
    expect(sanitiseCaseId('محمد_01')).toBe('محمد_01');
    for (const long of ['山'.repeat(300), '𠀋'.repeat(300), `a${'\u0301'.repeat(300)}`]) {
      const id = sanitiseCaseId(long);
      expect(id.length).toBeLessThanOrEqual(CASE_ID_MAX_LENGTH);
      expect(Buffer.byteLength(id, 'utf8')).toBeLessThanOrEqual(255);
      expect(id.isWellFormed()).toBe(true);
    }
  });

  it('reads as PatientID_StudyDate_SeriesNumber for DICOM', () => {
    expect(sanitiseCaseId(dicomCaseStem({ patientId: 'P 01', studyDate: '20240102', seriesNumber: '7' }))).toBe('P_01_20240102_7');
    expect(dicomCaseStem({ seriesNumber: '3' })).toBe('3');
  });

  it('anonymises deterministically and disambiguates clashes independent of order', () => {
    expect(anonymousCaseId('P01_20240102_7')).toBe(anonymousCaseId('P01_20240102_7'));
    expect(anonymousCaseId('P01_20240102_7')).not.toContain('P01');
    const items = [
      { stem: 'scan', key: '/a/scan.nii' },
      { stem: 'scan', key: '/b/scan.nii' },
      { stem: 'other', key: '/c/other.nii' },
    ];
    const ids = uniqueCaseIds(items);
    expect(new Set(ids).size).toBe(3);
    expect(ids[2]).toBe('other');
    expect(uniqueCaseIds([items[1], items[0], items[2]])).toEqual([ids[1], ids[0], ids[2]]);
  });

  it('parses shards as 1-based i/n', () => {
    expect(parseShard('2/4')).toEqual({ index: 2, count: 4 });
    for (const bad of ['0/4', '5/4', '1/0', 'a/b', '1']) expect(() => parseShard(bad)).toThrow(InputError);
  });
});

describe('device choice', () => {
  it('refuses --device cuda without the CUDA provider, naming the install command', () => {
    expect(() => planDevice('cuda', false)).toThrow(CUDA_INSTALL_COMMAND);
    expect(planDevice('auto', false).candidates).toEqual(['cpu']);
    expect(planDevice('auto', true).candidates).toEqual(['cuda', 'cpu']);
    expect(planDevice('cpu', true).candidates).toEqual(['cpu']);
  });

  it('mentions the CUDA provider only where a GPU is visible (the hint is for --verbose otherwise)', () => {
    const noGpu = planDevice('auto', false, false);
    expect(noGpu.note).toBe('no GPU visible');
    expect(noGpu.gpuVisible).toBe(false);
    expect(noGpu.cudaHint).toContain(CUDA_INSTALL_COMMAND);
    expect(planDevice('auto', false, true).note).toMatch(/GPU is visible but the CUDA provider is not installed/);
    expect(planDevice('cpu', false, true).cudaHint).toBeUndefined();
  });
});
