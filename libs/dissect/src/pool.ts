import { WorkerPool, type WorkerPoolOptions } from './worker-pool';
import type { ConceptSpace, LayerDissection, Matrix, SimilarityMethod, SimilarityParams } from './types';
import { computeSimilarityOn } from './similarity';
import { dissectOn, type DissectOptions } from './dissect';
import { calibrateOn, type CalibrationOptions } from './calibrate';

export type DissectPoolOptions = WorkerPoolOptions;

/**
 * A WorkerPool with the dissection calls on it: what the engine and the CLI hold. The pool itself
 * is only an executor (worker-pool.ts); the calls live above it.
 */
export class DissectPool extends WorkerPool {
  /** CLIP-Dissect similarity (N x S) on this pool's workers. */
  similarity(method: SimilarityMethod, P: Matrix, Q: Matrix, params?: SimilarityParams): Promise<Matrix> {
    return computeSimilarityOn(this, method, P, Q, params);
  }

  /** dissectLayer on this pool's workers. */
  dissect(
    space: ConceptSpace,
    Q: Matrix,
    opts?: DissectOptions,
  ): Promise<LayerDissection & { top1: Int32Array }> {
    return dissectOn(this, space, Q, opts);
  }

  /** calibrateThreshold on this pool's workers. */
  calibrate(
    space: ConceptSpace,
    width: number,
    method?: SimilarityMethod,
    params?: SimilarityParams,
    opts?: CalibrationOptions,
  ): Promise<number> {
    return calibrateOn(this, space, width, method, params, opts);
  }
}
