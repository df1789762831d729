export {};
export * from './float16.js';
export * from './onnx-graph-builder.js';
export * from './unet-weights.js';
export * from './export-onnx.js';
export * from './onnx-model-card.js';
export * from './parity.js';
export * from './toolkit-info.js';
export * from './checkpoint-export.js';
