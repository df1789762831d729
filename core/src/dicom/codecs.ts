import { Decoder as JpegLosslessDecoder } from 'jpeg-lossless-decoder-js';
import { InputError } from '../errors.js';

/** What a decoder needs to know about one frame, from the DICOM header. */
export interface FrameLayout {
  rows: number;
  columns: number;
  bitsAllocated: number;
  bitsStored: number;
  pixelRepresentation: number;
  samplesPerPixel: number;
  photometricInterpretation: string;
}

export const TRANSFER_SYNTAXES: Record<string, string> = {
  '1.2.840.10008.1.2': 'Implicit VR Little Endian',
  '1.2.840.10008.1.2.1': 'Explicit VR Little Endian',
  '1.2.840.10008.1.2.1.99': 'Deflated Explicit VR Little Endian',
  '1.2.840.10008.1.2.2': 'Explicit VR Big Endian',
  '1.2.840.10008.1.2.5': 'RLE Lossless',
  '1.2.840.10008.1.2.4.50': 'JPEG Baseline (Process 1)',
  '1.2.840.10008.1.2.4.51': 'JPEG Extended (Process 2 & 4)',
  '1.2.840.10008.1.2.4.57': 'JPEG Lossless (Process 14)',
  '1.2.840.10008.1.2.4.70': 'JPEG Lossless SV1 (Process 14, Selection Value 1)',
  '1.2.840.10008.1.2.4.80': 'JPEG-LS Lossless',
  '1.2.840.10008.1.2.4.81': 'JPEG-LS Near-Lossless',
  '1.2.840.10008.1.2.4.90': 'JPEG 2000 Lossless',
  '1.2.840.10008.1.2.4.91': 'JPEG 2000',
  '1.2.840.10008.1.2.4.201': 'HT JPEG 2000 Lossless',
  '1.2.840.10008.1.2.4.202': 'HT JPEG 2000 RPCL Lossless',
  '1.2.840.10008.1.2.4.203': 'HT JPEG 2000',
  '1.2.840.10008.1.2.4.100': 'MPEG2 Main Profile',
  '1.2.840.10008.1.2.4.102': 'MPEG-4 AVC/H.264',
};

/** Uncompressed syntaxes: pixel data is a plain byte run, never fragments. */
const NATIVE = new Set(['1.2.840.10008.1.2', '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.1.99', '1.2.840.10008.1.2.2']);

type Family = 'jpeg-baseline' | 'jpeg-extended' | 'jpeg-lossless' | 'jpeg-ls' | 'jpeg-2000' | 'rle';
const FAMILY: Record<string, Family> = {
  '1.2.840.10008.1.2.5': 'rle',
  '1.2.840.10008.1.2.4.50': 'jpeg-baseline',
  '1.2.840.10008.1.2.4.51': 'jpeg-extended',
  '1.2.840.10008.1.2.4.57': 'jpeg-lossless',
  '1.2.840.10008.1.2.4.70': 'jpeg-lossless',
  '1.2.840.10008.1.2.4.80': 'jpeg-ls',
  '1.2.840.10008.1.2.4.81': 'jpeg-ls',
  '1.2.840.10008.1.2.4.90': 'jpeg-2000',
  '1.2.840.10008.1.2.4.91': 'jpeg-2000',
};

export function transferSyntaxName(uid: string): string {
  return TRANSFER_SYNTAXES[uid] ?? 'unknown';
}

export function isNativeTransferSyntax(uid: string): boolean {
  return NATIVE.has(uid);
}

export function isSupportedTransferSyntax(uid: string): boolean {
  return NATIVE.has(uid) || uid in FAMILY;
}

export function unsupportedTransferSyntax(uid: string, file?: string): InputError {
  return new InputError(`unsupported transfer syntax ${transferSyntaxName(uid)} (${uid})`, file);
}

// Each wasm module is instantiated once, on first use. A module that threw mid-decode may be left
// aborted by Emscripten, so a failure drops the cached instance and the next frame gets a fresh one.
const cache = new Map<string, Promise<unknown>>();
function lazy<T>(key: string, load: () => Promise<T>): Promise<T> {
  let p = cache.get(key) as Promise<T> | undefined;
  if (!p) {
    p = load();
    cache.set(key, p);
    p.catch(() => cache.delete(key));
  }
  return p;
}

