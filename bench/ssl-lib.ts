/**
 * The machinery of the semi-supervised benchmarks (bench/ssl.ts in 2D, bench/ssl3d.ts on CT):
 * fixed phantom data, resumable trainings through the toolkit's own commands (`alhvr-train`,
 * `alhvr-export`, `alhvr-segment`, `alhvr-eval`), results merged after every step, SIGINT/SIGTERM
 * stopping the current child at a safe point. One implementation; each script only states its
 * setting (data, recipe, trainings, the words of its results file) and calls `sslBenchmark`.
 */
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');

/** Phantoms written once by `alhvr-phantom`; kind/matrix absent: the cardiac MR default. */
export interface PhantomSpec {
  seed: number;
  cases: number;
  kind?: 'cardiac-mr' | 'abdomen-ct';
  matrix?: number;
  /** abdomen-ct: 'adult' keeps an adult body at a small matrix (alhvr-phantom --body); absent: 'fov'. */
  body?: 'fov' | 'adult';
}

/**
 * Which trainings a script reports and trains: every run it knows (`smokeKnown` narrows that in a
 * smoke run), and of those the ones in the parts SSL_BENCH_PARTS names (default every part;
 * a smoke run trains all it knows). An unknown part name stops the script.
 */
export function chooseTrainings(
  all: TrainingSpec[],
  parts: readonly string[],
  smoke: boolean,
  smokeKnown: (t: TrainingSpec) => boolean,
  defaultParts: readonly string[] = parts,
): { known: TrainingSpec[]; trainings: TrainingSpec[] } {
  const chosen = new Set((process.env.SSL_BENCH_PARTS ?? defaultParts.join(',')).split(',').map((p) => p.trim()));
  for (const p of chosen) if (!parts.includes(p)) throw new Error(`SSL_BENCH_PARTS: unknown part "${p}" (${parts.join(', ')})`);
  const known = smoke ? all.filter(smokeKnown) : all;
  return { known, trainings: smoke ? known : known.filter((t) => chosen.has(t.part)) };
}

/**
 * Trainings at once and threads per training, from SSL_BENCH_LANES (default 2) and
 * SSL_BENCH_THREADS (default 1 with lanes, else the recipe's). Two one-thread runs do 1.4–1.5×
 * the steps per second of one two-thread run in 2D, 1.6–2× in 3D (bench/results/training-lanes.json);
 * SSL_BENCH_LANES=1 trains one at a time at the recipe's threads, as the committed runs were, and
 * SSL_BENCH_LANES=1 SSL_BENCH_THREADS=1 leaves a core to another job. Each wall-time segment
 * records its threads and lanes.
 */
export function lanesAndThreads(recipeThreads: number): { lanes: number; threads: number } {
  const lanes = Number(process.env.SSL_BENCH_LANES ?? 2);
  return { lanes, threads: Number(process.env.SSL_BENCH_THREADS ?? (lanes > 1 ? 1 : recipeThreads)) };
}

export interface TrainingSpec {
  name: string;
  method: 'supervised' | 'alhvr';
  seed: number;
  labeled: 'few' | 'all';
  regions?: (1 | 2 | 3)[];
  role: string;
  /** Stop here instead of the setting's iterations (the ablation); the ramp is always the full schedule's. */
  iterations?: number;
  /** Keep a copy of the run as it stands at this iteration (runs/<name>-at<N>), then continue. */
  snapshotAt?: number;
  /** Which part of the benchmark the run belongs to (the script chooses which parts to train). */
  part: string;
}

export interface SslSetting {
  /** The script itself: spawned with `--export-pair` to export a supervised pair in a child. */
  script: string;
  /** Name in the log line that starts a run. */
  name: string;
  smoke: boolean;
  train: PhantomSpec;
  test: PhantomSpec;
  labeledCases: number;
  valCases: number;
  iterations: number;
  valEvery: number;
  /** alhvr-train config fields shared by every training (network, patch, widths, batch, backend …). */
  recipe: Record<string, unknown> & { backend: string };
  /** Training threads (each wall-time segment records the threads it ran with). */
  threads: number;
  /**
   * Trainings run at once (default 1). Two lanes of one thread each keep both cores busy, where
   * one two-thread training leaves much of the second core waiting on the first.
   */
  lanes?: number;
  /** Every run the results report (whatever is on disk), in priority order. */
  known: TrainingSpec[];
  /** The runs this invocation trains. */
  trainings: TrainingSpec[];
  /** The two labelled-only runs whose student a are averaged in one graph (group sup-few-pair). */
  pair: [string, string];
  /** Work folder (git-ignored) and results file. */
  work: string;
  results: string;
  /** What alhvr-train's config.json calls its dataset units in the results ('slices' in 2D, 'volumes' in 3D). */
  datasetUnit: string;
  /** Per organ HD95 and ASD beside the per-class Dice in each evaluation (3D). */
  perClassDistances?: boolean;
  /** Names of the foreground labels in the per-class results (3D organs). */
  classNames?: Record<number, string>;
  /** Lower end of the figure's Dice axis. */
  figureDiceFloor: number;
  /** The fixed words of the results file. */
  describe: {
    benchmark: string;
    generator: string;
    recipeRest: string;
    scoring: string;
    history: string[];
    contention: string;
    /** Extra top-level fields written after `contention` (e.g. the budget arithmetic in 3D). */
    extra?: Record<string, unknown>;
  };
}

