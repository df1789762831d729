import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { InputError } from '@alhvr/core';
import { loadCheckpoint, type CheckpointFile } from './checkpoint.js';
import type { InitSource } from './config.js';
import type { StudentKey } from './students.js';

export type ParameterGroup = CheckpointFile<unknown>['groups'][string];

/**
 * `--init RUN_DIR`: the students start from another run's selected checkpoints — student a from
 * its best-a.ckpt, b from its best-b.ckpt — so that the next round of a pseudo-label loop
 * continues the current model instead of starting again from random weights. Parameters only:
 * momentum, γ, the random streams and the schedule start fresh, and this run's config decides
 * everything else (the source run's network must match; the students check names and shapes).
 */
export async function loadInitialParameters(
  dir: string,
  keys: readonly StudentKey[],
  network: string,
): Promise<{ params: Partial<Record<StudentKey, ParameterGroup>>; source: InitSource }> {
  const params: Partial<Record<StudentKey, ParameterGroup>> = {};
  const checkpoints: InitSource['checkpoints'] = {};
  for (const key of keys) {
    const path = join(dir, `best-${key}.ckpt`);
    const bytes = await readFile(path).catch(() => {
      throw new InputError(`--init: no best-${key}.ckpt (is it a training run that validated at least once?)`, dir);
    });
    const file = await loadCheckpoint<{ config?: { network?: string } }>(path);
    const saved = file.state.config?.network ?? 'unet2d';
    if (saved !== network) throw new InputError(`--init: the run trained a ${saved}, this run trains a ${network}`, dir);
    const group = file.groups[`${key}.params`];
    if (!group) throw new InputError(`--init: best-${key}.ckpt holds no parameters of student ${key}`, dir);
    params[key] = group;
    checkpoints[key] = createHash('sha256').update(bytes).digest('hex');
  }
  return { params, source: { name: basename(dir), checkpoints } };
}