async function emscriptenModule(family: 'jpeg-baseline' | 'jpeg-ls' | 'jpeg-2000'): Promise<EmscriptenCodecModule> {
  return lazy(family, async () => {
    const imported =
      family === 'jpeg-baseline'
        ? await import('@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs')
        : family === 'jpeg-ls'
          ? await import('@cornerstonejs/codec-charls/decodewasmjs')
          : await import('@cornerstonejs/codec-openjpeg/decodewasmjs');
    // The codecs print progress to stdout by default; a library must stay quiet.
    return imported.default({ print: () => {}, printErr: () => {} });
  });
}

type DcmjsCodecs = typeof import('dcmjs-codecs');
async function dcmjsCodecs(): Promise<DcmjsCodecs> {
  return lazy('dcmjs-codecs', async () => {
    const imported = (await import('dcmjs-codecs')) as DcmjsCodecs & { default?: DcmjsCodecs };
    const lib = imported.default ?? imported;
    if (!lib.NativeCodecs.isInitialized()) await lib.NativeCodecs.initializeAsync();
    return lib;
  });
}

/** Width/height a JPEG (SOFn) or JPEG-LS (SOF55) stream declares, or undefined if none is found. */
function jpegDimensions(bytes: Uint8Array): [number, number] | undefined {
  if (bytes[0] !== 0xff || bytes[1] !== 0xd8) return undefined;
  let p = 2;
  while (p + 4 <= bytes.length) {
    if (bytes[p] !== 0xff) return undefined;
    const marker = bytes[p + 1];
    if (marker === 0xff) {
      p++;
      continue;
    }
    const isSof = (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) || marker === 0xf7;
    const len = (bytes[p + 2] << 8) | bytes[p + 3];
    if (isSof) {
      if (p + 9 > bytes.length) return undefined;
      const h = (bytes[p + 5] << 8) | bytes[p + 6];
      const w = (bytes[p + 7] << 8) | bytes[p + 8];
      return [w, h];
    }
    if (marker === 0xda || len < 2) return undefined;
    p += 2 + len;
  }
  return undefined;
}

/** Image size from a JPEG 2000 codestream's SIZ segment (raw J2K or inside a JP2 box). */
function j2kDimensions(bytes: Uint8Array): [number, number] | undefined {
  const limit = Math.min(bytes.length - 20, 4096);
  for (let p = 0; p < limit; p++) {
    if (bytes[p] === 0xff && bytes[p + 1] === 0x4f && bytes[p + 2] === 0xff && bytes[p + 3] === 0x51) {
      const r32 = (q: number) => ((bytes[q] << 24) >>> 0) + (bytes[q + 1] << 16) + (bytes[q + 2] << 8) + bytes[q + 3];
      const s = p + 6; // after SOC, SIZ marker, Lsiz, Rsiz
      const xsiz = r32(s + 2), ysiz = r32(s + 6), xo = r32(s + 10), yo = r32(s + 14);
      return [xsiz - xo, ysiz - yo];
    }
  }
  return undefined;
}

/**
 * Refuses a stream whose own header states a different size than Rows/Columns, before any codec
 * allocates for it: a corrupt header must not make a decoder reserve gigabytes.
 */
function checkStreamSize(family: Family, encoded: Uint8Array, layout: FrameLayout, file?: string): void {
  if (family === 'rle') {
    // RLE states no image size, but a run packs at most 128 bytes into 2: more output than 64×
    // the input cannot be genuine, and must not be allocated.
    const need = layout.rows * layout.columns * layout.samplesPerPixel * bytesPerSample(layout);
    if (need > 64 * encoded.length) {
      throw new InputError(`RLE frame of ${encoded.length} bytes cannot hold ${layout.columns}×${layout.rows} pixels`, file);
    }
    return;
  }
  const dims = family === 'jpeg-2000' ? j2kDimensions(encoded) : jpegDimensions(encoded);
  if (!dims) throw new InputError(`corrupt ${family} frame: no image size in the codestream header`, file);
  if (dims[0] !== layout.columns || dims[1] !== layout.rows) {
    throw new InputError(
      `${family} frame is ${dims[0]}×${dims[1]} but the header says Columns ${layout.columns}, Rows ${layout.rows}`,
      file,
    );
  }
}

