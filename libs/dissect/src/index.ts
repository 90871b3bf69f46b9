export * from './types';
export {
  SOFT_WPMI_DEFAULTS,
  WPMI_DEFAULTS,
  COS_CUBED_DEFAULTS,
  RANK_REORDER_DEFAULTS,
  SIMILARITY_METHODS,
  resolveParams,
  validateInputs,
} from './params';
export {
  computeSimilarity,
  computeSimilarityDetailed,
  computeSimilarityOn,
  allocSharedMatrix,
  defaultExecutor,
  type SimilarityStages,
} from './similarity';
export {
  allocSoftmaxInput,
  allocSoftmaxReadyMatrix,
  softmaxInputFromNpy,
  isSoftmaxInput,
  type SoftmaxInput,
  type NpySource,
} from './softmax-input';
export { inlineExecutor, type Executor } from './executor';
export { DissectPool, type DissectPoolOptions } from './pool';
export {
  dissectLayer,
  dissectOn,
  labelsFromSimilarity,
  topConceptsPerNeuron,
  tieTolerance,
  TIE_TOLERANCE,
  DEFAULT_TOP_IMAGES,
  topActivatingImages,
  deadNeurons,
  unifiedEmbedding,
  validateSpace,
  type DissectOptions,
} from './dissect';
export {
  calibrateThreshold,
  calibrateOn,
  calibrateLikelihoodNull,
  likelihoodNullOn,
  usesLikelihoodNull,
  normalQuantile,
  nullActivations,
  quantile,
  DEFAULT_CALIBRATION_SEED,
  DEFAULT_NULL_NEURONS,
  type CalibrationOptions,
  type LikelihoodNull,
} from './calibrate';
export {
  layerMetrics,
  normalisedEntropy,
  distinctShare,
  embeddingSpread,
  conceptSwitches,
  topLayerConcepts,
  type MetricsOptions,
} from './metrics';
export {
  learnedConceptShare,
  beyondCeiling,
  chanceFraction,
  combinedCeiling,
  layerEvidence,
  neuronEvidence,
  randomInitLayer,
  EVIDENCE_TOLERANCE,
  type NeuronEvidence,
  type RandomInitLayer,
  type LearnedConceptShare,
} from './learned';
export { fitProjection, projectTo2d, type Projection } from './projection';
export { poolLayer, PoolingStream, type NonFiniteValue, type PoolingStreamOptions } from './pooling';
export { SharedBufferPool, type SharedBufferPoolOptions } from './buffer-pool';
export { similarityBuffers } from './dissect';
