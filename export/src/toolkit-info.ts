/** Node-only: the toolkit version (core's TOOLKIT_VERSION) and, when run from a git checkout, the commit. */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { TOOLKIT_VERSION, type ModelCard } from '@alhvr/core';

export function toolkitInfo(): ModelCard['toolkit'] {
  const version = TOOLKIT_VERSION;
  let gitCommit: string | undefined;
  try {
    const out = execFileSync('git', ['rev-parse', 'HEAD'], {
      // src/ and dist/ both sit one level below the export package's folder.
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    if (/^[0-9a-f]{40}$/.test(out)) gitCommit = out;
  } catch {
    // Not a git checkout (installed package) or git missing: the card simply omits the commit.
  }
  return gitCommit ? { version, gitCommit } : { version };
}
