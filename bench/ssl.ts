/**
 * Does semi-supervised training pay? (issue 11) Labelled-only U-Net, a supervised pair of
 * independently initialised U-Nets averaged like the exported ensemble, ALHVR on the same labels
 * plus the unlabeled pool (student a alone, as the released test script scores it, and the
 * exported two-student ensemble), and the all-labelled upper bound; then a short region ablation
 * (`alhvr-train --regions`). Every model goes through the toolkit's own path: `alhvr-train`
 * (resumable), `alhvr-export`, `alhvr-segment` on unseen test phantoms, `alhvr-eval`.
 *
 *   npx tsx bench/ssl.ts                     # the fixed benchmark; resumes where it stopped
 *   SSL_BENCH_SMOKE=1 npx tsx bench/ssl.ts   # a tiny configuration to check the script
 *   SSL_BENCH_PARTS=main npx tsx bench/ssl.ts  # only the comparison; parts: main, ablation (default: both), seeds
 *   SSL_BENCH_RUN=again npx tsx bench/ssl.ts   # a separate repetition from scratch (bench/runs/ssl-again)
 *   npx tsx bench/ssl.ts --report            # rewrite bench/results/ssl.json from what is on disk
 *
 * A toolkit copy for SSL_BENCH_TOOLKIT (the one the results name, e.g. commit 4d9bded):
 *   git worktree add --detach /work/ssl-toolkit <commit> && cd /work/ssl-toolkit && mkdir node_modules
 *   for e in $(ls -A ../main/node_modules); do [ "$e" = @alhvr ] || ln -s "$(realpath ../main/node_modules/$e)" node_modules/$e; done
 *   mkdir node_modules/@alhvr && for p in bench cli core export inference models test training viewer; do ln -s ../../$p node_modules/@alhvr/$p; done
 *   npx tsc -b
 *
 * The machinery (data, resumable trainings, scoring, results) is bench/ssl-lib.ts, shared with
 * the 3D benchmark bench/ssl3d.ts; this file is the 2D setting.
 *
 * Resume: a training with RUN/done.json is not redone, an interrupted one continues with
 * `alhvr-train --resume`; an evaluation with evals/<name>.json is not redone. Results are merged
 * into bench/results/ssl.json after every training and evaluation. Work files live in
 * bench/runs/ssl/ (git-ignored). SIGINT/SIGTERM stop the current training at its next
 * iteration boundary (latest.ckpt written) before the benchmark exits.
 *
 * Data and every setting are fixed here before the first run; the test seed is used for nothing
 * but the final scores. Model selection (best validation checkpoint per student) uses the 8
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
      train: { seed: 2026, cases: 9 },
      test: { seed: 4242, cases: 2 },
      labeledCases: 2,
      valCases: 3,
      iterations: 4,
      valEvery: 2,
      ablationIterations: 2,
    }
  : {
      // 56 phantoms: the last 8 labelled cases are validation, the first 6 of the other 48 are
      // labelled (12.5 %), the remaining 42 form the unlabeled pool (their labels never read).
      train: { seed: 2026, cases: 56 },
      // Fixed before the first run; used for nothing but the final scores.
      test: { seed: 4242, cases: 30 },
      labeledCases: 6,
      valCases: 8,
      // Budget (quiet 2-core machine, ALHVR ≈ 1.5 s/step, supervised ≈ 0.5 s/step at this recipe):
      // 3 supervised × 1600 × 0.5 s ≈ 40 min, ALHVR 1600 × 1.5 s ≈ 40 min, the ablation (2 runs of
      // the first 800 iterations of the same schedule) ≈ 37 min, plus validation and scoring of 13
      // models ≈ 140 min for the first six trainings; second seeds and alhvr-none run if time allows.
      // The schedule was 1000 iterations until the first run's validation curve (rising, 0.62 →
      // 0.79 over its last quarter) showed the labelled-only baseline had not converged; chosen on
      // validation data only, before any test score was read.
      iterations: 1600,
      valEvery: 50,
      /** The ablation trains the first half of the main schedule (same ramp), against ALHVR's snapshot there. */
      ablationIterations: 800,
    };
/** The CPU recipe of models/recipes/alhvr-default.train.json; everything else is the published default. */
const RECIPE = { format: 'nnunet', batchLabeled: 4, batchUnlabeled: 4, patch: 128, widths: [8, 16, 32, 64, 128], backend: 'wasm', threads: 2, checkpointEvery: 25 };
const { lanes: LANES, threads: THREADS } = lanesAndThreads(RECIPE.threads);

/**
 * SSL_BENCH_PARTS chooses among the parts (default all): the comparison (main), the region
 * ablation, second seeds. In priority order (the benchmark stops wherever it is stopped and resumes there): the cheap
 * supervised runs first, then ALHVR, the ablation (its no-region baseline included), second seeds.
 */
