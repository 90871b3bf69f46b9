import { dissectLayer, type ConceptSpace, type DissectOptions, type Matrix } from '@cm/dissect';
import type { LayerDissector, LayerResult } from './engine';

/**
 * dissectLayer in the calling thread: for tests and small layers. Services use DissectPool
 * (worker threads), which has the same `dissect` signature.
 */
export function inlineDissector(base: Omit<DissectOptions, 'previousTop1'> = {}): LayerDissector {
  return {
    async dissect(space: ConceptSpace, q: Matrix, opts: DissectOptions): Promise<LayerResult> {
      return dissectLayer(space, q, { ...base, ...opts });
    },
  };
}
