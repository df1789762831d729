export {};
export * from './model-metadata.js';
export * from './session.js';
export * from './seg-identity.js';
export * from './pipeline.js';
export * from './canonical-grid.js';
export * from './report.js';
export * from './plane-normaliser.js';
