import { discoverInputs, type CaseSource, type DiscoverOptions, type SkippedFile } from '@alhvr/inference/node';

export { describeSeries, seriesFolder, type SkippedFile } from '@alhvr/inference/node';

/**
 * A discovered case flattened for alhvr-info and alhvr-convert, which read `kind`, `path`, `id`
 * and `series` side by side. Discovery and naming are inference's discoverInputs.
 */
export type ImageSource = CaseSource & { id: string };

export interface ExpandedInputs {
  sources: ImageSource[];
  skipped: SkippedFile[];
  labelMaps: string[];
}

export async function expandInputs(paths: string[], options: DiscoverOptions = {}): Promise<ExpandedInputs> {
  const { cases, skipped, labelMaps } = await discoverInputs(paths, options);
  return { sources: cases.map((c) => ({ ...c.source, id: c.id })), skipped, labelMaps };
}
