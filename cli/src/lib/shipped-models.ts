import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { InputError } from '@alhvr/core';

/** What `@alhvr/models` ships: `shipped.json` there names each model and its file. */
export interface ShippedModel {
  file: string;
  what: string;
}

export const DEFAULT_MODEL_NAME = 'default';

/** The folder of the installed @alhvr/models package, or undefined when it is not installed. */
export function shippedModelsFolder(): string | undefined {
  try {
    return dirname(createRequire(import.meta.url).resolve('@alhvr/models/package.json'));
  } catch {
    return undefined;
  }
}

export function readShippedModels(folder: string): Record<string, ShippedModel> {
  return JSON.parse(readFileSync(join(folder, 'shipped.json'), 'utf8')) as Record<string, ShippedModel>;
}

/** One line per shipped model, for --help. */
export function describeShippedModels(folder = shippedModelsFolder()): string {
  if (!folder) return 'none installed (@alhvr/models is missing)';
  return Object.entries(readShippedModels(folder))
    .map(([name, m]) => `${name} (${m.what})`)
    .join('; ');
}

/**
 * `--model` as given: a path to an ONNX file, or the name of a shipped model (a path that exists
 * wins over a name, so a file called "default" in the working folder is still a file). Absent:
 * the shipped default.
 */
export function resolveModelArgument(arg: string | undefined, folder = shippedModelsFolder()): string {
  if (arg !== undefined && (existsSync(arg) || /[\\/]|\.onnx$/i.test(arg))) return arg;
  const name = arg ?? DEFAULT_MODEL_NAME;
  if (!folder) {
    if (arg !== undefined) return arg;
    throw new InputError('no --model given and the @alhvr/models package (which ships the default model) is not installed; pass --model FILE');
  }
  const shipped = readShippedModels(folder);
  const entry = shipped[name];
  if (!entry) throw new InputError(`--model "${name}" is neither a file nor a shipped model (${Object.keys(shipped).join(', ')})`);
  const path = join(folder, entry.file);
  if (!existsSync(path)) throw new InputError(`the shipped model "${name}" is not installed; pass --model FILE (an ONNX file from alhvr-export)`, path);
  return path;
}
