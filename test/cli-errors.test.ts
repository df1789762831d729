import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { daikonData, daikonSeries, niftiData } from './fixtures.js';
import { type CliResult, runCli, stderrLines } from './cli-harness.js';

// Created at load time because the it.each tables below name paths inside it.
const tmp = mkdtempSync(join(tmpdir(), 'alhvr-cli-errors-'));
const outDir = join(tmp, 'out');
const bad: Record<string, string> = {};

/** A copy of a Part-10 file with another TransferSyntaxUID in its (explicit VR LE) file meta group. */
function withTransferSyntax(bytes: Buffer, uid: string): Buffer {
  const value = Buffer.from(uid.length % 2 ? `${uid}\0` : uid, 'latin1');
  const parts: Buffer[] = [bytes.subarray(0, 132)];
  let pos = 132;
  let groupLengthAt = -1;
  let delta = 0;
  while (bytes.readUInt16LE(pos) === 0x0002) {
    const element = bytes.readUInt16LE(pos + 2);
    const vr = bytes.toString('latin1', pos + 4, pos + 6);
    const long = ['OB', 'OW', 'OF', 'SQ', 'UT', 'UN'].includes(vr);
    const headerLength = long ? 12 : 8;
    const length = long ? bytes.readUInt32LE(pos + 8) : bytes.readUInt16LE(pos + 6);
    if (element === 0x0000) groupLengthAt = parts.reduce((n, p) => n + p.length, 0) + 8;
    if (element === 0x0010) {
      const head = Buffer.from(bytes.subarray(pos, pos + headerLength));
      head.writeUInt16LE(value.length, 6);
      parts.push(head, value);
      delta = value.length - length;
    } else {
      parts.push(bytes.subarray(pos, pos + headerLength + length));
    }
    pos += headerLength + length;
  }
  parts.push(bytes.subarray(pos));
  const out = Buffer.concat(parts);
  if (groupLengthAt >= 0) out.writeUInt32LE(out.readUInt32LE(groupLengthAt) + delta, groupLengthAt);
  return out;
}

