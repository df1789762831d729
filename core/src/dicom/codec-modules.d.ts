// The codec packages ship no type declarations; these describe the parts the DICOM reader calls.

interface EmscriptenFrameInfo {
  width: number;
  height: number;
  bitsPerSample: number;
  componentCount: number;
  isSigned?: boolean;
}

interface EmscriptenDecoder {
  getEncodedBuffer(length: number): Uint8Array;
  decode(): void;
  getFrameInfo(): EmscriptenFrameInfo;
  getDecodedBuffer(): Uint8Array;
  delete(): void;
}

interface EmscriptenCodecModule {
  JPEGDecoder?: new () => EmscriptenDecoder;
  JpegLSDecoder?: new () => EmscriptenDecoder;
  J2KDecoder?: new () => EmscriptenDecoder;
}

type EmscriptenCodecFactory = (moduleArg?: Record<string, unknown>) => Promise<EmscriptenCodecModule>;

declare module '@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs' {
  const factory: EmscriptenCodecFactory;
  export default factory;
}
declare module '@cornerstonejs/codec-charls/decodewasmjs' {
  const factory: EmscriptenCodecFactory;
  export default factory;
}
declare module '@cornerstonejs/codec-openjpeg/decodewasmjs' {
  const factory: EmscriptenCodecFactory;
  export default factory;
}

declare module 'jpeg-lossless-decoder-js' {
  export class Decoder {
    decode(buffer: ArrayBuffer, offset: number, length: number, numBytes?: number): Uint8Array | Uint16Array | Int16Array;
  }
}
