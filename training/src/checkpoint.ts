import { readFile } from 'node:fs/promises';
import type * as tf from '@tensorflow/tfjs-core';
import { InputError } from '@alhvr/core';
import { writeFileAtomic } from '@alhvr/core/node';

/**
 * One file per checkpoint: magic "ALHVRCK1", uint32 JSON length, the JSON state, zero padding
 * to 4 bytes, then every tensor as little-endian float32 at the offset the JSON gives. One file
 * written through a temporary sibling and a rename, so a crash never leaves a broken checkpoint.
 */
const MAGIC = 'ALHVRCK1';

export interface TensorEntry {
  name: string;
  shape: number[];
  /** Offset in float32 elements from the start of the data section. */
  offset: number;
}


export interface CheckpointFile<S> {
  state: S;
  groups: Record<string, Map<string, { shape: number[]; data: Float32Array }>>;
}

export async function saveCheckpoint<S>(path: string, state: S, groups: Record<string, Map<string, tf.Tensor>>): Promise<void> {
  const index: Record<string, TensorEntry[]> = {};
  const chunks: Float32Array[] = [];
  let offset = 0;
  for (const [group, tensors] of Object.entries(groups)) {
    index[group] = [];
    for (const [name, t] of tensors) {
      const data = (await t.data()) as Float32Array;
      index[group].push({ name, shape: t.shape, offset });
      chunks.push(data instanceof Float32Array ? data : Float32Array.from(data));
      offset += data.length;
    }
  }
  const json = new TextEncoder().encode(JSON.stringify({ state, index }));
  const headerLength = MAGIC.length + 4 + json.length;
  const dataStart = Math.ceil(headerLength / 4) * 4;
  const bytes = new Uint8Array(dataStart + offset * 4);
  bytes.set(new TextEncoder().encode(MAGIC), 0);
  new DataView(bytes.buffer).setUint32(MAGIC.length, json.length, true);
  bytes.set(json, MAGIC.length + 4);
  const floats = new Float32Array(bytes.buffer, dataStart, offset);
  let at = 0;
  for (const c of chunks) {
    floats.set(c, at);
    at += c.length;
  }
  await writeFileAtomic(path, bytes);
}

export async function loadCheckpoint<S>(path: string): Promise<CheckpointFile<S>> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(path));
  } catch (err) {
    throw new InputError(`cannot read checkpoint (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, path);
  }
  if (bytes.length < MAGIC.length + 4 || new TextDecoder().decode(bytes.subarray(0, MAGIC.length)) !== MAGIC) {
    throw new InputError('not an ALHVR checkpoint', path);
  }
  const jsonLength = new DataView(bytes.buffer, bytes.byteOffset).getUint32(MAGIC.length, true);
  if (MAGIC.length + 4 + jsonLength > bytes.length) throw new InputError('checkpoint is truncated', path);
  let parsed: { state: S; index: Record<string, TensorEntry[]> };
  try {
    parsed = JSON.parse(new TextDecoder().decode(bytes.subarray(MAGIC.length + 4, MAGIC.length + 4 + jsonLength)));
  } catch {
    throw new InputError('checkpoint header is corrupt', path);
  }
  const dataStart = Math.ceil((MAGIC.length + 4 + jsonLength) / 4) * 4;
  const floatCount = Math.floor((bytes.length - dataStart) / 4);
  // Copy once into an aligned buffer; tensors are views of it.
  const floats = new Float32Array(floatCount);
  new Uint8Array(floats.buffer).set(bytes.subarray(dataStart, dataStart + floatCount * 4));
  const groups: CheckpointFile<S>['groups'] = {};
  for (const [group, entries] of Object.entries(parsed.index)) {
    const m = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const e of entries) {
      const size = e.shape.reduce((a, b) => a * b, 1);
      if (e.offset + size > floatCount) throw new InputError(`checkpoint is truncated (tensor ${group}/${e.name})`, path);
      m.set(e.name, { shape: e.shape, data: floats.subarray(e.offset, e.offset + size) });
    }
    groups[group] = m;
  }
  return { state: parsed.state, groups };
}
