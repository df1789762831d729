import { rmdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { InputError } from '@alhvr/core';

/** The top-most folder of `dir` that does not exist yet (what `mkdir -p dir` would create first). */
export async function firstMissingFolder(dir: string): Promise<string | undefined> {
  let missing: string | undefined;
  for (let d = resolve(dir); ; d = dirname(d)) {
    if (await stat(d).then(() => true, () => false)) return missing;
    missing = d;
    if (dirname(d) === d) return missing;
  }
}

/**
 * rmdir `dir` and its parents up to and including `top`, stopping at the first that is not
 * empty: a command that failed before writing anything leaves no folders it created behind.
 */
export async function removeEmptyFolders(dir: string, top: string): Promise<void> {
  const stop = resolve(top);
  for (let current = resolve(dir); current.startsWith(stop); current = dirname(current)) {
    if (!(await rmdir(current).then(() => true, () => false)) || current === stop) return;
  }
}

/** An existing folder to read from, or one error naming it. */
export async function requireFolder(path: string, what: string): Promise<void> {
  const info = await stat(path).catch((err: NodeJS.ErrnoException) => {
    throw new InputError(err.code === 'ENOENT' ? `no such ${what} folder` : `cannot read the ${what} folder (${err.code})`, path);
  });
  if (!info.isDirectory()) throw new InputError(`the ${what} is a file; give its folder`, path);
}

/** A folder to write into (it may not exist yet), or one error naming it. */
export async function requireWritableFolderPath(path: string, option: string): Promise<void> {
  const info = await stat(path).catch(() => undefined);
  if (info && !info.isDirectory()) throw new InputError(`${option} names a file; give a folder (it is created if missing)`, path);
}
