// Stands in for the compressed-DICOM codec packages core imports on demand (their builds are
// Node-flavoured Emscripten, not bundled yet): importing one fails with a sentence a user can act on.
throw new Error(
  'compressed DICOM (JPEG, JPEG-LS, JPEG 2000 or RLE) cannot be decoded in this page yet: convert the series to uncompressed DICOM or NIfTI first (alhvr-convert, or gdcmconv --raw)',
);
