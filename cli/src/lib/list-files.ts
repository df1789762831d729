import { readdir, realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError } from '@alhvr/core';

export interface ListFilesOptions {
  signal?: AbortSignal;
}

function describeFsError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return 'no such file or folder';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'ENOTDIR') return 'not a folder';
  if (code === 'ELOOP') return 'too many levels of symbolic links';
  return err instanceof Error ? err.message : String(err);
}

/** `stat` that turns file-system errors into a one-line InputError naming the path. */
export async function statInput(path: string): Promise<import('node:fs').Stats> {
  try {
    return await stat(path);
  } catch (err) {
    throw new InputError(describeFsError(err), path);
  }
}

/**
 * Every regular file under `folder`, recursively, in a stable (sorted) order. Hidden entries
 * (names starting with ".") are left out: they are version-control folders, OS metadata and
 * the temporary files of interrupted writes, never images. Symbolic links are followed once.
 */
export async function listFiles(folder: string, options: ListFilesOptions = {}): Promise<string[]> {
  const out: string[] = [];
  const visited = new Set<string>();
  const walk = async (dir: string): Promise<void> => {
    if (options.signal?.aborted) return;
    const real = await realpath(dir);
    if (visited.has(real)) return;
    visited.add(real);
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      throw new InputError(`cannot read folder: ${describeFsError(err)}`, dir);
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const path = join(dir, entry.name);
      let isDir = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        const target = await stat(path).catch(() => undefined);
        isDir = target?.isDirectory() ?? false;
        isFile = target?.isFile() ?? false;
      }
      if (isDir) await walk(path);
      else if (isFile) out.push(path);
    }
  };
  await walk(folder);
  return out;
}
