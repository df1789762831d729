/**
 * The benchmark's model: the default-width ALHVR U-Net pair ([16, 32, 64, 128, 256], 4 classes),
 * random weights made to behave like trained ones (BatchNorm running statistics calibrated on
 * phantom slices, see test/export-fixtures.ts), exported with `exportOnnx` at 256², plus the same
 * weights as raw float32 for the PyTorch port (bench/segment-torch.py).
 *
 *   npx tsx bench/segment-model.ts OUT_DIR
 *
 * Writes OUT_DIR/alhvr-unet.onnx, OUT_DIR/weights.f32 and OUT_DIR/weights.json
 * ({ widths, numClasses, students: [{ name: { offset, shape } }] }, kernels [kh, kw, cin, cout]).
 */
// First import: @alhvr/export loads onnxruntime-node (parity); its telemetry is off before that.
import '@alhvr/inference/no-telemetry';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_WIDTHS, type UNet } from '@alhvr/training';
import { exportOnnx } from '@alhvr/export';
import { makeCard, makeStudent, useBackend } from '../test/export-fixtures.js';

export const MODEL_SIZE: [number, number] = [256, 256];

async function main(outDir: string): Promise<void> {
  await useBackend();
  mkdirSync(outDir, { recursive: true });
  // Calibrating at 64² instead of the fixtures' 32² keeps deep-level statistics from 4×4 maps.
  const students: UNet[] = [
    makeStudent(31, { widths: DEFAULT_WIDTHS, calibrationSize: 64 }),
    makeStudent(32, { widths: DEFAULT_WIDTHS, calibrationSize: 64 }),
  ];
  const card = { ...makeCard(MODEL_SIZE), name: 'bench-alhvr-unet', description: 'Benchmark model: default-width ALHVR U-Net pair, random calibrated weights (not trained).' };
  const { onnx, summary } = exportOnnx(students, card);
  writeFileSync(join(outDir, 'alhvr-unet.onnx'), onnx);

  const chunks: Float32Array[] = [];
  let offset = 0;
  const index = students.map((net) => {
    const entries: Record<string, { offset: number; shape: number[] }> = {};
    for (const [name, v] of net.params.variables) {
      const data = v.dataSync() as Float32Array;
      entries[name] = { offset, shape: v.shape };
      chunks.push(data);
      offset += data.length;
    }
    return entries;
  });
  const all = new Float32Array(offset);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  writeFileSync(join(outDir, 'weights.f32'), new Uint8Array(all.buffer));
  writeFileSync(join(outDir, 'weights.json'), JSON.stringify({ widths: DEFAULT_WIDTHS, numClasses: 4, students: index }));
  process.stdout.write(`${JSON.stringify({ parameters: summary.trainableParameters, fileBytes: summary.fileBytes })}\n`);
  for (const s of students) s.dispose();
}

await main(process.argv[2] ?? 'bench-model');
