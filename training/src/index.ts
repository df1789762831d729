export {};
export * from './backend/select-backend.js';
export * from './backend/wasm-training-kernels.js';
