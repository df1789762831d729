// Browser entry point: open an exported ALHVR model in onnxruntime-web, segment NIfTI files, draw slices.
export * from './load-model.js';
export * from './segment-nifti.js';
export * from './slice-renderer.js';
