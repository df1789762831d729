import { Gunzip } from 'fflate';
import { InputError } from '../errors.js';

/** DEFLATE cannot expand data by more than about 1032:1, so a header may not claim more than this. */
const MAX_DEFLATE_RATIO = 1032;
/**
 * Compressed bytes fed per step, chosen from the compression ratio seen so far so that about
 * TARGET_OUTPUT_PER_STEP appears between two size checks. Small steps are slow (fflate allocates
 * fresh output buffers per push), large ones let a bomb expand far before we look; the cap
 * bounds one step's output to MAX_STEP × 1032 ≈ 270 MB even if the ratio jumps.
 */
const MIN_STEP = 16 * 1024;
const MAX_STEP = 256 * 1024;
const TARGET_OUTPUT_PER_STEP = 32 * 1024 * 1024;
const INITIAL_CAPACITY = 1 << 20;

export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** Upper bound on what a gzip stream of this many bytes can decompress to. */
export function maxInflatedSize(compressedLength: number): number {
  return compressedLength * MAX_DEFLATE_RATIO + 1024;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Decompressed bytes [start, start + length) of a gzip stream, inflating only as far as needed
 * and keeping only that range, so a header's claim cannot make us allocate more than the stream
 * really yields. With `allowShort`, a stream that ends early returns what it had; otherwise that
 * is an InputError.
 */
export function inflateRange(
  gz: Uint8Array,
  start: number,
  length: number,
  label: string | undefined,
  allowShort = false,
): Uint8Array {
  let out = new Uint8Array(Math.min(length, INITIAL_CAPACITY));
  let filled = 0;
  let position = 0;
  const end = start + length;
  const gunzip = new Gunzip((chunk) => {
    const from = Math.max(start - position, 0);
    const to = Math.min(chunk.length, end - position);
    position += chunk.length;
    if (to <= from) return;
    const need = filled + (to - from);
    if (need > out.length) {
      // Grow geometrically but never past the requested length: memory follows real output.
      const grown = new Uint8Array(Math.min(length, Math.max(need, out.length * 2)));
      grown.set(out.subarray(0, filled));
      out = grown;
    }
    out.set(chunk.subarray(from, to), filled);
    filled = need;
  });
  try {
    let offset = 0;
    while (offset < gz.length && filled < length) {
      const ratio = offset > 0 ? Math.max(position / offset, 1) : MAX_DEFLATE_RATIO;
      const step = Math.min(MAX_STEP, Math.max(MIN_STEP, Math.floor(TARGET_OUTPUT_PER_STEP / ratio)));
      const stop = Math.min(offset + step, gz.length);
      gunzip.push(gz.subarray(offset, stop), stop === gz.length);
      offset = stop;
    }
  } catch (err) {
    if (err instanceof InputError) throw err;
    if (!(allowShort && filled > 0)) throw new InputError(`corrupt gzip data (${describe(err)})`, label);
  }
  if (filled < length) {
    if (allowShort) return out.subarray(0, filled);
    throw new InputError(
      `truncated: the header needs ${end} decompressed bytes but the gzip stream holds only ${Math.max(position, 0)}`,
      label,
    );
  }
  return out.length === length ? out : out.subarray(0, length);
}
