/**
 * The toolkit's version: the one declaration every product reads (model cards, checkpoints'
 * config, DICOM SEG SoftwareVersions, the CLI's --version through its package.json). Every
 * workspace package.json carries the same version; core/src/version.test.ts keeps them equal.
 */
export const TOOLKIT_VERSION = '0.1.0';