beforeAll(() => {
  mkdirSync(outDir);
  bad.missing = join(tmp, 'does-not-exist.nii.gz');
  bad.emptyFolder = join(tmp, 'empty-folder');
  mkdirSync(bad.emptyFolder);
  bad.noImagesFolder = join(tmp, 'only-notes');
  mkdirSync(bad.noImagesFolder);
  writeFileSync(join(bad.noImagesFolder, 'notes.txt'), 'no images here\n');
  bad.textFile = join(tmp, 'readme.txt');
  writeFileSync(bad.textFile, 'plain text, not an image\n');
  const nii = readFileSync(join(niftiData, 'avg152T1_LR_nifti.nii.gz'));
  bad.truncatedNifti = join(tmp, 'truncated-brain.nii.gz');
  writeFileSync(bad.truncatedNifti, nii.subarray(0, nii.length >> 1));
  bad.notNifti = join(tmp, 'corrupt-header.nii');
  copyFileSync(join(niftiData, 'not-nifti.nii'), bad.notNifti);
  const dcm = readFileSync(join(daikonSeries, 'brain_001.dcm'));
  bad.truncatedDicom = join(tmp, 'truncated-slice.dcm');
  writeFileSync(bad.truncatedDicom, dcm.subarray(0, Math.floor(dcm.length * 0.6)));
  bad.unsupportedSyntax = join(tmp, 'mpeg2-syntax.dcm');
  writeFileSync(bad.unsupportedSyntax, withTransferSyntax(readFileSync(join(daikonData, 'explicit_little.dcm')), '1.2.840.10008.1.2.4.100'));
  bad.mixedFolder = join(tmp, 'mixed-series');
  mkdirSync(bad.mixedFolder);
  for (const f of ['implicit_little.dcm', 'explicit_little.dcm']) copyFileSync(join(daikonData, f), join(bad.mixedFolder, f));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function expectOneLineError(result: CliResult, command: string, mentions: string): void {
  expect(result.code).toBe(1);
  const lines = stderrLines(result);
  expect(lines, result.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(new RegExp(`^${command}: error: `));
  expect(lines[0]).toContain(mentions);
  expect(result.stderr).not.toMatch(/^\s+at /m);
}

const cases: [string, () => string, string][] = [
  ['a path that does not exist', () => bad.missing, 'no such file'],
  ['an empty folder', () => bad.emptyFolder, 'no files'],
  ['a folder without images', () => bad.noImagesFolder, 'no NIfTI files or DICOM series'],
  ['a text file', () => bad.textFile, 'not a NIfTI or DICOM image'],
  ['a truncated .nii.gz', () => bad.truncatedNifti, ''],
  ['a file named .nii that is not NIfTI', () => bad.notNifti, ''],
  ['a truncated DICOM file', () => bad.truncatedDicom, ''],
  ['an unsupported transfer syntax', () => bad.unsupportedSyntax, 'transfer syntax'],
];

describe.concurrent('bad input gives one line naming the file, exit 1, no stack trace, no output', () => {
  it.each(cases)('alhvr-info: %s', async (_what, path, problem) => {
    const result = await runCli('alhvr-info', [path(), '--json']);
    expectOneLineError(result, 'alhvr-info', basename(path()));
    expect(stderrLines(result)[0]).toContain(problem);
    expect(result.stdout).toBe('');
  });

  it.each(cases)('alhvr-convert: %s', async (_what, path, problem) => {
    const out = join(outDir, `${basename(path())}.converted.nii.gz`);
    const result = await runCli('alhvr-convert', [path(), '--out', out]);
    expectOneLineError(result, 'alhvr-convert', basename(path()));
    expect(stderrLines(result)[0]).toContain(problem);
    expect(existsSync(out)).toBe(false);
    // No temporary files of an interrupted atomic write either.
    expect(readdirSync(outDir)).toEqual([]);
  });

  it('alhvr-convert: a folder holding several series and an output file', async () => {
    const out = join(outDir, 'mixed.nii.gz');
    const result = await runCli('alhvr-convert', [bad.mixedFolder, '--out', out]);
    expectOneLineError(result, 'alhvr-convert', basename(bad.mixedFolder));
    expect(stderrLines(result)[0]).toContain('1.2.840.113619.2.1.3352.1136944889.4.834485379');
    expect(stderrLines(result)[0]).toContain('999.999.2.19960619.163000.1');
    expect(readdirSync(outDir)).toEqual([]);
  });

  it('alhvr-convert: --series naming no series in the input', async () => {
    const result = await runCli('alhvr-convert', [bad.mixedFolder, '--out', join(outDir, 'x.nii.gz'), '--series', '1.2.3.4']);
    expectOneLineError(result, 'alhvr-convert', '1.2.3.4');
    expect(readdirSync(outDir)).toEqual([]);
  });

  it('--verbose adds the stack trace', async () => {
    const result = await runCli('alhvr-info', [bad.truncatedNifti, '--verbose']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^alhvr-info: error: .*truncated-brain\.nii\.gz/);
    expect(result.stderr).toMatch(/^\s+at /m);
  });
});

describe.concurrent('usage errors exit 2 with one line', () => {
  it.each([
    ['alhvr-info', [daikonSeries, '--bogus']],
    ['alhvr-info', []],
    ['alhvr-convert', [daikonSeries]],
    ['alhvr-convert', [daikonSeries, '--out', join(outDir, 'v.nii.gz'), '--volume', '-1']],
    ['alhvr-phantom', ['--out', join(outDir, 'p'), '--cases', '0', '--seed', '1']],
    ['alhvr-phantom', ['--out', join(outDir, 'p'), '--cases', '2']],
  ])('%s %s', async (command, args) => {
    const result = await runCli(command, args);
    expect(result.code).toBe(2);
    expect(stderrLines(result)).toHaveLength(1);
    expect(stderrLines(result)[0]).toMatch(new RegExp(`^${command}: error: `));
    expect(readdirSync(outDir)).toEqual([]);
  });
});

describe.concurrent('--help and --version', () => {
  it.each([
    ['alhvr-info', ['--json']],
    ['alhvr-convert', ['--out', '--series', '--volume', '--force']],
    ['alhvr-phantom', ['--out', '--cases', '--seed']],
  ])('%s --help exits 0 and lists every option', async (command, options) => {
    const result = await runCli(command, ['--help']);
    expect(result.code).toBe(0);
    for (const option of [...options, '--verbose', '--quiet', '--help', '--version']) expect(result.stdout).toContain(option);
    expect(result.stdout).toContain(`Usage: ${command}`);
  });

  it('--version prints the package version', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../cli/package.json', import.meta.url), 'utf8')) as { version: string };
    const result = await runCli('alhvr-info', ['--version']);
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toBe(pkg.version);
  });
});
