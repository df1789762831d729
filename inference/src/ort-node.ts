// The one module that imports onnxruntime-node, so the telemetry guard always runs before the
// native library loads (see no-telemetry.ts). Import `ort` from here, never from the package.
import './no-telemetry.js';
import * as ort from 'onnxruntime-node';

export { ort };
