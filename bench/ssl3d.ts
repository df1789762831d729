/**
 * Does semi-supervised training pay in the paper's 3D CT setting? (issue 17) The comparison of
 * bench/ssl.ts on abdominal CT phantoms (`alhvr-phantom --kind abdomen-ct`: liver, kidneys,
 * spleen, pancreas) with the released VNet (`--network vnet3d`): a labelled-only VNet (seed
 * 1337), a second one (seed 7) so the pair can be averaged in one graph like the exported
 * ensemble, ALHVR on the same labels plus the unlabeled pool (student a alone and the exported
 * two-student ensemble), and the all-labelled bound; every model exported, run by
 * `alhvr-segment`'s sliding window on 30 unseen phantoms and scored by `alhvr-eval` (Dice, HD95
 * and ASD in mm, per organ and mean, worst case). The machinery is bench/ssl-lib.ts, shared with
 * the 2D benchmark; this file is the 3D setting.
 *
 *   npx tsx bench/ssl3d.ts                      # the fixed benchmark (the comparison); resumes where it stopped
 *   SSL_BENCH_SMOKE=1 npx tsx bench/ssl3d.ts    # tiny settings (3 iterations, 2 test cases), end to end
 *   SSL_BENCH_PARTS=main,seeds npx tsx bench/ssl3d.ts # and second training seeds; parts: main, seeds
 *   npx tsx bench/ssl3d.ts --report             # rewrite bench/results/ssl3d.json from what is on disk
 *
 * SSL_BENCH_TOOLKIT (a built `git worktree` of one commit) and SSL_BENCH_THREADS work as in
 * bench/ssl.ts. Resume: a training with RUN/done.json is not redone, an interrupted one continues
 * with `alhvr-train --resume`; an evaluation with evals/<name>.json is not redone; results are
 * merged into bench/results/ssl3d.json after every training and evaluation. Work files live in
 * bench/runs/ssl3d/ (git-ignored). SIGINT/SIGTERM stop the current training at its next
 * iteration boundary (latest.ckpt written) before the benchmark exits.
 *
 * Data and every setting are fixed here before the first run; the test seed is used for nothing
 * but the final scores; model selection (best validation checkpoint per student) uses the 8
 * validation phantoms only.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chooseTrainings, lanesAndThreads, sslBenchmark, type TrainingSpec } from './ssl-lib.js';

const here = dirname(fileURLToPath(import.meta.url));
const SMOKE = process.env.SSL_BENCH_SMOKE === '1';

// ---- the fixed configuration ---------------------------------------------------------------
const FIXED = SMOKE
  ? {
      // 3 validation cases: the ensemble export calibrates on them and needs at least 3.
      train: { seed: 3031, cases: 7, kind: 'abdomen-ct' as const, matrix: 64 },
      test: { seed: 4343, cases: 2, kind: 'abdomen-ct' as const, matrix: 64 },
      labeledCases: 2,
      valCases: 3,
      iterations: 3,
      valEvery: 2,
    }
  : {
      // 44 phantoms: the last 8 labelled cases are validation, 4 of the other 36 are labelled
      // (11 %), the remaining 32 form the unlabeled pool (their labels never read).
      // Matrix 128 with an adult body (2.4–3.6 mm pixels): ≈ 110×110×40 voxels at the 3 mm grid
      // below, so a 32³ crop sees about a quarter of the abdomen's width and the pancreas keeps
      // ≈ 850 voxels (liver ≈ 18,000, kidneys and spleen ≈ 2,000 each).
      train: { seed: 3031, cases: 44, kind: 'abdomen-ct' as const, matrix: 128, body: 'adult' as const },
      // Fixed before the first run; used for nothing but the final scores.
      test: { seed: 4343, cases: 30, kind: 'abdomen-ct' as const, matrix: 128, body: 'adult' as const },
      labeledCases: 4,
      valCases: 8,
      // Budget. The first configuration (widths 4…64, 1500 iterations; its results kept in
      // bench/results/ssl3d-widths4-64.json) came out void: its all-labelled bound (0.497) did not
      // beat the labelled-only baseline (0.558), because so narrow a net cannot hold four organs
      // (the last decoder stage's 4 channels; see models/README.md's CT section). This one uses the
      // shipped CT model's widths, chosen on its validation phantoms, and pays for them with a
      // shorter schedule: ALHVR 3.3 s per step (the shipped model's training, 2 threads, quiet),
      // labelled-only ≈ 0.8 s, so 1000 × (3 × 0.8 + 3.3) s ≈ 95 min, + validation ≈ 8 min +
      // scoring 7 models × 30 volumes ≈ 8 min: ≈ 110 min (target ≤ 150). 1500 iterations would
      // be ≈ 160 min. The shipped model (12 labelled) was at validation Dice 0.86 at 800
      // iterations and 0.91 at 1100.
      iterations: 1000,
      valEvery: 100,
    };
/**
 * models/recipes/alhvr-abdomen-ct.train.json (the shipped CT model's recipe) at 4 labelled cases
 * and 1000 iterations instead of 12 and 1500: the released VNet and every published 3D default
 * (SGD 0.01, β 0.7, the released ramp and quirks) but its output Dropout3d (off: see
 * vnetDropout), 32³ crops at 3 mm, batch 2+2 as released.
 */
