import { createWriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { constants as zlibConstants, crc32, createGzip, deflateRaw } from 'node:zlib';
import { InputError, encodeNiftiParts, type Volume } from '@alhvr/core';
import { writeAtomicWith } from '@alhvr/core/node';

/**
 * gzip level of the segmentation outputs. Label maps compress to almost nothing at any level;
 * for the float32 maps level 1 costs a few per cent more bytes than 6 and is several times faster.
 */
export const OUTPUT_GZIP_LEVEL = 1;

const deflateRawAsync = promisify(deflateRaw);

/** Bytes of each of the four windows a float map's strategy is chosen on. */
const SAMPLE_WINDOW = 64 * 1024;
/** Huffman coding alone is chosen when its sample is at most this much larger than level 1's. */
const HUFFMAN_SLACK = 1.02;

/**
 * The deflate strategy for a map's voxel bytes. Float maps from a network hold few repeated
 * strings: level 1 spends most of its time looking for matches and then saves under 2 % over
 * Huffman coding alone (phantom confidence maps of the shipped model: 1.23 against 1.24 MB, 40
 * against 15 ms). Where values do repeat (a map of exact 1.0s, say) matching pays, so the choice is
 * made on four windows spread over the map, compressed both ways in the thread pool.
 */
export async function deflateStrategyFor(voxels: Uint8Array, level: number): Promise<number> {
  if (voxels.byteLength < 8 * SAMPLE_WINDOW) return zlibConstants.Z_DEFAULT_STRATEGY;
  const windows = [1, 3, 5, 7].map((eighth) => {
    const start = Math.floor((voxels.byteLength * eighth) / 8 / 4) * 4;
    return voxels.subarray(start, start + SAMPLE_WINDOW);
  });
  const sample = Buffer.concat(windows);
  const [matched, huffman] = await Promise.all([
    deflateRawAsync(sample, { level }),
    deflateRawAsync(sample, { level, strategy: zlibConstants.Z_HUFFMAN_ONLY }),
  ]);
  return huffman.byteLength <= HUFFMAN_SLACK * matched.byteLength ? zlibConstants.Z_HUFFMAN_ONLY : zlibConstants.Z_DEFAULT_STRATEGY;
}

export interface NiftiGzipOptions {
  datatype?: 'uint8' | 'float32';
  description?: string;
  level?: number;
  /** Voxel bytes per independently compressed piece of a large map (default PIECE_BYTES). */
  pieceBytes?: number;
}

/**
 * Maps of more than two pieces are compressed piece by piece in the thread pool, several at once
 * (a 512×512×300 float32 map is 38 pieces), into one gzip member as pigz writes it: each piece a
 * deflate stream of its own, ended by a sync flush (the last one finished), so the pieces join into
 * one deflate stream any gzip reader takes. At most PIECES_IN_FLIGHT compressed pieces are held.
 */
export const PIECE_BYTES = 8 << 20;
const PIECES_IN_FLIGHT = 4;

async function writeGzipInPieces(tmp: string, parts: Uint8Array[], level: number, strategy: number, pieceBytes: number): Promise<void> {
  const pieces: Uint8Array[] = [];
  let crc = 0;
  let size = 0;
  for (const part of parts) {
    crc = crc32(part, crc);
    size += part.byteLength;
    for (let at = 0; at < part.byteLength; at += pieceBytes) pieces.push(part.subarray(at, Math.min(part.byteLength, at + pieceBytes)));
  }
  const compress = (n: number) => {
    const piece = pieces[n];
    const last = n === pieces.length - 1;
    const run = deflateRawAsync(Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength), { level, strategy, chunkSize: 1 << 20, finishFlush: last ? zlibConstants.Z_FINISH : zlibConstants.Z_SYNC_FLUSH });
    run.catch(() => undefined); // awaited in order below
    return run;
  };
  const file = await open(tmp, 'w');
  const writeAll = async (bytes: Uint8Array) => {
    for (let at = 0; at < bytes.byteLength; ) at += (await file.write(bytes, at, bytes.byteLength - at)).bytesWritten;
  };
  try {
    // gzip header: deflate, no flags, mtime 0 (the same map always gives the same bytes), OS unknown.
    await writeAll(Uint8Array.of(0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255));
    const running = pieces.slice(0, PIECES_IN_FLIGHT).map((_, n) => compress(n));
    for (let n = 0; n < pieces.length; n++) {
      const compressed = await running[n];
      if (n + PIECES_IN_FLIGHT < pieces.length) running.push(compress(n + PIECES_IN_FLIGHT));
      await writeAll(compressed);
      delete running[n];
    }
    const trailer = Buffer.alloc(8);
    trailer.writeUInt32LE(crc >>> 0, 0);
    trailer.writeUInt32LE(size % 2 ** 32, 4);
    await writeAll(trailer);
  } finally {
    await file.close();
  }
}

/**
 * Write a .nii.gz atomically, as core's writeNiftiFile does (same header and voxel bytes, same
 * errors), but compressed in the background thread pool at OUTPUT_GZIP_LEVEL (float maps with
 * the strategy deflateStrategyFor picks), so the main thread can keep feeding ONNX Runtime meanwhile.
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
  // into the temporary file, so no compressed copy of a CT-sized map is ever held in memory (large
  // maps: a few compressed pieces at a time).
  const level = opts.level ?? OUTPUT_GZIP_LEVEL;
  const strategy = opts.datatype === 'float32' || (opts.datatype === undefined && vol.data instanceof Float32Array) ? await deflateStrategyFor(parts[1], level) : zlibConstants.Z_DEFAULT_STRATEGY;
  const pieceBytes = opts.pieceBytes ?? PIECE_BYTES;
  try {
    await writeAtomicWith(path, (tmp) =>
      parts[1].byteLength > 2 * pieceBytes
        ? writeGzipInPieces(tmp, parts, level, strategy, pieceBytes)
        : pipeline(
            Readable.from(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength))),
            createGzip({ level, strategy, chunkSize: 1 << 20 }),
            createWriteStream(tmp),
          ),
    );
  } catch (err) {
    const code = (err as NodeJS.ErrnoException)?.code;
    throw new InputError(`cannot write file (${code ?? (err instanceof Error ? err.message : String(err))})`, path);
  }
}
