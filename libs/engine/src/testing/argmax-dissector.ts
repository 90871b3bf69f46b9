/**
 * A test double of the dissector for transport tests (gRPC, backpressure, resend), where what is
 * measured is delivery, not labels: each neuron's label is the concept maximising sum_i Q[i,k] P[i,j].
 * Deterministic and fast. Engine and end-to-end tests use @cm/dissect itself.
 */
import type { ConceptSpace, DissectOptions, LayerDissection, Matrix } from '@cm/dissect';
import type { LayerDissector, LayerResult } from '../engine';

export function argmaxDissector(delayMs = 0): LayerDissector & { calls: number } {
  const self = {
    calls: 0,
    async dissect(space: ConceptSpace, q: Matrix, opts: DissectOptions): Promise<LayerResult> {
      self.calls++;
      if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
      const { rows: d, cols: s, data: p } = space.probeScores;
      const n = q.cols;
      const top1 = new Int32Array(n);
      const labels: LayerDissection['labels'] = [];
      const counts = new Map<string, number>();
      let switches = 0;
      for (let k = 0; k < n; k++) {
        let best = -Infinity;
        let bestJ = 0;
        for (let j = 0; j < s; j++) {
          let acc = 0;
          for (let i = 0; i < d; i++) acc += q.data[i * n + k] * p[i * s + j];
          if (acc > best) {
            best = acc;
            bestJ = j;
          }
        }
        top1[k] = bestJ;
        if (opts.previousTop1 && opts.previousTop1[k] !== bestJ) switches++;
        const concept = space.concepts[bestJ];
        counts.set(concept, (counts.get(concept) ?? 0) + 1);
        labels.push({
          neuron: k,
          concept,
          conceptIndex: bestJ,
          category: space.categories[bestJ],
          score: best / d,
          interpretable: true,
          topConcepts: [concept],
          topScores: [best / d],
          topImages: Array.from({ length: d }, (_, i) => i)
            .sort((a, b) => q.data[b * n + k] - q.data[a * n + k] || a - b)
            .slice(0, 8),
          embedding: new Float32Array(0),
          x: 0,
          y: 0,
          dead: false,
        });
      }
      const topConcepts = [...counts.entries()]
        .map(([concept, count]) => ({ concept, count }))
        .sort((a, b) => b.count - a.count || (a.concept < b.concept ? -1 : 1));
      return {
        labels,
        top1,
        topConcepts,
        metrics: {
          neurons: n,
          interpretableFraction: 1,
          meanTopScore: labels.reduce((a, l) => a + l.score, 0) / n,
          distinctConceptShare: counts.size / Math.min(n, s),
          labelEntropy: 0,
          embeddingSpread: 0,
          deadFraction: 0,
          categoryShares: {},
          switches: opts.previousTop1 ? switches : 0,
          switchFraction: opts.previousTop1 ? switches / n : 0,
          threshold: 0,
        },
      };
    },
  };
  return self;
}