function bytesPerSample(layout: FrameLayout): number {
  return layout.bitsAllocated <= 8 ? 1 : layout.bitsAllocated <= 16 ? 2 : 4;
}

function describe(e: unknown): string {
  if (e instanceof Error) return e.message;
  return typeof e === 'string' ? e : `codec error ${String(e)}`;
}

async function decodeWithEmscripten(family: 'jpeg-baseline' | 'jpeg-ls' | 'jpeg-2000', encoded: Uint8Array): Promise<Uint8Array> {
  const mod = await emscriptenModule(family);
  const Ctor = family === 'jpeg-baseline' ? mod.JPEGDecoder : family === 'jpeg-ls' ? mod.JpegLSDecoder : mod.J2KDecoder;
  if (!Ctor) throw new Error(`${family} codec module has no decoder`);
  const decoder = new Ctor();
  try {
    decoder.getEncodedBuffer(encoded.length).set(encoded);
    decoder.decode();
    // The decoded buffer is a view into wasm memory that the next decode overwrites: copy it out.
    return decoder.getDecodedBuffer().slice();
  } finally {
    decoder.delete();
  }
}

async function decodeWithDcmjsCodecs(family: 'rle' | 'jpeg-extended', encoded: Uint8Array, layout: FrameLayout): Promise<Uint8Array> {
  const lib = await dcmjsCodecs();
  const ctx = new lib.Context({
    width: layout.columns,
    height: layout.rows,
    bitsAllocated: layout.bitsAllocated,
    bitsStored: layout.bitsStored,
    samplesPerPixel: layout.samplesPerPixel,
    pixelRepresentation: layout.pixelRepresentation,
    planarConfiguration: 0,
    photometricInterpretation: layout.photometricInterpretation,
    encodedBuffer: encoded,
  });
  const out = family === 'rle' ? lib.NativeCodecs.decodeRle(ctx) : lib.NativeCodecs.decodeJpeg(ctx, { convertColorspaceToRgb: false });
  const decoded = out.getDecodedBuffer();
  if (!decoded) throw new Error('codec returned no pixels');
  return decoded.slice();
}

function decodeJpegLossless(encoded: Uint8Array, layout: FrameLayout): Uint8Array {
  const copy = encoded.slice();
  const out = new JpegLosslessDecoder().decode(copy.buffer, 0, copy.length, bytesPerSample(layout));
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/**
 * Decodes one compressed frame into little-endian sample bytes (Rows×Columns×SamplesPerPixel
 * samples of BitsAllocated each). Every failure, including a wrong decoded size, is an InputError.
 */
export async function decodeCompressedFrame(
  transferSyntaxUID: string,
  encoded: Uint8Array,
  layout: FrameLayout,
  file?: string,
): Promise<Uint8Array> {
  const family = FAMILY[transferSyntaxUID];
  if (!family) throw unsupportedTransferSyntax(transferSyntaxUID, file);
  checkStreamSize(family, encoded, layout, file);
  let bytes: Uint8Array;
  try {
    if (family === 'rle' || family === 'jpeg-extended') bytes = await decodeWithDcmjsCodecs(family, encoded, layout);
    else if (family === 'jpeg-lossless') bytes = decodeJpegLossless(encoded, layout);
    else bytes = await decodeWithEmscripten(family, encoded);
  } catch (e) {
    cache.delete(family === 'rle' || family === 'jpeg-extended' ? 'dcmjs-codecs' : family);
    throw new InputError(`cannot decode ${transferSyntaxName(transferSyntaxUID)} frame: ${describe(e)}`, file);
  }
  const expected = layout.rows * layout.columns * layout.samplesPerPixel * bytesPerSample(layout);
  if (bytes.length !== expected) {
    throw new InputError(
      `decoded ${transferSyntaxName(transferSyntaxUID)} frame has ${bytes.length} bytes, ${layout.columns}×${layout.rows}×${layout.samplesPerPixel} samples need ${expected}`,
      file,
    );
  }
  return bytes;
}
