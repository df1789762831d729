// Browser-safe entry point: everything here works on bytes and arrays, never on the file system.
export * from './geometry/affine.js';
export * from './volume.js';
export * from './errors.js';
export * from './geometry/reorient.js';
export * from './geometry/resample.js';
export * from './model-card.js';
export * from './random.js';
export * from './metrics/segmentation.js';
export * from './normalise.js';
export * from './dicom/codecs.js';
export * from './dicom/instance.js';
export * from './dicom/series.js';
export * from './dicom/uid.js';
export * from './dicom/seg-write.js';
export * from './nifti/read.js';
export * from './nifti/write.js';
export * from './phantom/cardiac.js';
