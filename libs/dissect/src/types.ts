/**
 * Public types of the dissection core. Shapes follow method.md (../shared/reference/method.md):
 * P is D x S (probe images x concepts), Q is D x N (probe images x neurons), similarities N x S.
 * All matrices are float32, row-major.
 */
export interface Matrix {
  readonly rows: number;
  readonly cols: number;
  /** rows * cols values, row-major. */
  readonly data: Float32Array;
}

export type SimilarityMethod = 'soft_wpmi' | 'wpmi' | 'cos' | 'cos_cubed' | 'rank_reorder';

export interface SoftWpmiParams {
  topK: number;
  a: number;
  lambda: number;
  minProb: number;
  pStart: number;
  pEnd: number;
}
export interface WpmiParams {
  topK: number;
  a: number;
  lambda: number;
  minProb: number;
}
export interface CosCubedParams {
  minNorm: number;
}
export interface RankReorderParams {
  p: number;
  topFraction: number;
  scaleP: number;
  seed: number;
}

export type SimilarityParams = Partial<SoftWpmiParams & WpmiParams & CosCubedParams & RankReorderParams>;

/** Raw layer output: a dense layer [D, N] or a conv layer [D, H, W, C] (NHWC). */
export interface LayerTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}
export type PoolingMode = 'avg' | 'max';

/** What one dissection needs besides the layer's activations; fixed per probe bundle. */
export interface ConceptSpace {
  /** S concept names. */
  readonly concepts: readonly string[];
  /** S categories (colour, shape, texture, ...), one per concept. */
  readonly categories: readonly string[];
  /** P, D x S. */
  readonly probeScores: Matrix;
  /** Concept embeddings, S x d (rows unit norm). */
  readonly conceptEmbeddings: Matrix;
  /** Fixed 2D projection of the concept space: d x 2 matrix and d-vector mean (PCA). */
  readonly projection: { readonly components: Matrix; readonly mean: Float32Array };
}

export interface NeuronLabel {
  neuron: number;
  concept: string;
  conceptIndex: number;
  category: string;
  score: number;
  interpretable: boolean;
  /** top-k concepts (k = 5 by default), best first, with their scores. */
  topConcepts: string[];
  topScores: number[];
  /** Indices of the neuron's top activating probe images, best first (DissectOptions.topImages of them). */
  topImages: number[];
  /** Unified embedding (d) and its fixed 2D position. */
  embedding: Float32Array;
  x: number;
  y: number;
  /** Never active on the probe set (all activations equal). */
  dead: boolean;
  /** Top-1 concept differs from the previous checkpoint's (only when one was given). */
  switched?: boolean;
}

export interface LayerMetrics {
  neurons: number;
  interpretableFraction: number;
  meanTopScore: number;
  distinctConceptShare: number;
  /** Entropy of the top-1 concept distribution / log(min(N, S)), in [0, 1]. */
  labelEntropy: number;
  /** 1 - |mean unit neuron embedding|^2, in [0, 1]. */
  embeddingSpread: number;
  deadFraction: number;
  /** Share of interpretable neurons per category. */
  categoryShares: Record<string, number>;
  /** Neurons whose top-1 concept differs from the previous checkpoint (0 at the first). */
  switches: number;
  switchFraction: number;
  /**
   * Interpretability threshold used for this layer (docs/dissect.md, Calibration). thresholdKind
   * 'score': interpretable = score > threshold (cos, cos_cubed, rank_reorder, or a threshold given
   * by the caller). 'likelihood-margin' (wpmi / soft_wpmi, calibrated): each neuron is tested on its
   * own likelihood against a per-concept null; threshold is the median over concepts of the margin
   * over the null mean that the test requires, in nats.
   */
  threshold: number;
  thresholdKind?: 'score' | 'likelihood-margin';
}

export interface LayerDissection {
  labels: NeuronLabel[];
  metrics: LayerMetrics;
  /** Most common top-1 concepts of the layer, most frequent first. */
  topConcepts: { concept: string; count: number }[];
  /**
   * What the learned-concept figure needs (learned.ts, docs/dissect.md "Learned concepts"): per
   * neuron its evidence for its label's concept (own likelihood for wpmi / soft_wpmi, else the
   * similarity; -Infinity when dead), and with DissectOptions.conceptCeiling per concept the max
   * over the live neurons. Set by dissectLayer / dissectOn.
   */
  evidence?: { neuron: Float32Array; conceptCeiling?: Float32Array };
}
