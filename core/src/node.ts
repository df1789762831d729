// Node-only entry point: file-system readers, folder scanning and atomic writes.
export * from './io/atomic-write.js';
export * from './dicom/scan.js';
export * from './dicom/seg-file.js';
export * from './nifti/file.js';
export * from './phantom/dataset.js';
export * from './io/ssl4mis-h5.js';
export * from './phantom/abdomen-dataset.js';