const RECIPE = {
  network: 'vnet3d',
  format: 'nnunet',
  batchLabeled: 2,
  batchUnlabeled: 2,
  patch: 32,
  widths: SMOKE ? [4, 8, 16, 32, 32] : [16, 16, 32, 64, 128],
  // The one departure from the published defaults, chosen before the first run on the probe's
  // phantoms (another seed): the VNet's Dropout3d 0.5 before the output layer leaves about 2 of
  // these widths' 4 channels, and the labelled-only VNet then found no organ in 500 iterations;
  // at 0 it learned the liver within 100–200 (training volumes 0.75 → 0.90 Dice at 100 → 300).
  vnetDropout: 0,
  // Adult-size phantoms (body 'adult': 2.4–3.6 mm pixels at matrix 128) at 3 mm: a kidney keeps
  // ≈ 2,000 voxels and a 32³ crop spans 96 mm. At matrix 128 with the default 'fov' body the
  // abdomen was quarter-scale and kidney, spleen and pancreas held 70–530 voxels at 1.5 mm: a
  // first start found the liver (0.89 at 500 iterations) and never the others, so it was stopped.
  preprocessing: { targetSpacing: [3, 3, 3] },
  // Chosen on the validation phantoms (036, 037) before any test score, see probe.second in the
  // results: half of each labelled batch centred on an organ (nnU-Net's oversampling: 1 crop of 2),
  // and no rot90/flip, which mirrors left and right and left the spleen looking like the liver.
  foregroundOversample: 0.33,
  cropAugment: 'none',
  backend: 'wasm',
  threads: 2,
  checkpointEvery: 25,
};
const { lanes: LANES, threads: THREADS } = lanesAndThreads(RECIPE.threads);

/**
 * SSL_BENCH_PARTS chooses among the parts: the comparison (main, the default: the benchmark the
 * 150-minute budget is about) and second seeds (SSL_BENCH_PARTS=main,seeds; about 100 minutes more).
 * In priority order (the benchmark stops wherever it is stopped and resumes there): the cheap
 * supervised runs first, then ALHVR, then the second seeds.
 */
const ALL_TRAININGS: TrainingSpec[] = [
  { name: 'sup-few-s1337', method: 'supervised', seed: 1337, labeled: 'few', role: 'labelled-only baseline (one VNet)', part: 'main' },
  { name: 'sup-all-s1337', method: 'supervised', seed: 1337, labeled: 'all', role: 'all-labelled upper bound', part: 'main' },
  { name: 'sup-few-s7', method: 'supervised', seed: 7, labeled: 'few', role: 'second labelled-only VNet (pair partner, second seed)', part: 'main' },
  { name: 'alhvr-s1337', method: 'alhvr', seed: 1337, labeled: 'few', role: 'ALHVR, published regions (all)', part: 'main' },
  { name: 'alhvr-s7', method: 'alhvr', seed: 7, labeled: 'few', role: 'ALHVR, second seed', part: 'seeds' },
  { name: 'sup-all-s7', method: 'supervised', seed: 7, labeled: 'all', role: 'upper bound, second seed', part: 'seeds' },
];
/** Every run the results report (whatever is on disk); TRAININGS: the ones this invocation trains. */
const { known: KNOWN, trainings: TRAININGS } = chooseTrainings(ALL_TRAININGS, ['main', 'seeds'], SMOKE, (t) => t.part === 'main', ['main']);

