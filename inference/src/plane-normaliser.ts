import { applyIntensityMap, intensityMap, type IntensityMap, type Normalisation } from '@alhvr/core';

/**
 * core's `normaliseIntensities`, one plane at a time: the volume's intensity map is computed
 * once by core, then each plane is mapped exactly as the whole volume would be. Inference thus
 * never holds a float32 copy of the input volume (4 bytes/voxel: 630 MB for a 512×512×600 CT).
 * plane-normaliser.test.ts checks equality.
 */
export class PlaneNormaliser {
  private readonly map: IntensityMap;

  constructor(data: ArrayLike<number>, rule: Normalisation) {
    this.map = intensityMap(data, rule);
  }

  /** Normalise `raw` (the input's own values, as doubles) into `out`. */
  apply(raw: Float64Array, out: Float32Array): void {
    applyIntensityMap(this.map, raw, out);
  }
}
