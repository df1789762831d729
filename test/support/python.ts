/**
 * The Python side of the independent cross-checks, for tests and benches: which interpreter,
 * how a reference oracle (test/oracles/) is run, how tensors travel to it and back, and how
 * results are compared. Nothing here imports vitest or TensorFlow.js.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Debian's interpreter, which has the cross-check packages CI installs (python3-torch, -onnx,
 * -pydicom, -nibabel, -scipy); a pyenv or venv python earlier on PATH may not.
 */
export const PYTHON = '/usr/bin/python3';

/** The folder of the Python reference oracles. */
export const ORACLES = fileURLToPath(new URL('../oracles/', import.meta.url));

/** Throws `hint` unless PYTHON can import every module named. */
export function requirePythonModules(modules: readonly string[], hint: string): void {
  const r = spawnSync(PYTHON, ['-c', `import ${modules.join(', ')}`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(hint);
}

/** PyTorch for the network and loss references. */
export function requireTorch(): void {
  requirePythonModules(['torch'], 'PyTorch reference needs python3-torch: apt-get install -y python3-torch');
}

/** Runs test/oracles/`oracle` with `request` as JSON on standard input and returns its JSON answer. */
export function runOracle<T = any>(oracle: string, request: unknown, maxBuffer = 1 << 28): T {
  const r = spawnSync(PYTHON, [`${ORACLES}${oracle}`], { input: JSON.stringify(request), encoding: 'utf8', maxBuffer });
  if (r.status !== 0) throw new Error(`${oracle} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** A float32 tensor as the oracles read and write it: shape and little-endian bytes in base64. */
export interface PackedTensor {
  shape: number[];
  b64: string;
}

/** Packs anything with a shape and float data (a tf.Tensor included). */
export function pack(t: { shape: number[]; dataSync(): ArrayLike<number> }): PackedTensor {
  return { shape: t.shape, b64: Buffer.from(Float32Array.from(t.dataSync()).buffer).toString('base64') };
}

export function unpack(p: PackedTensor): Float32Array {
  const b = Buffer.from(p.b64, 'base64');
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** max |a − b| over two arrays of the same length (throws when the lengths differ). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`compared arrays differ in length: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
