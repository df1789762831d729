// Imported for its side effect, before anything that loads onnxruntime-node (ES modules run their
// imports in order, so `import '@alhvr/inference/no-telemetry'` first is enough).
//
// onnxruntime-node 1.30 queues 1DS telemetry for upload (~/.cache/Microsoft/DeveloperTools/
// .onnxruntime: a device id and events carrying OS, hardware and the model's metadata). The
// native library reads this variable once, when it initialises; only this name works
// (ORT_TELEMETRY_DISABLED does not). Set unconditionally: a caller's ORT_DISABLE_TELEMETRY=0 must
// not turn it back on, because the toolkit promises that nothing leaves the machine.
process.env.ORT_DISABLE_TELEMETRY = '1';

export {};
