import { stat } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { InputError } from '@alhvr/core';

export type OutputTarget = { kind: 'file'; path: string } | { kind: 'folder'; path: string };

function isNiftiOutputName(path: string): boolean {
  const lower = path.toLowerCase();
  return lower.endsWith('.nii') || lower.endsWith('.nii.gz');
}

/**
 * What `--out` names: a folder when it ends with a separator, already is a folder, or has no
 * .nii/.nii.gz extension; otherwise one NIfTI file.
 */
export async function resolveOutputTarget(out: string): Promise<OutputTarget> {
  if (out.endsWith('/') || out.endsWith(sep)) return { kind: 'folder', path: out };
  const st = await stat(out).catch(() => undefined);
  if (st?.isDirectory()) return { kind: 'folder', path: out };
  if (isNiftiOutputName(out)) return { kind: 'file', path: out };
  if (st) throw new InputError('exists and is not a folder or a .nii/.nii.gz file', out);
  return { kind: 'folder', path: out };
}

/** `<folder>/<id>.nii.gz` for each image id (ids are already unique and file-name-safe). */
export function outputFileFor(folder: string, id: string): string {
  return join(folder, `${id}.nii.gz`);
}

/** Refuse to replace existing files unless asked to, before anything is written. */
export async function checkOverwrite(paths: string[], force: boolean): Promise<void> {
  if (force) return;
  for (const path of paths) {
    const st = await stat(path).catch(() => undefined);
    if (st?.isDirectory()) throw new InputError('output exists and is a folder', path);
    if (st) throw new InputError('output exists (use --force to overwrite)', path);
  }
}