interface EvalSpec {
  name: string;
  runs: string[];
  /** a / b: one student of one run; both: the run's exported two-student ensemble; pair: student a of two runs averaged in one ensemble graph. */
  students: 'a' | 'b' | 'both' | 'pair';
  group: string;
}

interface WallSegment {
  start: string;
  seconds: number | null;
  fromIteration: number;
  toIteration: number | null;
  loadavg1: number;
  /** Training threads of this segment (absent: the recipe's 2). */
  threads?: number;
  /** Trainings that ran at once in this benchmark invocation (absent: 1). */
  lanes?: number;
  exit?: number;
}
interface MetricsLine {
  type: 'iteration' | 'validation';
  iteration: number;
  stepMs?: number;
  student?: 'a' | 'b';
  meanDice?: number;
  meanHd95Mm?: number;
  best?: boolean;
}
interface EvalJson {
  emptyPolicy: string;
  cases: { id: string; metrics: { label: number; dice: number; jaccard: number; hd95Mm: number | null; asdMm: number | null; predEmpty: boolean }[] }[];
  summary: { perClass: { label: number; stats: Record<string, { mean: number | null }> }[]; mean: Record<string, number | null> };
}

/** Smallest bound-minus-baseline Dice for which a gap-closed ratio is reported (the test set's own noise is about this). */
const MIN_GAP = 0.01;
const readJson = <T>(p: string): T => JSON.parse(readFileSync(p, 'utf8')) as T;
export function writeJsonAtomic(p: string, value: unknown): void {
  mkdirSync(dirname(p), { recursive: true });
  const tmp = `${p}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(value, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
  renameSync(tmp, p);
}
export const log = (m: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${m}`);
const mean = (v: number[]) => v.reduce((s, x) => s + x, 0) / v.length;
const std = (v: number[]) => (v.length < 2 ? 0 : Math.sqrt(v.reduce((s, x) => s + (x - mean(v)) ** 2, 0) / (v.length - 1)));

