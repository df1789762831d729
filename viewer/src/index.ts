// Browser entry point: open an exported ALHVR model in onnxruntime-web, segment NIfTI files and DICOM series, draw slices.
export * from './load-model.js';
export * from './segment-nifti.js';
export * from './slice-renderer.js';
export * from './segment-dicom.js';
export * from './segment-worker.js';
export * from './worker-client.js';
export * from './case-files.js';
export * from './study-view.js';
