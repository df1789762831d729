/**
 * A string made safe to use as one file name on every platform: no path separators, no `..`,
 * no leading dot (hidden files), no control or shell-hostile characters, bounded length.
 */
export function sanitiseFileStem(text: string, fallback = 'image'): string {
  const cleaned = text
    .normalize('NFKD')
    .replace(/[^A-Za-z0-9._+-]+/g, '_')
    .replace(/\.{2,}/g, '.')
    .replace(/_{2,}/g, '_')
    .replace(/^[._-]+|[._-]+$/g, '')
    .slice(0, 96)
    .replace(/[._-]+$/g, '');
  return cleaned || fallback;
}

/** The NIfTI extensions the toolkit reads, longest first so ".nii.gz" wins over ".gz". */
const NIFTI_EXTENSIONS = ['.nii.gz', '.hdr.gz', '.nii', '.hdr'];

export function niftiExtension(path: string): string | undefined {
  const lower = path.toLowerCase();
  return NIFTI_EXTENSIONS.find((ext) => lower.endsWith(ext));
}

export function isNiftiPath(path: string): boolean {
  return niftiExtension(path) !== undefined;
}

/** The data half of an Analyze/NIfTI pair, which belongs to its .hdr and is not an image by itself. */
export function isPairImagePath(path: string): boolean {
  const lower = path.toLowerCase();
  return lower.endsWith('.img') || lower.endsWith('.img.gz');
}

/** "brain.nii.gz" → "brain". */
export function stripNiftiExtension(name: string): string {
  const ext = niftiExtension(name);
  return ext ? name.slice(0, name.length - ext.length) : name;
}

/**
 * Make every name in `names` unique, keeping the first occurrence as is and numbering the
 * rest (`name_2`, `name_3`, ...) in order, so the result depends only on the input order.
 */
export function uniqueNames(names: string[]): string[] {
  const taken = new Set<string>();
  const lowerTaken = (n: string) => taken.has(n.toLowerCase());
  return names.map((name) => {
    let candidate = name;
    for (let n = 2; lowerTaken(candidate); n++) candidate = `${name}_${n}`;
    taken.add(candidate.toLowerCase());
    return candidate;
  });
}
