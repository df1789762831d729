import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';

/**
 * Write a file so that readers see either the old content or the whole new content, never a
 * prefix: write a temporary sibling, then rename over the target (atomic on one file system).
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  await writeAtomicWith(path, (tmp) => writeFile(tmp, data));
}

/**
 * The same, for content a caller writes itself (a stream, say) to the temporary path it is given:
 * renamed over `path` when `write` resolves, removed when it fails. Temporaries are named
 * `.NAME.PID.HEX8.tmp`, so a later run can tell a dead process's leftovers from its own.
 */
export async function writeAtomicWith(path: string, write: (tmp: string) => Promise<void>): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await write(tmp);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
