// Node-only entry point: file-system readers, folder scanning, atomic writes, and the DICOMweb
// transport (Node's http/https) that alhvr-segment and the pseudo-label reader share.
export * from './io/atomic-write.js';
export * from './dicom/scan.js';
export * from './dicom/seg-file.js';
export * from './nifti/file.js';
export * from './phantom/dataset.js';
export * from './io/ssl4mis-h5.js';
export * from './phantom/abdomen-dataset.js';
export * from './dicomweb/transport.js';
