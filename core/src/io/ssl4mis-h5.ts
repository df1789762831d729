import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { InputError } from '../errors.js';
import { scalingAffine } from '../geometry/affine.js';
import { Volume } from '../volume.js';

/**
 * The SSL4MIS HDF5 layout the paper's ACDC protocol uses: `data_list/{train_slices,val,test}.list`,
 * one file per training slice (`slices/<name>.h5`) and one per validation/test volume
 * (`<case>.h5`), each with datasets `image` (min–max normalised float) and `label`.
 */
type H5Module = typeof import('h5wasm/node').default;
let h5: Promise<H5Module> | undefined;

/** h5wasm (HDF5 compiled to WebAssembly) loads once, on first use. */
export function loadH5wasm(): Promise<H5Module> {
  h5 ??= import('h5wasm/node').then(async (m) => {
    await m.default.ready;
    return m.default;
  });
  return h5;
}

/** The case names of one list (`train_slices`, `val`, `test`) under an SSL4MIS root. */
export async function readSsl4misList(root: string, name: string): Promise<string[]> {
  const path = join(root, 'data_list', `${name}.list`);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new InputError(`missing ${name}.list (expected the SSL4MIS layout: data_list/{train_slices,val,test}.list, slices/*.h5, <case>.h5)`, join(root, 'data_list'));
  }
  return text.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
}

/** The SSL4MIS root a list file belongs to (`ROOT/data_list/NAME.list`). */
export function ssl4misRootOfList(listPath: string): { root: string; name: string } {
  return { root: dirname(dirname(listPath)), name: basename(listPath).replace(/\.list$/, '') };
}

export interface Ssl4misVolume {
  image: Volume<Float32Array>;
  /** Absent when the file has no `label` dataset. */
  label?: Volume<Uint8Array>;
}

/**
 * One validation/test volume. Stored [slice, row, col] (C order), which is our x-fastest,
 * then y, then slice order. The files carry no geometry and the released test script scores in
 * voxels, so the grid is the voxel grid (unit spacing) unless the caller knows the spacing.
 */
export async function readSsl4misVolume(path: string, opts: { spacing?: [number, number, number] } = {}): Promise<Ssl4misVolume> {
  const h5wasm = await loadH5wasm();
  let file: InstanceType<H5Module['File']>;
  try {
    file = new h5wasm.File(path, 'r');
  } catch (err) {
    throw new InputError(`cannot open HDF5 file (${(err as Error).message})`, path);
  }
  try {
    const dataset = (name: string) => {
      const d = file.get(name) as { shape?: number[]; value?: unknown } | null;
      return d && Array.isArray(d.shape) ? (d as { shape: number[]; value: unknown }) : undefined;
    };
    const image = dataset('image');
    if (!image) throw new InputError('has no "image" dataset', path);
    if (image.shape.length !== 3) throw new InputError(`image must be a 3D volume [slice, row, col], has shape ${image.shape.join('×')}`, path);
    const [k, h, w] = image.shape;
    const src = image.value as ArrayLike<number>;
    const data = src instanceof Float32Array ? src : Float32Array.from(src);
    const affine = scalingAffine(opts.spacing ?? [1, 1, 1]);
    const volume = new Volume<Float32Array>({ data, dims: [w, h, k], affine, meta: { path } });
    const labelSet = dataset('label');
    if (!labelSet) return { image: volume };
    if (labelSet.shape.join('×') !== image.shape.join('×')) {
      throw new InputError(`label shape ${labelSet.shape.join('×')} differs from image shape ${image.shape.join('×')}`, path);
    }
    const labelValues = labelSet.value as ArrayLike<number>;
    const label = new Uint8Array(labelValues.length);
    for (let p = 0; p < label.length; p++) {
      const v = labelValues[p];
      if (!(Number.isInteger(v) && v >= 0 && v <= 255)) throw new InputError(`label value ${v} is not a class index 0–255`, path);
      label[p] = v;
    }
    return { image: volume, label: volume.withData(label) };
  } finally {
    file.close();
  }
}
