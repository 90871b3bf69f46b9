import type { ProbeBundle } from './bundle';

export interface BundleSummary {
  id: string;
  dir: string;
  images: number;
  imageSize: [number, number];
  concepts: number;
  embeddingDim: number;
  /** Concepts per category, in first-seen order. */
  categories: Array<{ category: string; count: number; examples: string[] }>;
  probeScoresMode: string;
  provenance: ProbeBundle['manifest']['provenance'];
  source: ProbeBundle['manifest']['source'];
  /** Mean of P over images per concept: how often (labelled) or how strongly (CLIP) each concept shows. */
  pRange: { min: number; max: number; mean: number };
}

export function summarizeBundle(bundle: ProbeBundle): BundleSummary {
  const byCategory = new Map<string, string[]>();
  bundle.space.concepts.forEach((c, j) => {
    const cat = bundle.space.categories[j];
    byCategory.set(cat, [...(byCategory.get(cat) ?? []), c]);
  });
  const p = bundle.space.probeScores.data;
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  for (const v of p) {
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v;
  }
  return {
    id: bundle.id,
    dir: bundle.dir,
    images: bundle.imageShape[0],
    imageSize: [bundle.imageShape[1], bundle.imageShape[2]],
    concepts: bundle.space.concepts.length,
    embeddingDim: bundle.space.conceptEmbeddings.cols,
    categories: [...byCategory].map(([category, names]) => ({
      category,
      count: names.length,
      examples: names.slice(0, 6),
    })),
    probeScoresMode: bundle.manifest.probeScoresMode,
    provenance: bundle.manifest.provenance,
    source: bundle.manifest.source,
    pRange: { min, max, mean: sum / Math.max(1, p.length) },
  };
}

/** Human-readable summary, one fact per line. */
export function formatSummary(s: BundleSummary): string {
  const src =
    s.source.kind === 'synthetic'
      ? `synthetic world '${s.source.world}', seed ${s.source.seed}`
      : `CLIP model '${s.source.model}', ${s.source.imageFiles.length} images, concepts from ${s.source.conceptsFile}`;
  return [
    `bundle ${s.id}  (${s.dir})`,
    `source:      ${src}`,
    `images:      ${s.images} x ${s.imageSize[0]}x${s.imageSize[1]} RGB`,
    `concepts:    ${s.concepts} in ${s.categories.length} categories, embeddings ${s.embeddingDim}-d`,
    ...s.categories.map(
      (c) =>
        `  ${c.category.padEnd(12)} ${String(c.count).padStart(4)}  ${c.examples.join(', ')}${c.count > c.examples.length ? ', ...' : ''}`,
    ),
    `P (${s.probeScoresMode}): values ${s.pRange.min.toFixed(3)}..${s.pRange.max.toFixed(3)}, mean ${s.pRange.mean.toFixed(3)}`,
    `  P:          ${s.provenance.probeScores}`,
    `  embeddings: ${s.provenance.conceptEmbeddings}`,
    `  2D map:     ${s.provenance.projection}`,
  ].join('\n');
}