await sslBenchmark({
  script: fileURLToPath(import.meta.url),
  name: 'ssl3d benchmark',
  smoke: SMOKE,
  train: FIXED.train,
  test: FIXED.test,
  labeledCases: FIXED.labeledCases,
  valCases: FIXED.valCases,
  iterations: FIXED.iterations,
  valEvery: FIXED.valEvery,
  recipe: RECIPE,
  threads: THREADS,
  lanes: LANES,
  known: KNOWN,
  trainings: TRAININGS,
  pair: ['sup-few-s1337', 'sup-few-s7'],
  work: join(here, 'runs', SMOKE ? 'ssl3d-smoke' : 'ssl3d'),
  results: join(here, 'results', SMOKE ? 'ssl3d-smoke.json' : 'ssl3d.json'),
  datasetUnit: 'volumes',
  perClassDistances: true,
  classNames: { 1: 'liver', 2: 'kidney', 3: 'spleen', 4: 'pancreas' },
  figureDiceFloor: 0,
  describe: {
    benchmark: 'bench/ssl3d.ts — semi-supervised gain on abdominal CT phantoms with the 3D VNet (issue 17)',
    generator: 'alhvr-phantom --kind abdomen-ct (core CT phantom generator: HU, 0.6–0.9 mm pixels, 1.5–5 mm slices, three contrast phases)',
    recipeRest: 'published 3D defaults (SGD 0.01, β 0.7, T 0.1, w_max 0.1, released ramp and quirks); CT normalisation measured on the labelled cases',
    scoring:
      'export → alhvr-segment (ONNX Runtime, cpu, 2 threads; sliding window, stride ⅔ of the patch, uniform weights) → alhvr-eval (flagged empty policy) on the test phantoms; per case the mean over liver/kidney/spleen/pancreas; mean ± std over cases; worst case = lowest case Dice / highest case distance; per organ in perClass. Group rows: mean ± std over training seeds.',
    history: [
      'first configuration (widths 4, 8, 16, 32, 64; 1500 iterations; run 2026-12-04 under load 1.3–6.5, 157 + 7.3 min): supervised 4 labelled 0.558, pair 0.732, ALHVR student 0.378 / ensemble 0.493, all 36 labelled 0.497 on the 30 test phantoms — void, the bound does not beat the baseline; results in bench/results/ssl3d-widths4-64.json. Replaced by the shipped CT model\'s widths (16, 16, 32, 64, 128) at 1000 iterations; data, seeds, test set and every other setting unchanged.',
    ],
    contention: 'see each training\'s wallSegments (load average at its start) and the sessions\' load averages',
    extra: {
      budget: {
        measured:
          'alhvr-train at this recipe (32³, batch 2+2, 1.5 mm, matrix-128 phantoms), wasm, 1 thread, CPU seconds per step over steps 2–8 (process CPU time, so the load matters little): widths 4…64 labelled-only 0.48–0.84 (≈ 0.57), ALHVR 2.7–3.3 (≈ 3.0); widths 8…128 labelled-only 0.79–1.20 (≈ 1.0), ALHVR 5.0–6.1 (≈ 5.2). Measured under load 5–13 (background trainings at nice −5, this at +10), so wall times then were 1–90 s per step.',
        comparison: 'widths 16, 16, 32, 64, 128 (this configuration): ALHVR 3.3 s per step wall (median of the shipped CT model\'s 1500-iteration training, 2 threads, quiet machine), labelled-only ≈ 0.8 s (estimated from the ratio at 8…128): 1000 × (3 × 0.8 + 3.3) s ≈ 95 min + validation ≈ 8 min + scoring 7 models × 30 volumes ≈ 8 min ≈ 110 min on a quiet 2-core machine (target ≤ 150); the measured wall time of each training is in its wallSegments',
        secondSeeds: '1000 × (3.3 + 0.8) s ≈ 70 min more',
        twoThreadsUnderLoad:
          'ALHVR at 2 threads while two other trainings of ours and the background jobs ran (load 4.6–7): 5.4–22 CPU s and 8–73 s wall per step — the second thread spins when the cores are taken; on a shared machine use SSL_BENCH_THREADS=1',
      },
      probe: {
        before: 'the first run; on 14 phantoms of seed 1 (matrix 128; not the benchmark\'s seeds), 4 labelled, 4 validation, this recipe, labelled-only, 500 iterations',
        result:
          'validation Dice 0 for every organ at iterations 100, 200, 300, 400 and 500 with the published lr 0.01 and released Dice, and also with lr 0.05 or --dice-loss standard; the training Dice term fell slowly (released 0.883 → 0.847 over 500 iterations; standard 0.767 → 0.70 over 250). Diagnosed afterwards (still before the first run): the crops are right (labels aligned through turn/flip/pad; 93–100 % of crops hold an organ); the VNet\'s Dropout3d 0.5 before the output layer, at these widths\' 4 channels, is what stops it — with it off a labelled-only VNet learned the liver (training-volume Dice 0.75 / 0.88 / 0.90 at 100 / 200 / 300 iterations; unseen phantoms 0.91 at 600), so the recipe sets vnetDropout 0. Kidney, spleen and pancreas (70–530 voxels each at 1.5 mm) stayed at Dice 0 through 600 iterations in every variant tried (forced-foreground crops, standard Dice, a 0.75 mm grid): expect the organ mean to rest on the liver unless 1500 iterations change that. If the labelled-only baseline still finds no organ at 1500 iterations the comparison is void and is reported as such.',
        second:
          'the first start of this benchmark (adult body, 3 mm, uniform crops with the released rot90/flip) reached iteration 1150 of sup-few-s1337 with validation Dice liver 0.90 and 0 for kidney, spleen and pancreas, also on its own training volumes; it was stopped and discarded. Probe on the same 4 labelled volumes (phantoms 000–003), scored on the benchmark\'s validation phantoms 036 and 037 (no test phantom read): a fixed 2-crop batch is overfitted in 100–150 iterations (kidney 0.87, spleen 0.96), so the network and loss can learn the small organs; with every crop centred on a randomly drawn organ, at 800 iterations the released rot90/flip gave kidney/spleen/pancreas 0.47/0.19/0.11 and 0.60/0.41/0.53, and no turn or flip gave 0.70/0.17/0.60 and 0.89/0.85/0.76 (liver 0.87–0.94 both ways). So this run sets foregroundOversample 0.33 (1 of the 2 labelled crops) and cropAugment none.',
      },
    },
  },
}).cli(process.argv);
