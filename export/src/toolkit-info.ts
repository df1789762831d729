/** Node-only: the toolkit version and, when run from a git checkout, the commit. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ModelCard } from '@alhvr/core';

export function toolkitInfo(): ModelCard['toolkit'] {
  // src/ and dist/ both sit one level below export/package.json.
  const pkgUrl = new URL('../package.json', import.meta.url);
  const version = (JSON.parse(readFileSync(pkgUrl, 'utf8')) as { version: string }).version;
  let gitCommit: string | undefined;
  try {
    const out = execFileSync('git', ['rev-parse', 'HEAD'], {
      cwd: fileURLToPath(new URL('.', pkgUrl)),
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    if (/^[0-9a-f]{40}$/.test(out)) gitCommit = out;
  } catch {
    // Not a git checkout (installed package) or git missing: the card simply omits the commit.
  }
  return gitCommit ? { version, gitCommit } : { version };
}
