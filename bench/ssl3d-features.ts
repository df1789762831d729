/**
 * What a trained 3D student makes of each organ at its last stage (issue 17): the decoder's final
 * feature map (the head's input, after ReLU) and the logits, averaged over the voxels of each
 * reference class, on whole volumes a run cached at its training grid (validation or labelled
 * cases; BN in eval mode). It shows whether the organs a student never predicts have their own
 * features or collapse onto another class's.
 *
 *   npx tsx bench/ssl3d-features.ts RUN_DIR CASE... [--out bench/results/ssl3d-features.json] [--label NAME]
 *
 * RUN_DIR: an `alhvr-train` vnet3d run (its best checkpoints, its cache/3d volumes); CASE: ids in
 * that cache (phantom_036). Results are merged into the output file under --label (default: the run folder's name).
 */
import '@alhvr/inference/no-telemetry';
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { applyIntensityMap, intensityMap, type Normalisation } from '@alhvr/core';
import { writeFileAtomic } from '@alhvr/core/node';
import { loadRunForExport } from '@alhvr/export';
import { selectBackend } from '@alhvr/training';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name: string) => {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
};
const outFile = opt('out') ?? join(here, 'results', 'ssl3d-features.json');
const labelArg = opt('label');
const [runDir, ...cases] = args;
const label = labelArg ?? basename(runDir);
if (!runDir || cases.length === 0) throw new Error('usage: ssl3d-features.ts RUN_DIR CASE... [--out FILE] [--label NAME]');

await selectBackend('wasm', { threads: 1, log: () => {} });
const run = await loadRunForExport(runDir);
const normalisation = run.card.normalisation as Normalisation;

/** The VNet's private stages, reached here to read the head's input; the head's 1×1×1 conv is swapped for an identity. */
type Inner = { encode(x: tf.Tensor5D, training: boolean): tf.Tensor5D[]; decode(f: tf.Tensor5D[], training: boolean): { logits: tf.Tensor5D }; spec: { head: { name: string } }; params: { get(n: string): tf.Variable; variables: Map<string, tf.Variable> } };

const PAD = 255;
const results: Record<string, unknown>[] = [];
for (const id of cases) {
  const meta = JSON.parse(readFileSync(join(runDir, 'cache', '3d', `${id}.json`), 'utf8')) as { volume: { dims: [number, number, number] } };
  const [X, Y, Z] = meta.volume.dims;
  const buf = readFileSync(join(runDir, 'cache', '3d', `${id}.image.f32`));
  const raw = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const labels = new Uint8Array(readFileSync(join(runDir, 'cache', '3d', `${id}.label.u8`)));
  const image = new Float32Array(raw.length);
  applyIntensityMap(intensityMap(raw, normalisation), raw, image);
  // Sides up to the VNet's multiple of 16; padded voxels are left out of every average.
  const up = (n: number) => Math.ceil(n / 16) * 16;
  const [Zp, Yp, Xp] = [up(Z), up(Y), up(X)];
  const vol = new Float32Array(Zp * Yp * Xp);
  const lab = new Uint8Array(Zp * Yp * Xp).fill(PAD);
  for (let z = 0; z < Z; z++) for (let y = 0; y < Y; y++) for (let x = 0; x < X; x++) {
    vol[(z * Yp + y) * Xp + x] = image[(z * Y + y) * X + x];
    lab[(z * Yp + y) * Xp + x] = labels[(z * Y + y) * X + x];
  }
  const input = tf.tensor5d(vol, [1, Zp, Yp, Xp, 1]);
  for (const [k, student] of run.students.entries()) {
    const net = student as unknown as Inner;
    const head = net.spec.head;
    const kernel = net.params.get(`${head.name}.kernel`);
    const [C, K] = kernel.shape.slice(3) as [number, number];
    const eye = new Float32Array(C * C);
    for (let c = 0; c < C; c++) eye[c * C + c] = 1;
    // Once per student: later cases reuse the identity head.
    if (!net.params.variables.has('identity.kernel')) {
      net.params.variables.set('identity.kernel', tf.variable(tf.tensor5d(eye, [1, 1, 1, C, C])));
      net.params.variables.set('identity.bias', tf.variable(tf.zeros([C])));
    }
    const { features, logits } = tf.tidy(() => {
      const feats = net.encode(input, false);
      const spec = net.spec;
      (net as unknown as { spec: unknown }).spec = { ...spec, head: { ...head, name: 'identity', cout: C } };
      const f = net.decode(feats, false).logits.dataSync() as Float32Array;
      (net as unknown as { spec: unknown }).spec = spec;
      return { features: f, logits: net.decode(feats, false).logits.dataSync() as Float32Array };
    });
    const perClass = [];
    for (let cls = 0; cls < K; cls++) {
      let n = 0;
      let right = 0;
      const f = new Float64Array(C);
      const l = new Float64Array(K);
      for (let p = 0; p < lab.length; p++) {
        if (lab[p] !== cls) continue;
        n++;
        for (let c = 0; c < C; c++) f[c] += features[p * C + c];
        let best = 0;
        for (let j = 0; j < K; j++) {
          l[j] += logits[p * K + j];
          if (logits[p * K + j] > logits[p * K + best]) best = j;
        }
        if (best === cls) right++;
      }
      perClass.push({ label: cls, voxels: n, meanFeatures: [...f].map((v) => +(v / n).toFixed(3)), meanLogits: [...l].map((v) => +(v / n).toFixed(3)), argmaxRight: +(right / n).toFixed(3) });
    }
    const inside = lab.reduce((s, v) => s + (v !== PAD ? 1 : 0), 0);
    const active = Array.from({ length: C }, (_, c) => {
      let a = 0;
      for (let p = 0; p < lab.length; p++) if (lab[p] !== PAD && features[p * C + c] > 0) a++;
      return +(a / inside).toFixed(3);
    });
    results.push({ case: id, student: run.selection === 'both' ? 'ab'[k] : run.selection, source: run.sources[k], lastStageChannels: C, channelActiveFraction: active, perClass });
    process.stderr.write(`${id} student ${run.selection === 'both' ? 'ab'[k] : run.selection}: ${perClass.map((c) => `${c.label}:${c.argmaxRight}`).join(' ')}\n`);
  }
  input.dispose();
}
const previous = existsSync(outFile) ? (JSON.parse(readFileSync(outFile, 'utf8')) as { runs?: Record<string, unknown> }) : {};
await writeFileAtomic(
  outFile,
  `${JSON.stringify({
    what: 'per reference class: mean of the last decoder stage (the head input, after ReLU) and of the logits; argmaxRight = share of its voxels the student labels correctly; whole cached volumes at the training grid, BN in eval mode',
    runs: { ...previous.runs, [label]: { run: runDir, date: new Date().toISOString(), results } },
  }, null, 1)}\n`,
);
