/**
 * What the store can hold, in one table: the gRPC boundary (libs/engine validate), the records'
 * validation and the ClickHouse schema read these, so a value the store would refuse is refused
 * before a checkpoint is acknowledged, never after (when the recorder would have to drop it).
 */
export const UINT32_MAX = 0xffffffff;

export const STORE_LIMITS = {
  /** checkpoints.step, neuron_labels.step ... are UInt32. */
  maxStep: UINT32_MAX,
  /** runs.layers.width is UInt32; neuron indices (UInt32) run up to width - 1. */
  maxLayerWidth: UINT32_MAX,
  /** String columns hold any length; bound names so keys, logs and error messages stay small. */
  maxRunIdLength: 256,
  maxLayerNameLength: 256,
  maxTagKeyLength: 256,
  maxTagValueLength: 4096,
  maxMetricNameLength: 256,
  /** One run's declared layers and tags; far above any real network's monitored layers. */
  maxLayers: 4096,
  maxTags: 256,
  maxMetrics: 256,
} as const;
