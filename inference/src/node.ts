export {};
export * from './device.js';
export * from './session-node.js';
export * from './outputs.js';
export * from './preview.js';
export * from './case-id.js';
export * from './manifest.js';
export * from './run.js';
export * from './index.js';
