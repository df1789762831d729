/**
 * preview.png alone: renderPreview with the CLI's text rasterizer (as alhvr-segment draws it) on
 * the 16 phantom cases of bench/segment.ts, per case, in a fresh process: the first pass (cold:
 * nothing compiled, no annotation piece rasterized yet, as in a run of 16 cases) and two more
 * (warm), in milliseconds of wall and of process CPU per case. Labels are the phantoms' own, the
 * region map a fixed pattern over the foreground (its cost does not depend on the values).
 *
 *   npx tsx bench/preview.ts [--baseline OTHER/inference/dist/node.js] [--rounds R]
 *
 * --baseline: the same measurement with another build of inference (an earlier commit's,
 * compiled in a worktree), each in its own process, alternated R times (default 3).
 * Writes bench/results/preview.json.
 */
import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { canonicalOrientation, generatePhantomCase, type ModelCard } from '@alhvr/core';
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from '@alhvr/core/node';
import * as inference from '@alhvr/inference/node';
import { rasterizeSvgLayer } from '../cli/src/lib/plots/render.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..');
const CASES = 16;

interface Timing {
  build: string;
  passes: { wallMsPerCase: number; cpuMsPerCase: number; perCaseMs: number[] }[];
  bytesPerCase: number;
}

async function measure(build: string): Promise<Timing> {
  const { renderPreview, readModelIdentity } = (build === 'current' ? inference : await import(build)) as typeof inference;
  const { card } = await readModelIdentity(new Uint8Array(readFileSync(join(repo, 'models', 'alhvr-default.onnx'))), 'alhvr-default.onnx');
  const cases = Array.from({ length: CASES }, (_, index) => {
    const { image, label } = generatePhantomCase({ seed: 7, index });
    const region = label.withData(Uint8Array.from(label.data, (v, n) => (v === 0 ? 1 : n % 7 === 0 ? 3 : n % 5 === 0 ? 2 : 1)));
    return { id: `phantom_${index}`, image, label, region, orientation: canonicalOrientation(image.affine, (card as ModelCard).input.sliceAxis) };
  });
  const passes: Timing['passes'] = [];
  let bytes = 0;
  for (let pass = 0; pass < 3; pass++) {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const perCaseMs: number[] = [];
    bytes = 0;
    for (const [n, c] of cases.entries()) {
      const t = performance.now();
      const png = renderPreview(c.image, c.label, c.region, card, c.orientation, {
        annotation: { caseId: c.id, verdict: n % 3 === 0 ? 'review' : 'accept', reasons: n % 3 === 0 ? ['predicted Dice 0.712 < 0.800'] : [], predictedDice: 0.712 + n / 100 },
        rasterize: rasterizeSvgLayer,
      });
      perCaseMs.push(Math.round((performance.now() - t) * 10) / 10);
      bytes += png.length;
    }
    const cpu = process.cpuUsage(cpu0);
    passes.push({ wallMsPerCase: (performance.now() - t0) / CASES, cpuMsPerCase: (cpu.user + cpu.system) / 1000 / CASES, perCaseMs });
  }
  return { build, passes, bytesPerCase: bytes / CASES };
}

const childAt = process.argv.indexOf('--child');
if (childAt >= 0) {
  process.stdout.write(`${JSON.stringify(await measure(process.argv[childAt + 1]))}\n`);
} else {
  const at = (name: string) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : undefined);
  const baseline = at('baseline');
  const rounds = Number(at('rounds') ?? 3);
  const builds = baseline ? ['current', baseline] : ['current'];
  const runs: Timing[] = [];
  const loadAtStart = loadavg();
  for (let r = 0; r < rounds; r++) {
    for (const build of r % 2 === 0 ? builds : [...builds].reverse()) {
      const out = execFileSync(join(repo, 'node_modules', '.bin', 'tsx'), [fileURLToPath(import.meta.url), '--child', build], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
      const t: Timing = JSON.parse(out.trim().split('\n').pop()!);
      runs.push(t);
      process.stderr.write(`${build}: cold ${t.passes[0].wallMsPerCase.toFixed(1)} ms/case (cpu ${t.passes[0].cpuMsPerCase.toFixed(1)}), warm ${t.passes[2].wallMsPerCase.toFixed(1)}\n`);
    }
  }
  const median = (xs: number[]) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)];
  const summary = Object.fromEntries(
    builds.map((b) => {
      const mine = runs.filter((t) => t.build === b);
      return [
        b === 'current' ? 'current' : 'baseline',
        {
          coldWallMsPerCase: median(mine.map((t) => t.passes[0].wallMsPerCase)),
          coldCpuMsPerCase: median(mine.map((t) => t.passes[0].cpuMsPerCase)),
          warmWallMsPerCase: median(mine.map((t) => t.passes[2].wallMsPerCase)),
          warmCpuMsPerCase: median(mine.map((t) => t.passes[2].cpuMsPerCase)),
          bytesPerCase: mine[0].bytesPerCase,
        },
      ];
    }),
  );
  const result = {
    what: 'renderPreview with the CLI rasterizer (resvg, DejaVu) on 16 phantom cases (generatePhantomCase seed 7), shipped model card; cold = first pass in a fresh process, warm = third pass',
    baseline,
    rounds,
    summary,
    runs,
    loadavg: { start: loadAtStart, end: loadavg() },
    node: process.version,
    createdAt: new Date().toISOString(),
  };
  await writeFileAtomic(join(repo, 'bench', 'results', 'preview.json'), `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
}
