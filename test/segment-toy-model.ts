import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { PYTHON } from './support/python.js';

const SCRIPT = fileURLToPath(new URL('./make-test-model.py', import.meta.url));

/** Write the toy two-student model (see make-test-model.py) and return its path. */
export function makeToyModel(dir: string, opts: { size?: [number, number]; card?: Record<string, unknown>; name?: string } = {}): string {
  const out = join(dir, opts.name ?? 'toy.onnx');
  const args = [SCRIPT, out];
  if (opts.size) args.push('--size', String(opts.size[0]), String(opts.size[1]));
  if (opts.card) args.push('--card-json', JSON.stringify(opts.card));
  execFileSync(PYTHON, args, { stdio: 'pipe' });
  return out;
}

export interface ToyReference {
  label: Uint8Array;
  margin: Float32Array;
  student: Float32Array;
}

/** The toy network's numpy forward pass on preprocessed slices (N × H × W). */
export function toyReference(dir: string, slices: Float32Array, n: number, h: number, w: number): ToyReference {
  const input = join(dir, 'ref-in.f32');
  const prefix = join(dir, 'ref-out');
  writeFileSync(input, new Uint8Array(slices.buffer, slices.byteOffset, slices.byteLength));
  execFileSync(PYTHON, [SCRIPT, join(dir, 'ref-model.onnx'), '--reference', input, String(n), String(h), String(w), prefix], { stdio: 'pipe' });
  const f32 = (p: string) => {
    const b = readFileSync(p);
    return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  };
  return { label: new Uint8Array(readFileSync(`${prefix}.label.u8`)), margin: f32(`${prefix}.margin.f32`), student: f32(`${prefix}.student.f32`) };
}
