import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { InputError, encodeNiftiParts, type Volume } from '@alhvr/core';
import { writeAtomicWith } from '@alhvr/core/node';

/**
 * gzip level of the segmentation outputs. Label maps compress to almost nothing at any level;
 * for the float32 maps level 1 costs a few per cent more bytes than 6 and is several times faster.
 */
export const OUTPUT_GZIP_LEVEL = 1;

export interface NiftiGzipOptions {
  datatype?: 'uint8' | 'float32';
  description?: string;
  level?: number;
}

/**
 * Write a .nii.gz atomically, as core's writeNiftiFile does (same header and voxel bytes, same
 * errors), but compressed in the background thread pool at OUTPUT_GZIP_LEVEL, so the main
 * thread can keep feeding ONNX Runtime meanwhile.
 */
export async function writeNiftiGzip(path: string, vol: Volume, opts: NiftiGzipOptions = {}): Promise<void> {
  if (!path.toLowerCase().endsWith('.nii.gz')) throw new InputError('output must be named .nii.gz', path);
  let parts: Uint8Array[];
  try {
    const { header, voxels } = encodeNiftiParts(vol, { datatype: opts.datatype, description: opts.description });
    parts = [header, voxels];
  } catch (err) {
    if (err instanceof InputError) throw new InputError(err.message, path);
    throw err;
  }
  // Streamed: header and voxels (views, no copy) through node:zlib in libuv's thread pool straight
  // into the temporary file, so no compressed copy of a CT-sized map is ever held in memory.
  const level = opts.level ?? OUTPUT_GZIP_LEVEL;
  try {
    await writeAtomicWith(path, (tmp) =>
      pipeline(
        Readable.from(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength))),
        createGzip({ level, chunkSize: 1 << 20 }),
        createWriteStream(tmp),
      ),
    );
  } catch (err) {
    const code = (err as NodeJS.ErrnoException)?.code;
    throw new InputError(`cannot write file (${code ?? (err instanceof Error ? err.message : String(err))})`, path);
  }
}
