import { describe, expect, test } from 'vitest';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/**
 * The import graph of every package's sources (tests included) has no cycle. Edges are the
 * relative imports and re-exports (static and `import()` of a literal) between .ts files, and
 * `@alhvr/<pkg>` imports, which point at that package's entry file.
 */

const root = fileURLToPath(new URL('..', import.meta.url));
const PACKAGES = ['core', 'training', 'export', 'inference', 'cli', 'viewer'];
const ENTRIES: Record<string, string> = {
  '@alhvr/core': 'core/src/index.ts',
  '@alhvr/core/node': 'core/src/node.ts',
  '@alhvr/training': 'training/src/index.ts',
  '@alhvr/export': 'export/src/index.ts',
  '@alhvr/inference': 'inference/src/index.ts',
  '@alhvr/inference/node': 'inference/src/node.ts',
};

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name !== 'node_modules' && name !== 'dist') out.push(...sourceFiles(p));
    } else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) {
      out.push(p);
    }
  }
  return out;
}

/** The .ts file an import specifier names, or null for a package outside the repository. */
function resolveImport(from: string, spec: string): string | null {
  if (spec in ENTRIES) return join(root, ENTRIES[spec]);
  if (!spec.startsWith('.')) return null;
  const base = resolve(dirname(from), spec);
  for (const candidate of [base.replace(/\.js$/, '.ts'), `${base}.ts`, join(base, 'index.ts')]) {
    if (existsSync(candidate)) return candidate;
  }
  return null;
}

function importGraph(): Map<string, string[]> {
  const files = [...PACKAGES.flatMap((p) => sourceFiles(join(root, p, 'src'))), ...sourceFiles(join(root, 'test')), ...sourceFiles(join(root, 'bench'))];
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    const targets = info.importedFiles.map((f) => resolveImport(file, f.fileName)).filter((t): t is string => t !== null);
    graph.set(file, [...new Set(targets)]);
  }
  return graph;
}

/** Every cycle found by a depth-first walk, each as the list of files around it. */
export function findCycles(graph: Map<string, string[]>): string[][] {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const visit = (f: string): void => {
    state.set(f, 'open');
    stack.push(f);
    for (const t of graph.get(f) ?? []) {
      if (state.get(t) === 'open') cycles.push([...stack.slice(stack.indexOf(t)), t]);
      else if (!state.has(t)) visit(t);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of graph.keys()) if (!state.has(f)) visit(f);
  return cycles;
}

describe('import graph', () => {
  test('finds a planted cycle', () => {
    expect(findCycles(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]]))).toEqual([['a', 'b', 'c', 'a']]);
  });

  test('has no cycle', () => {
    const graph = importGraph();
    expect(graph.size).toBeGreaterThan(100);
    const cycles = findCycles(graph).map((c) => c.map((f) => relative(root, f)).join(' → '));
    expect(cycles).toEqual([]);
  });
});