/** The benchmark of one setting: `cli(argv)` runs it, or `--report` / `--export-pair A B OUT`. */
export function sslBenchmark(S: SslSetting) {
  const ALL_LABELLED = S.train.cases - S.valCases;
  const snapshotName = (t: TrainingSpec) => `${t.name}-at${t.snapshotAt}`;

  const EVALS: EvalSpec[] = [];
  for (const t of S.known) {
    if (t.method === 'supervised') EVALS.push({ name: t.name, runs: [t.name], students: 'a', group: t.labeled === 'few' ? 'sup-few' : 'sup-all' });
    else {
      const g = t.regions ? `alhvr-regions-${t.regions.join('') || 'none'}-at${t.iterations ?? S.iterations}` : 'alhvr';
      EVALS.push({ name: `${t.name}/a`, runs: [t.name], students: 'a', group: `${g}/a` });
      if (!t.regions) EVALS.push({ name: `${t.name}/b`, runs: [t.name], students: 'b', group: `${g}/b` });
      EVALS.push({ name: `${t.name}/ensemble`, runs: [t.name], students: 'both', group: `${g}/ensemble` });
      if (t.snapshotAt) {
        const snap = snapshotName(t);
        EVALS.push({ name: `${snap}/a`, runs: [snap], students: 'a', group: `alhvr-regions-123-at${t.snapshotAt}/a` });
        EVALS.push({ name: `${snap}/ensemble`, runs: [snap], students: 'both', group: `alhvr-regions-123-at${t.snapshotAt}/ensemble` });
      }
    }
  }
  EVALS.push({ name: `sup-few-pair-${S.pair.map((r) => r.replace(/^sup-few-/, '')).join('+')}`, runs: [...S.pair], students: 'pair', group: 'sup-few-pair' });

  // ---- paths -----------------------------------------------------------------------------------
  const TRAIN_DATA = join(S.work, 'data-train');
  const TEST_DATA = join(S.work, 'data-test');
  const runDir = (name: string) => join(S.work, 'runs', name);
  const evalFile = (name: string) => join(S.work, 'evals', `${name.replace(/\//g, '__')}.json`);

  // The work files (S.work) stay on the machine that trained; the results file is what is
  // committed and travels. A finished training or a score the results file holds whose work files
  // are absent here is carried over as it stands: neither retrained nor dropped by the next write.
  type Carried = { trainings?: Record<string, { finished?: boolean } | undefined>; evaluations?: Record<string, { runs: string[]; students: string; group: string; seconds: Record<string, number> } & Record<string, unknown>> };
  const carried: Carried = existsSync(S.results) ? readJson<Carried>(S.results) : {};
  const carriedTraining = (name: string) => {
    const t = carried.trainings?.[name];
    return t?.finished === true && !existsSync(runDir(name)) ? t : undefined;
  };
  const carriedEval = (name: string): Scored | undefined => {
    const e = carried.evaluations?.[name];
    if (!e || existsSync(evalFile(name))) return undefined;
    const { runs, students, group, seconds, ...scores } = e;
    return { name, runs, students, group, seconds, scores: scores as unknown as Scored['scores'] };
  };
  const trained = (name: string) => existsSync(join(runDir(name), 'done.json')) || carriedTraining(name) !== undefined;
  const scored = (name: string) => existsSync(evalFile(name)) || carriedEval(name) !== undefined;
  /**
   * The toolkit whose commands are benchmarked: this checkout, or (SSL_BENCH_TOOLKIT) a built copy
   * of one commit, e.g. a `git worktree`, so that a shared working tree rebuilt mid-run by others
   * cannot change the commands under a running benchmark. Its commit is recorded in the results.
   */
  const TOOLKIT = process.env.SSL_BENCH_TOOLKIT ?? root;
  const cli = (bin: string) => join(TOOLKIT, 'cli', 'bin', `${bin}.js`);
  const toolkitModule = (path: string) => import(pathToFileURL(join(TOOLKIT, path)).href);
  // Read once: the session records the toolkit it started with (the heartbeat rewrites it every minute).
  let toolkit: { path: string; commit: string; dirty: boolean } | undefined;
  function toolkitCommit(): { path: string; commit: string; dirty: boolean } {
    const git = (args: string[]) => execFileSync('git', ['-C', TOOLKIT, ...args], { encoding: 'utf8' }).trim();
    toolkit ??= { path: TOOLKIT, commit: git(['rev-parse', 'HEAD']), dirty: git(['status', '--porcelain', '--untracked-files=no']) !== '' };
    return toolkit;
  }

  // ---- children --------------------------------------------------------------------------------
  const LANES = Math.max(1, Math.floor(S.lanes ?? 1));
  const children = new Set<ReturnType<typeof spawn>>();
  let stopping = false;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      stopping = true;
      log(`${sig}: stopping the running children at their next safe point`);
      for (const child of children) child.kill('SIGINT');
    });
  }

  /** Run a child; lines of its stderr matching `show` go to the log; stdout is returned. */
  function run(cmd: string, args: string[], show: RegExp = /./): Promise<{ code: number; stdout: string; seconds: number }> {
    return new Promise((resolve, reject) => {
      const t0 = performance.now();
      const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
      children.add(child);
      let stdout = '';
      child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      const tail: string[] = [];
      createInterface({ input: child.stderr! }).on('line', (line) => {
        tail.push(line);
        if (tail.length > 20) tail.shift();
        if (show.test(line)) log(`  ${line.trim()}`);
      });
      child.on('error', reject);
      child.on('close', (code) => {
        children.delete(child);
        const seconds = (performance.now() - t0) / 1000;
        if (code !== 0 && !stopping) reject(new Error(`${cmd} ${args.join(' ')} exited ${code}:\n${tail.join('\n')}`));
        else resolve({ code: code ?? 1, stdout, seconds });
      });
    });
  }
  const node = (bin: string, args: string[], show?: RegExp) => run(process.execPath, [cli(bin), ...args], show);

  // ---- data ------------------------------------------------------------------------------------
  async function ensureData(dir: string, spec: PhantomSpec): Promise<void> {
    const done = join(dir, 'bench-done.json');
    if (existsSync(done)) {
      const d = readJson<PhantomSpec>(done);
      if (d.seed !== spec.seed || d.cases !== spec.cases || d.kind !== spec.kind || d.matrix !== spec.matrix || d.body !== spec.body) {
        const show = (p: PhantomSpec) => `${[p.kind, p.matrix && `matrix ${p.matrix}`, p.body && `${p.body} body`].filter(Boolean).join(' ')}${p.kind || p.matrix ? ' ' : ''}seed ${p.seed} × ${p.cases}`;
        throw new Error(`${dir} holds ${show(d)}, the benchmark fixes ${show(spec)}; remove it`);
      }
      return;
    }
    log(`writing ${spec.cases} ${spec.kind ?? ''}${spec.kind ? ' ' : ''}phantoms of seed ${spec.seed} to ${dir}`);
    const kind = [...(spec.kind ? ['--kind', spec.kind] : []), ...(spec.matrix ? ['--matrix', String(spec.matrix)] : []), ...(spec.body ? ['--body', spec.body] : [])];
    await node('alhvr-phantom', ['--out', dir, '--cases', String(spec.cases), '--seed', String(spec.seed), ...kind, '--quiet']);
    writeJsonAtomic(done, spec);
  }

  // ---- training --------------------------------------------------------------------------------
  const readMetrics = (name: string): MetricsLine[] => {
    const p = join(runDir(name), 'metrics.jsonl');
    if (!existsSync(p)) return [];
    return readFileSync(p, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as MetricsLine);
  };
  const lastIteration = (name: string) => readMetrics(name).reduce((m, r) => Math.max(m, r.iteration), 0);

  const targetOf = (t: TrainingSpec) => t.iterations ?? S.iterations;

  function trainingConfig(t: TrainingSpec, iterations: number) {
    return {
      ...S.recipe,
      threads: S.threads,
      data: TRAIN_DATA,
      method: t.method,
      labeledCases: t.labeled === 'few' ? S.labeledCases : ALL_LABELLED,
      valCases: S.valCases,
      iterations,
      rampIterations: Math.max(200, S.iterations),
      valEvery: S.valEvery,
      seed: t.seed,
      ...(t.regions ? { regions: t.regions } : {}),
    };
  }

  /** Scores of a run trained further than when they were taken are kept aside, not reported as current. */
  function supersedeEvals(run: string, iterations: number): void {
    for (const e of EVALS.filter((x) => x.runs.includes(run))) {
      const f = evalFile(e.name);
      if (!existsSync(f)) continue;
      const dest = join(S.work, 'evals', 'superseded', `${e.name.replace(/\//g, '__')}@${iterations}.json`);
      mkdirSync(dirname(dest), { recursive: true });
      renameSync(f, dest);
      log(`  ${e.name}: scores of the ${iterations}-iteration model moved to ${dest}`);
    }
  }

  /** Train (or resume) `t` up to `target` iterations; true when it got there. */
  async function trainTo(t: TrainingSpec, target: number): Promise<boolean> {
    const out = runDir(t.name);
    const configPath = join(S.work, 'configs', `${t.name}.json`);
    writeJsonAtomic(configPath, trainingConfig(t, target));
    const resume = existsSync(join(out, 'latest.ckpt'));
    const wallPath = join(out, 'bench-wall.json');
    mkdirSync(out, { recursive: true });
    const segments: WallSegment[] = existsSync(wallPath) ? readJson<WallSegment[]>(wallPath) : [];
    // A start that died before its first checkpoint left metrics lines no checkpoint backs.
    if (!resume) rmSync(join(out, 'metrics.jsonl'), { force: true });
    const from = resume ? lastIteration(t.name) : 0;
    const seg: WallSegment = { start: new Date().toISOString(), seconds: null, fromIteration: from, toIteration: null, loadavg1: loadavg()[0], threads: S.threads, ...(LANES > 1 ? { lanes: LANES } : {}) };
    segments.push(seg);
    writeJsonAtomic(wallPath, segments);
    log(`training ${t.name} (${t.role}) to iteration ${target}${resume ? `, resuming from iteration ${from}` : ''}`);
    const r = await node('alhvr-train', ['--config', configPath, '--out', out, ...(resume ? ['--resume'] : [])], /backend:|student|finished|stopped|error|Error/);
    seg.seconds = r.seconds;
    seg.toIteration = lastIteration(t.name);
    seg.exit = r.code;
    writeJsonAtomic(wallPath, segments);
    return r.code === 0 && seg.toIteration >= target;
  }

  async function ensureTrained(t: TrainingSpec): Promise<boolean> {
    const out = runDir(t.name);
    const target = targetOf(t);
    const donePath = join(out, 'done.json');
    if (carriedTraining(t.name)) {
      log(`${t.name}: finished on another machine (${S.results} holds it, ${out} is absent); not retrained`);
      return true;
    }
    if (existsSync(donePath)) {
      const done = readJson<{ iterations: number }>(donePath);
      if (done.iterations >= target) return true;
      // The schedule grew: continue the finished run (alhvr-train --resume extends its budget).
      supersedeEvals(t.name, done.iterations);
      rmSync(donePath);
    }
    if (t.snapshotAt && !existsSync(join(runDir(snapshotName(t)), 'done.json'))) {
      if (lastIteration(t.name) > t.snapshotAt) throw new Error(`${t.name} is past iteration ${t.snapshotAt} without its snapshot; remove ${out}`);
      if (!(await trainTo(t, t.snapshotAt))) return false;
      const snap = runDir(snapshotName(t));
      rmSync(snap, { recursive: true, force: true });
      cpSync(out, snap, { recursive: true, filter: (src) => !src.startsWith(join(out, 'cache')) });
      writeJsonAtomic(join(snap, 'done.json'), { finished: new Date().toISOString(), iterations: t.snapshotAt, snapshotOf: t.name });
      log(`  snapshot of ${t.name} at iteration ${t.snapshotAt}: ${snap}`);
    }
    if (!(await trainTo(t, target))) return false;
    writeJsonAtomic(donePath, { finished: new Date().toISOString(), iterations: lastIteration(t.name) });
    return true;
  }

  function summarizeTraining(t: TrainingSpec) {
    const out = runDir(t.name);
    if (!existsSync(join(out, 'config.json'))) return undefined;
    const cfg = readJson<{ backend: { name: string; threads: number; description: string }; dataset: { labeledSlices: number; unlabeledSlices: number; validation: string[] } }>(join(out, 'config.json'));
    const metrics = readMetrics(t.name);
    const steps = metrics.filter((m) => m.type === 'iteration').map((m) => m.stepMs ?? NaN);
    const sorted = [...steps].sort((a, b) => a - b);
    const wall = existsSync(join(out, 'bench-wall.json')) ? readJson<WallSegment[]>(join(out, 'bench-wall.json')) : [];
    const validation = metrics.filter((m) => m.type === 'validation').map((m) => ({ iteration: m.iteration, student: m.student, meanDice: m.meanDice, meanHd95Mm: m.meanHd95Mm }));
    // Convergence: validation Dice of each student over the last quarter of the schedule.
    const convergence = (['a', 'b'] as const)
      .map((s) => {
        const curve = validation.filter((v) => v.student === s && v.iteration >= 0.75 * targetOf(t));
        if (curve.length < 2) return undefined;
        const dice = curve.map((v) => v.meanDice as number);
        const range = Math.max(...dice) - Math.min(...dice);
        // Less noisy: the mean validation Dice of the last quarter against that of the quarter before.
        const before = validation.filter((v) => v.student === s && v.iteration >= 0.5 * targetOf(t) && v.iteration < 0.75 * targetOf(t)).map((v) => v.meanDice as number);
        return {
          student: s,
          window: [curve[0].iteration, curve[curve.length - 1].iteration],
          dice,
          change: dice[dice.length - 1] - dice[0],
          range,
          convergedBelow001: range < 0.01,
          meanLastQuarter: mean(dice),
          meanQuarterBefore: before.length ? mean(before) : null,
        };
      })
      .filter(Boolean);
    const done = existsSync(join(out, 'done.json'));
    return {
      role: t.role,
      method: t.method,
      seed: t.seed,
      labeledCases: t.labeled === 'few' ? S.labeledCases : ALL_LABELLED,
      regions: t.regions ?? [1, 2, 3],
      finished: done,
      iterations: lastIteration(t.name),
      backend: cfg.backend.description,
      [S.datasetUnit]: { labelled: cfg.dataset.labeledSlices, unlabeled: cfg.dataset.unlabeledSlices, validationCases: cfg.dataset.validation.length },
      stepMs: { median: sorted[Math.floor(sorted.length / 2)] ?? null, sumSeconds: steps.reduce((s, v) => s + v, 0) / 1000 },
      wallSeconds: wall.reduce((s, w) => s + (w.seconds ?? 0), 0),
      wallSegments: wall,
      validation,
      convergence,
    };
  }

  // ---- evaluation ------------------------------------------------------------------------------
  function scoreEval(e: EvalJson) {
    const metric = (name: 'dice' | 'jaccard' | 'hd95Mm' | 'asdMm') => {
      // Per case: mean over foreground classes (distances: over classes with a finite value).
      const perCase = e.cases.map((c) => {
        const v = c.metrics.map((m) => m[name]).filter((x): x is number => x !== null && Number.isFinite(x));
        return v.length ? mean(v) : NaN;
      });
      const finite = perCase.filter((x) => Number.isFinite(x));
      const worstIndex = name === 'dice' || name === 'jaccard' ? perCase.indexOf(Math.min(...finite)) : perCase.indexOf(Math.max(...finite));
      return { mean: mean(finite), std: std(finite), worst: perCase[worstIndex], worstCase: e.cases[worstIndex]?.id, casesScored: finite.length };
    };
    const perClassDice = e.summary.perClass.map((c) => ({ label: c.label, dice: c.stats.dice.mean }));
    const missedClasses = e.cases.reduce((s, c) => s + c.metrics.filter((m) => m.predEmpty).length, 0);
    const scores = { cases: e.cases.length, dice: metric('dice'), jaccard: metric('jaccard'), hd95Mm: metric('hd95Mm'), asdMm: metric('asdMm'), perClassDice, missedClassInstances: missedClasses, emptyPolicy: e.emptyPolicy };
    if (!S.perClassDistances) return scores;
    // Per organ over cases: mean, std and worst case of each metric (distances over the cases where the organ was found).
    const perClass = e.summary.perClass.map(({ label }) => {
      const of = (name: 'dice' | 'hd95Mm' | 'asdMm') => {
        const v = e.cases.map((c) => c.metrics.find((m) => m.label === label)?.[name]).filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
        return { mean: v.length ? mean(v) : NaN, std: std(v), worst: v.length ? (name === 'dice' ? Math.min(...v) : Math.max(...v)) : NaN, casesScored: v.length };
      };
      return { label, name: S.classNames?.[label] ?? String(label), dice: of('dice'), hd95Mm: of('hd95Mm'), asdMm: of('asdMm') };
    });
    return { ...scores, perClass };
  }

  async function exportPair(runA: string, runB: string, out: string): Promise<void> {
    const { selectBackend } = (await toolkitModule('training/dist/index.js')) as typeof import('@alhvr/training');
    const { checkParity, exportOnnx, loadRunForExport } = (await toolkitModule('export/dist/index.js')) as typeof import('@alhvr/export');
    const { writeFileAtomic } = (await toolkitModule('core/dist/node.js')) as typeof import('@alhvr/core/node');
    await selectBackend('wasm', { threads: 2, log: (m) => console.error(m) });
    const a = await loadRunForExport(runA, { students: 'a' });
    const b = await loadRunForExport(runB, { students: 'a' });
    const card = {
      ...a.card,
      name: `${a.card.name}+${b.card.name}`,
      description: `supervised pair: student a of ${a.card.name} and of ${b.card.name} (independent initialisations), averaged like an exported ALHVR ensemble`,
      regions: { ...a.card.regions, gamma: 0.5, gammaSource: 'default' as const },
    };
    const students = [...a.students, ...b.students];
    const result = exportOnnx(students, card, { students: 'both' });
    const parity = await checkParity(students, result.onnx, { slices: 4, backend: 'wasm' });
    if (!parity.pass) throw new Error(`pair export does not match TensorFlow.js: ${parity.failures.join('; ')}`);
    await writeFileAtomic(out, result.onnx);
    for (const s of students) s.dispose();
  }

  async function evaluate(e: EvalSpec): Promise<void> {
    const file = evalFile(e.name);
    if (scored(e.name)) return;
    const dir = join(S.work, 'eval-work', e.name.replace(/\//g, '__'));
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const model = join(dir, 'model.onnx');
    const seg = join(dir, 'seg');
    log(`evaluating ${e.name} on ${S.test.cases} test phantoms (seed ${S.test.seed})`);
    const t0 = performance.now();
    const ex =
      e.students === 'pair'
        ? await run(process.execPath, ['--import', 'tsx', S.script, '--export-pair', runDir(e.runs[0]), runDir(e.runs[1]), model], /error|Error/)
        : await node('alhvr-export', [runDir(e.runs[0]), '--out', model, '--students', e.students], /error|Error/);
    if (stopping) return;
    const sg = await node('alhvr-segment', [join(TEST_DATA, 'imagesTr'), '--output', seg, '--model', model, '--device', 'cpu', '--threads', '2', '--formats', 'nifti', '--no-preview', '--quiet'], /error|Error/);
    if (stopping) return;
    const ev = await node('alhvr-eval', ['--pred', seg, '--ref', join(TEST_DATA, 'labelsTr'), '--json', '--quiet'], /error|Error/);
    if (stopping) return;
    const scores = scoreEval(JSON.parse(ev.stdout) as EvalJson);
    writeJsonAtomic(file, {
      ...e,
      scores,
      seconds: { export: ex.seconds, segment: sg.seconds, eval: ev.seconds, total: (performance.now() - t0) / 1000 },
      date: new Date().toISOString(),
      loadavg1: loadavg()[0],
    });
    rmSync(seg, { recursive: true, force: true });
    log(`  ${e.name}: Dice ${scores.dice.mean.toFixed(4)} ± ${scores.dice.std.toFixed(4)} (worst ${scores.dice.worst.toFixed(3)}), HD95 ${scores.hd95Mm.mean.toFixed(2)} mm`);
  }

  // ---- results ---------------------------------------------------------------------------------
  type Scored = { scores: ReturnType<typeof scoreEval>; group: string; name: string; runs: string[]; students: string; seconds: Record<string, number> };

  function groupStats(evals: Scored[]) {
    const groups = new Map<string, Scored[]>();
    for (const e of evals) groups.set(e.group, [...(groups.get(e.group) ?? []), e]);
    return Object.fromEntries(
      [...groups].map(([g, list]) => {
        const of = (k: 'dice' | 'jaccard' | 'hd95Mm' | 'asdMm') => {
          // A model whose every case lacks a distance has mean null (NaN): left out, n says so.
          const v = list.map((e) => e.scores[k].mean).filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
          return { mean: v.length ? mean(v) : NaN, std: std(v), n: v.length };
        };
        return [g, { models: list.map((e) => e.name), dice: of('dice'), jaccard: of('jaccard'), hd95Mm: of('hd95Mm'), asdMm: of('asdMm'), worstCaseDice: Math.min(...list.map((e) => e.scores.dice.worst)) }];
      }),
    );
  }

  /** Scores of models later trained further (kept aside by supersedeEvals), reported as such. */
  function supersededEvals(): Record<string, unknown> {
    const dir = join(S.work, 'evals', 'superseded');
    if (!existsSync(dir)) return {};
    return Object.fromEntries(
      readdirSync(dir)
        .filter((f) => f.endsWith('.json'))
        .map((f) => {
          const e = readJson<Scored & { date: string }>(join(dir, f));
          return [f.replace(/\.json$/, '').replace(/__/g, '/'), { runs: e.runs, students: e.students, dice: e.scores.dice, hd95Mm: e.scores.hd95Mm, date: e.date }];
        }),
    );
  }

  /** `startedAt` null: only rewrite the results from the files on disk (--report), no session entry. */
  function writeResults(startedAt: string | null): void {
    const evals: Scored[] = EVALS.flatMap((e) => (existsSync(evalFile(e.name)) ? [readJson<Scored>(evalFile(e.name))] : (carriedEval(e.name) ?? [])));
    const groups = groupStats(evals);
    const gap = (ssl: string, base: string, upper = 'sup-all') => {
      const s = groups[ssl]?.dice.mean;
      const b = groups[base]?.dice.mean;
      const u = groups[upper]?.dice.mean;
      if (s === undefined || b === undefined || u === undefined) return null;
      // With the bound at or below the baseline, or above it by less than the test set's own noise
      // (a hundredth of Dice on 30 cases), the ratio would mean nothing.
      if (!(u - b >= MIN_GAP)) {
        const why = u > b ? `beats the baseline (${base} ${b.toFixed(3)}) by less than ${MIN_GAP} Dice: no gap to measure` : `does not beat the baseline (${base} ${b.toFixed(3)}): no gap to close`;
        return { ssl, base, upper, dice: { ssl: s, base: b, upper: u }, gapClosed: null, why: `the bound (${upper} ${u.toFixed(3)}) ${why}` };
      }
      return { ssl, base, upper, dice: { ssl: s, base: b, upper: u }, gapClosed: (s - b) / (u - b) };
    };
    const previous = existsSync(S.results) ? readJson<{ sessions?: unknown[] }>(S.results) : {};
    const sessions = (previous.sessions ?? []) as { startedAt: string }[];
    const session = { startedAt: startedAt ?? '', updatedAt: new Date().toISOString(), loadavg: loadavg(), cpus: cpus().length, node: process.version, toolkit: toolkitCommit(), lanes: LANES, threads: S.threads };
    const idx = sessions.findIndex((s) => s.startedAt === startedAt);
    if (startedAt === null) {
      // report only
    } else if (idx >= 0) sessions[idx] = session;
    else sessions.push(session);
    writeJsonAtomic(S.results, {
      benchmark: S.describe.benchmark,
      smoke: S.smoke,
      data: {
        train: { ...S.train, labelledCases: S.labeledCases, validationCases: S.valCases, unlabeledCases: ALL_LABELLED - S.labeledCases, labelledFraction: S.labeledCases / ALL_LABELLED },
        test: S.test,
        generator: S.describe.generator,
      },
      recipe: { ...S.recipe, iterations: S.iterations, rampIterations: Math.max(200, S.iterations), valEvery: S.valEvery, rest: S.describe.recipeRest },
      scoring: S.describe.scoring,
      history: S.describe.history,
      contention: S.describe.contention,
      ...S.describe.extra,
      sessions,
      trainings: Object.fromEntries(S.known.map((t) => [t.name, summarizeTraining(t) ?? carriedTraining(t.name)]).filter(([, v]) => v)),
      evaluations: Object.fromEntries(evals.map((e) => [e.name, { runs: e.runs, students: e.students, group: e.group, ...e.scores, seconds: e.seconds }])),
      groups,
      superseded: supersededEvals(),
      gapClosed: {
        singleStudentVsSingle: gap('alhvr/a', 'sup-few'),
        ensembleVsPair: gap('alhvr/ensemble', 'sup-few-pair'),
        ensembleVsSingle: gap('alhvr/ensemble', 'sup-few'),
        target: 0.75,
      },
    });
  }

  /** The results' figure (same name, .png): each scored model's test Dice (mean ± std over cases) against the two bounds. */
  async function writeFigure(): Promise<void> {
    if (!existsSync(S.results)) return;
    const { writePlot } = await import('../cli/src/lib/plots/render.js');
    const r = readJson<{ evaluations: Record<string, { group: string; dice: { mean: number; std: number; worst: number } }>; gapClosed: Record<string, { gapClosed: number | null } | null> }>(S.results);
    const rows = Object.entries(r.evaluations).map(([name, e]) => ({
      model: name,
      kind: e.group.startsWith('sup-all') ? 'all labelled (upper bound)' : e.group.startsWith('sup-few') ? 'labelled only' : e.group.startsWith('alhvr-regions') ? 'ALHVR ablation' : 'ALHVR',
      dice: e.dice.mean,
      lo: e.dice.mean - e.dice.std,
      hi: Math.min(1, e.dice.mean + e.dice.std),
      worst: e.dice.worst,
    }));
    if (rows.length === 0) return;
    const closed = (k: string) => {
      const g = r.gapClosed[k];
      return !g ? 'not yet measured' : g.gapClosed === null ? 'no gap to measure' : `${(100 * g.gapClosed).toFixed(0)} %`;
    };
    const y = { field: 'model', type: 'nominal' as const, sort: null, title: null, axis: { labelLimit: 260 } };
    await writePlot(
      {
        $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
        title: {
          text: `Test Dice on ${S.test.cases} unseen phantoms (seed ${S.test.seed}); ${S.labeledCases} labelled cases`,
          subtitle: `gap closed by ALHVR: single student vs single U-Net ${closed('singleStudentVsSingle')}; ensemble vs supervised pair ${closed('ensembleVsPair')} (target 75 %)`,
        },
        data: { values: rows },
        layer: [
          { mark: { type: 'rule' }, encoding: { y, x: { field: 'lo', type: 'quantitative', title: 'Dice (dot: mean; line: ± std over cases; tick: worst case)', scale: { domain: [S.figureDiceFloor, 1] } }, x2: { field: 'hi' }, color: { field: 'kind', type: 'nominal', title: null } } },
          { mark: { type: 'point', filled: true, size: 80 }, encoding: { y, x: { field: 'dice', type: 'quantitative' }, color: { field: 'kind', type: 'nominal', title: null } } },
          { mark: { type: 'tick', thickness: 2 }, encoding: { y, x: { field: 'worst', type: 'quantitative' }, color: { field: 'kind', type: 'nominal', title: null } } },
          { mark: { type: 'text', align: 'left', dx: 8, dy: -8 }, encoding: { y, x: { field: 'dice', type: 'quantitative' }, text: { field: 'dice', type: 'quantitative', format: '.3f' } } },
        ],
        width: 640,
        height: { step: 28 },
      },
      { width: 900 },
      S.results.replace(/\.json$/, '.png'),
    );
  }

  // ---- main ------------------------------------------------------------------------------------
  async function main(): Promise<void> {
    const startedAt = new Date().toISOString();
    log(`${S.name}${S.smoke ? ' (SMOKE)' : ''}: ${S.trainings.length} trainings × ${S.iterations} iterations; work ${S.work}; results ${S.results}`);
    await ensureData(TRAIN_DATA, S.train);
    await ensureData(TEST_DATA, S.test);
    writeResults(startedAt);
    // The session's end is its last write: a minute's heartbeat keeps it true to a minute even when
    // the process is killed without a chance to write (a session's end kills it).
    const heartbeat = setInterval(() => writeResults(startedAt), 60_000);
    heartbeat.unref();
    // Lanes take trainings in priority order; whichever finishes one scores what became scorable.
    const queue = [...S.trainings];
    const scoring = new Set<string>();
    let failed = false;
    const scoreReady = async () => {
      for (const e of EVALS) {
        if (stopping) break;
        if (scoring.has(e.name) || !e.runs.every(trained)) continue;
        scoring.add(e.name);
        try {
          await evaluate(e);
        } finally {
          scoring.delete(e.name);
        }
        writeResults(startedAt);
      }
    };
    const lane = async () => {
      for (let t = queue.shift(); t && !stopping && !failed; t = queue.shift()) {
        const ok = await ensureTrained(t);
        writeResults(startedAt);
        if (!ok) failed = true;
        else await scoreReady();
      }
    };
    if (LANES > 1) log(`${LANES} trainings at once, ${S.threads} thread(s) each`);
    await Promise.all(Array.from({ length: LANES }, lane));
    clearInterval(heartbeat);
    writeResults(startedAt);
    await writeFigure();
    const left = S.trainings.filter((t) => !trained(t.name)).map((t) => t.name);
    // only this invocation's evaluations: those of parts not asked for are not "left"
    const selected = new Set(S.trainings.flatMap((t) => (t.snapshotAt ? [t.name, snapshotName(t)] : [t.name])));
    const evalsLeft = EVALS.filter((e) => e.runs.every((r) => selected.has(r)) && !scored(e.name)).map((e) => e.name);
    log(left.length || evalsLeft.length ? `stopped; left: trainings [${left.join(', ')}], evaluations [${evalsLeft.join(', ')}]` : 'all runs finished');
  }

  /** `--report`: rewrite the results from disk; `--export-pair A B OUT`: the pair export (a child of evaluate); else run. */
  async function cliMain(argv: string[]): Promise<void> {
    if (argv[2] === '--report') {
      writeResults(null);
      await writeFigure();
    } else if (argv[2] === '--export-pair') {
      await exportPair(argv[3], argv[4], argv[5]);
    } else {
      await main();
    }
  }

  return { cli: cliMain, main, writeResults, writeFigure, exportPair, evals: EVALS };
}
