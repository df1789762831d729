import { describe, expect, test } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TOOLKIT_VERSION } from './version.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const readJson = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as { version?: string; workspaces?: string[] };

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' || e.name === 'dist' ? [] : sources(path);
    return /\.ts$/.test(e.name) && !/\.test\.ts$/.test(e.name) ? [path] : [];
  });
}

describe('toolkit version', () => {
  const root = readJson(join(ROOT, 'package.json'));

  test('the root and every workspace package.json carry TOOLKIT_VERSION', () => {
    const versions = Object.fromEntries(
      ['.', ...(root.workspaces ?? [])].map((w) => [w, readJson(join(ROOT, w, 'package.json')).version]),
    );
    expect(Object.keys(versions).length).toBeGreaterThan(5);
    for (const [workspace, version] of Object.entries(versions)) expect({ workspace, version }).toEqual({ workspace, version: TOOLKIT_VERSION });
  });

  test('no product source declares the version again', () => {
    const literal = `'${TOOLKIT_VERSION}'`;
    const packages = ['core', 'training', 'export', 'inference', 'cli', 'viewer'];
    const offenders = packages
      .flatMap((p) => sources(join(ROOT, p, 'src')))
      .filter((f) => !f.endsWith(join('core', 'src', 'version.ts')) && readFileSync(f, 'utf8').includes(literal));
    expect(offenders).toEqual([]);
  });
});
