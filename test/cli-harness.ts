import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import dicomParser from 'dicom-parser';
import * as nifti from 'nifti-reader-js-0.6.6';

// Helpers for the cli-*.test.ts files: run the BUILT commands as a user would, and read DICOM and
// NIfTI files with third-party parsers so expected values never come from the toolkit's readers.

const cliDir = fileURLToPath(new URL('../cli/', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  /** Called with each stderr chunk while the command runs (e.g. to interrupt it). */
  onStderr?: (chunk: string, child: import('node:child_process').ChildProcess) => void;
}

export function cliPath(command: string): string {
  const launcher = `${cliDir}bin/${command}.js`;
  const built = `${cliDir}dist/bin/${command}.js`;
  if (!existsSync(built)) throw new Error(`${built} is missing: run \`npx tsc -b\` (npm run build) before the CLI tests`);
  return launcher;
}

export function runCli(command: string, args: string[], options: RunOptions = {}): Promise<CliResult> {
  const launcher = cliPath(command);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [launcher, ...args], { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      options.onStderr?.(d, child);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** The stderr lines that are not blank. */
export function stderrLines(result: CliResult): string[] {
  return result.stderr.split('\n').filter((l) => l.trim() !== '');
}

// ---------------------------------------------------------------- DICOM, parsed with dicom-parser

export interface DicomSlice {
  file: string;
  seriesUID: string;
  modality: string;
  transferSyntax: string;
  rows: number;
  columns: number;
  /** LPS mm. */
  ipp: [number, number, number];
  /** Row direction cosines, then column direction cosines (LPS). */
  iop: [number, number, number, number, number, number];
  /** [between rows, between columns] mm. */
  pixelSpacing: [number, number];
  bitsAllocated: number;
  pixelRepresentation: number;
  /** Pixel values after Rescale Slope/Intercept, row-major (column index fastest). */
  values: Float64Array;
}

function numbers(ds: dicomParser.DataSet, tag: string): number[] {
  const s = ds.string(tag);
  if (!s) throw new Error(`missing ${tag}`);
  return s.split('\\').map(Number);
}

/** One uncompressed little-endian single-frame DICOM image, read independently of the toolkit. */
export function parseDicomSlice(file: string): DicomSlice {
  const bytes = new Uint8Array(readFileSync(file));
  const ds = dicomParser.parseDicom(bytes);
  const ts = ds.string('x00020010') ?? '';
  if (ts !== '1.2.840.10008.1.2.1' && ts !== '1.2.840.10008.1.2') throw new Error(`test helper reads only LE native, got ${ts}`);
  const rows = ds.uint16('x00280010')!;
  const columns = ds.uint16('x00280011')!;
  const bitsAllocated = ds.uint16('x00280100')!;
  const bitsStored = ds.uint16('x00280101') ?? bitsAllocated;
  const pixelRepresentation = ds.uint16('x00280103') ?? 0;
  const slope = ds.string('x00281053') ? Number(ds.string('x00281053')) : 1;
  const intercept = ds.string('x00281052') ? Number(ds.string('x00281052')) : 0;
  const el = ds.elements.x7fe00010;
  const dv = new DataView(bytes.buffer, bytes.byteOffset + el.dataOffset, el.length);
  const values = new Float64Array(rows * columns);
  const mask = 2 ** bitsStored - 1;
  for (let n = 0; n < values.length; n++) {
    let v = bitsAllocated === 16 ? dv.getUint16(2 * n, true) : dv.getUint8(n);
    v &= mask;
    if (pixelRepresentation === 1 && v >= 2 ** (bitsStored - 1)) v -= 2 ** bitsStored;
    values[n] = v * slope + intercept;
  }
  return {
    file,
    seriesUID: ds.string('x0020000e') ?? '',
    modality: ds.string('x00080060') ?? '',
    transferSyntax: ts,
    rows,
    columns,
    ipp: numbers(ds, 'x00200032') as DicomSlice['ipp'],
    iop: numbers(ds, 'x00200037') as DicomSlice['iop'],
    pixelSpacing: numbers(ds, 'x00280030') as DicomSlice['pixelSpacing'],
    bitsAllocated,
    pixelRepresentation,
    values,
  };
}

export const dot = (a: number[], b: number[]) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
export const cross = (a: number[], b: number[]) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];

// ---------------------------------------------------------------- NIfTI, parsed with nifti-reader-js

export interface NiftiFile {
  header: nifti.NIFTI1 | nifti.NIFTI2;
  /** Every stored value after scl_slope/scl_inter, in file order. */
  values: Float64Array;
  /** Voxel → RAS+ mm as nifti-reader-js computes it (sform, else qform). */
  affine: number[][];
  datatypeCode: number;
}

const READERS: Record<number, [number, (dv: DataView, o: number, le: boolean) => number]> = {
  2: [1, (dv, o) => dv.getUint8(o)],
  4: [2, (dv, o, le) => dv.getInt16(o, le)],
  8: [4, (dv, o, le) => dv.getInt32(o, le)],
  16: [4, (dv, o, le) => dv.getFloat32(o, le)],
  64: [8, (dv, o, le) => dv.getFloat64(o, le)],
  256: [1, (dv, o) => dv.getInt8(o)],
  512: [2, (dv, o, le) => dv.getUint16(o, le)],
  768: [4, (dv, o, le) => dv.getUint32(o, le)],
};

export const NIFTI_DATATYPE_NAMES: Record<number, string> = {
  2: 'uint8', 4: 'int16', 8: 'int32', 16: 'float32', 64: 'float64', 256: 'int8', 512: 'uint16', 768: 'uint32',
};

export function readNiftiIndependently(file: string): NiftiFile {
  const buf = readFileSync(file);
  let data: ArrayBuffer = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
  if (nifti.isCompressed(data)) data = nifti.decompress(data) as ArrayBuffer;
  const header = nifti.readHeader(data);
  if (!header) throw new Error(`${file} is not NIfTI`);
  const reader = READERS[header.datatypeCode];
  if (!reader) throw new Error(`test helper cannot read datatype ${header.datatypeCode}`);
  const image = nifti.readImage(header, data);
  const dv = new DataView(image);
  const [width, get] = reader;
  const count = image.byteLength / width;
  const values = new Float64Array(count);
  const slope = header.scl_slope;
  const scaled = Number.isFinite(slope) && slope !== 0 && !(slope === 1 && header.scl_inter === 0);
  for (let n = 0; n < count; n++) {
    const v = get(dv, n * width, header.littleEndian);
    values[n] = scaled ? v * slope + header.scl_inter : v;
  }
  return { header, values, affine: header.affine, datatypeCode: header.datatypeCode };
}

export function applyAffine(a: number[][], p: number[]): [number, number, number] {
  return [0, 1, 2].map((r) => a[r][0] * p[0] + a[r][1] * p[1] + a[r][2] * p[2] + a[r][3]) as [number, number, number];
}
