export {};
export * from './device.js';
export * from './session-node.js';
// The runtime itself, for the few callers that run a graph other than a model's (int8 calibration).
export { ort, ortRuntime } from './ort-node.js';
export * from './outputs.js';
export * from './preview.js';
export * from './case-id.js';
export * from './manifest.js';
export * from './run.js';
export * from './index.js';
export * from './nifti-gzip-node.js';
export * from './dicomweb-transport.js';
export * from './dicomweb-run.js';
