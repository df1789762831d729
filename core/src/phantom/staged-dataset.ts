import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { InputError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic-write.js';

/**
 * Write a generated nnU-Net v2 raw dataset into `dir` all or nothing: `fill` writes imagesTr/,
 * labelsTr/ (and anything else) into a hidden sibling folder, which gets dataset.json last and is
 * then renamed into place. `dir` must not exist yet or be empty; a partial build is removed.
 */
export async function writeStagedDataset(
  dir: string,
  opts: { cases: number; seed: number },
  fill: (staging: string) => Promise<Record<string, unknown>>,
): Promise<void> {
  const { cases, seed } = opts;
  if (!Number.isInteger(cases) || cases < 1) throw new InputError(`phantom case count must be a positive integer, got ${cases}`, dir);
  if (!Number.isInteger(seed)) throw new InputError(`phantom seed must be an integer, got ${seed}`, dir);
  const target = resolve(dir);
  await assertEmptyOrMissing(target);
  await mkdir(dirname(target), { recursive: true });
  const staging = join(dirname(target), `.${basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.partial`);
  try {
    await mkdir(join(staging, 'imagesTr'), { recursive: true });
    await mkdir(join(staging, 'labelsTr'), { recursive: true });
    const datasetJson = await fill(staging);
    await writeFileAtomic(join(staging, 'dataset.json'), `${JSON.stringify(datasetJson, null, 2)}\n`);
    // Renaming over an empty folder replaces it; a folder filled meanwhile makes this fail.
    await rename(staging, target);
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    if (err instanceof InputError) throw err;
    const code = (err as NodeJS.ErrnoException)?.code;
    throw new InputError(`cannot write phantom dataset (${code ?? (err instanceof Error ? err.message : String(err))})`, dir);
  }
}

async function assertEmptyOrMissing(target: string): Promise<void> {
  let isDir: boolean;
  try {
    isDir = (await stat(target)).isDirectory();
  } catch (err) {
    if ((err as NodeJS.ErrnoException)?.code === 'ENOENT') return;
    throw err;
  }
  if (!isDir) throw new InputError('exists and is not a folder', target);
  if ((await readdir(target)).length > 0) throw new InputError('folder is not empty; choose a new output folder', target);
}
