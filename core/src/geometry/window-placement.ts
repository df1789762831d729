/**
 * Where sliding windows sit along one axis (released 3D test script, nnU-Net alike): pure
 * arithmetic, shared by training's 3D validation and inference's sliding window, so both place
 * the same windows.
 */

/** The released stride for a patch side: 64 for 96. */
export function defaultWindowStride(patch: number): number {
  return Math.max(1, Math.floor((2 * patch) / 3));
}

/**
 * Window starts along an axis of `size` voxels (after padding to at least `patch`):
 * ⌈(S − P)/s⌉ + 1 windows at min(s·i, S − P), so the last window ends on the border.
 */
export function windowStartsAlong(size: number, patch: number, stride: number): number[] {
  if (!(Number.isInteger(size) && size > 0 && Number.isInteger(patch) && patch > 0 && Number.isInteger(stride) && stride > 0)) {
    throw new Error(`sliding window: size ${size}, patch ${patch} and stride ${stride} must be positive integers`);
  }
  const padded = Math.max(size, patch);
  const count = Math.ceil((padded - patch) / stride) + 1;
  return Array.from({ length: count }, (_, n) => Math.min(n * stride, padded - patch));
}

/** Zero padding before the data along an axis shorter than the patch (⌊pad/2⌋, as released). */
export function windowPadBefore(size: number, patch: number): number {
  return size < patch ? Math.floor((patch - size) / 2) : 0;
}