const ALL_TRAININGS: TrainingSpec[] = [
  { name: 'sup-few-s1337', method: 'supervised', seed: 1337, labeled: 'few', role: 'labelled-only baseline (one U-Net)', part: 'main' },
  { name: 'sup-all-s1337', method: 'supervised', seed: 1337, labeled: 'all', role: 'all-labelled upper bound', part: 'main' },
  { name: 'sup-few-s7', method: 'supervised', seed: 7, labeled: 'few', role: 'second labelled-only U-Net (pair partner, second seed)', part: 'main' },
  { name: 'alhvr-s1337', method: 'alhvr', seed: 1337, labeled: 'few', role: 'ALHVR, published regions (all)', snapshotAt: FIXED.ablationIterations, part: 'main' },
  { name: 'alhvr-omega3-s1337', method: 'alhvr', seed: 1337, labeled: 'few', regions: [3], role: 'ablation: DTCT on Ω3 only', iterations: FIXED.ablationIterations, part: 'ablation' },
  { name: 'alhvr-omega2-s1337', method: 'alhvr', seed: 1337, labeled: 'few', regions: [2], role: 'ablation: CG-CPCL on Ω2 only', iterations: FIXED.ablationIterations, part: 'ablation' },
  { name: 'alhvr-none-s1337', method: 'alhvr', seed: 1337, labeled: 'few', regions: [], role: 'ablation: no region (two students, supervised terms only)', iterations: FIXED.ablationIterations, part: 'ablation' },
  { name: 'alhvr-s7', method: 'alhvr', seed: 7, labeled: 'few', role: 'ALHVR, second seed', part: 'seeds' },
  { name: 'sup-all-s7', method: 'supervised', seed: 7, labeled: 'all', role: 'upper bound, second seed', part: 'seeds' },
];
// Quiet 2-core machine, measured: supervised ≈ 0.42 s/step, ALHVR ≈ 2.2 s/step (median of a 300-step
// continuation in bench/pseudo-label.ts at load ≈ 2), so main ≈ 90 min with scoring, the ablation
// ≈ 3 × 800 × 2.2 s ≈ 90 min, second seeds ≈ 70 min.
/** Every run the results report (whatever is on disk); TRAININGS: the ones this invocation trains. */
// The benchmark is the comparison and the ablation; second seeds run on request (the issue asks
// for them "if the time allows"): SSL_BENCH_PARTS=main,ablation,seeds.
const { known: KNOWN, trainings: TRAININGS } = chooseTrainings(
  ALL_TRAININGS,
  ['main', 'ablation', 'seeds'],
  SMOKE,
  (t) => ['sup-few-s1337', 'sup-few-s7', 'alhvr-s1337', 'alhvr-omega3-s1337'].includes(t.name),
  ['main', 'ablation'],
);
// SSL_BENCH_RUN=NAME: a separate repetition of the whole benchmark (work bench/runs/ssl-NAME,
// results bench/results/ssl-NAME.json), e.g. to time it from scratch beside the committed runs.
const RUN = process.env.SSL_BENCH_RUN;
if (RUN !== undefined && !/^[a-z0-9-]+$/.test(RUN)) throw new Error(`SSL_BENCH_RUN: "${RUN}" (lower-case letters, digits and dashes)`);
const runName = SMOKE ? 'ssl-smoke' : RUN ? `ssl-${RUN}` : 'ssl';

await sslBenchmark({
  script: fileURLToPath(import.meta.url),
  name: 'ssl benchmark',
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
  work: join(here, 'runs', runName),
  results: join(here, 'results', `${runName}.json`),
  datasetUnit: 'slices',
  figureDiceFloor: 0.3,
  describe: {
    benchmark: 'bench/ssl.ts — semi-supervised gain on phantoms (issue 11)',
    generator: 'alhvr-phantom (core phantom generator), in-domain (no shift)',
    recipeRest: 'published defaults (SGD 0.01, β 0.8, T 0.1, w_max 0.1, released quirks)',
    scoring:
      'export → alhvr-segment (ONNX Runtime, cpu, 2 threads) → alhvr-eval (flagged empty policy) on the test phantoms; per case the mean over RV/Myo/LV; mean ± std over cases; worst case = lowest case Dice / highest case distance. Group rows: mean ± std over training seeds.',
    history: [
      'The schedule was first fixed at 1000 iterations. sup-few-s1337 finished them with validation Dice still rising (0.618 at 750 → 0.788 at 950, 0.717 at 1000), so the schedule became 1600 iterations before any other run, chosen on that validation curve alone; the finished run was continued with alhvr-train --resume (exact resume, so identical to a 1600-iteration run). Its 1000-iteration test scores had already been written by then; they are kept in bench/runs/ssl/evals/superseded/ and are not reported.',
    ],
    contention:
      'measured on a shared 2-core machine while another 2-thread training job (and at times a test suite) ran: wall and step times are roughly 2× those of a quiet machine',
  },
}).cli(process.argv);
