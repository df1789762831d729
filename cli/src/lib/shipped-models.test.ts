import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeShippedModels, readShippedModels, resolveModelArgument, shippedModelsFolder } from './shipped-models.js';

describe('shipped models by name', () => {
  const folder = mkdtempSync(join(tmpdir(), 'alhvr-shipped-'));
  writeFileSync(join(folder, 'shipped.json'), JSON.stringify({ default: { file: 'a.onnx', what: 'A' }, ct: { file: 'ct.onnx', what: 'CT' } }));
  writeFileSync(join(folder, 'a.onnx'), 'x');
  afterAll(() => rmSync(folder, { recursive: true, force: true }));

  it('no --model is the default; a name is its file; a path is itself', () => {
    expect(resolveModelArgument(undefined, folder)).toBe(join(folder, 'a.onnx'));
    expect(resolveModelArgument('default', folder)).toBe(join(folder, 'a.onnx'));
    expect(resolveModelArgument('runs/x.onnx', folder)).toBe('runs/x.onnx');
    expect(resolveModelArgument('other.ONNX', folder)).toBe('other.ONNX');
  });

  it('a name whose file is not installed, or an unknown name, is a one-line error naming the choices', () => {
    expect(() => resolveModelArgument('ct', folder)).toThrow(/shipped model "ct" is not installed/);
    expect(() => resolveModelArgument('cardiac', folder)).toThrow('--model "cardiac" is neither a file nor a shipped model (default, ct)');
  });

  it('an existing file wins over a shipped name', () => {
    const cwdFile = join(folder, 'default');
    writeFileSync(cwdFile, 'y');
    expect(resolveModelArgument(cwdFile, folder)).toBe(cwdFile);
  });

  it('the repository ships every model its list names, and --help lists them', () => {
    const repo = shippedModelsFolder()!;
    const shipped = readShippedModels(repo);
    expect(shipped.default.file).toBe('alhvr-default.onnx');
    for (const name of Object.keys(shipped)) expect(resolveModelArgument(name, repo)).toBe(join(repo, shipped[name].file));
    expect(describeShippedModels(repo)).toContain('default (cardiac MR');
  });
});
