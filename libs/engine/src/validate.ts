/**
 * Checks of what a trainer sends, against the run it declared and the probe bundle. Pure functions:
 * each returns normalised data or throws CmError('INVALID_ARGUMENT') naming the run, layer, step and
 * the offending value, so the gRPC boundary can pass the message to the trainer unchanged.
 */
import { invalidArgument } from '@cm/core';
import {
  STORE_LIMITS as LIMITS,
  type CheckpointData,
  type LayerActivations,
  type MonitoredLayer,
  type RunSpec,
} from '@cm/contracts';

export function validateRunSpec(spec: RunSpec): void {
  const ctx = { runId: spec.runId };
  if (typeof spec.runId !== 'string' || spec.runId.trim().length === 0)
    throw invalidArgument('run id must be a non-empty string', ctx);
  if (spec.runId.length > LIMITS.maxRunIdLength)
    throw invalidArgument(`run id is longer than ${LIMITS.maxRunIdLength} characters`, {
      runId: `${spec.runId.slice(0, 64)}...`,
      length: spec.runId.length,
    });
  if (typeof spec.bundleId !== 'string' || spec.bundleId.length === 0) {
    throw invalidArgument(
      `run ${spec.runId}: probe bundle id is empty`,
      ctx,
      'pass the id printed by `cm probe build`',
    );
  }
  if (!Array.isArray(spec.layers) || spec.layers.length === 0) {
    throw invalidArgument(
      `run ${spec.runId}: declares no monitored layers`,
      ctx,
      'list at least one layer with its width',
    );
  }
  if (spec.layers.length > LIMITS.maxLayers) {
    throw invalidArgument(
      `run ${spec.runId}: declares ${spec.layers.length} layers; at most ${LIMITS.maxLayers} can be monitored in one run`,
      { ...ctx, layers: spec.layers.length },
      'monitor fewer layers, or split them over several runs',
    );
  }
  const seen = new Set<string>();
  for (const l of spec.layers) {
    if (typeof l.name !== 'string' || l.name.length === 0 || l.name.length > LIMITS.maxLayerNameLength) {
      throw invalidArgument(
        `run ${spec.runId}: layer name must be 1..${LIMITS.maxLayerNameLength} characters`,
        {
          ...ctx,
          layer: typeof l.name === 'string' ? l.name.slice(0, 64) : l.name,
        },
      );
    }
    if (seen.has(l.name))
      throw invalidArgument(`run ${spec.runId}: layer ${l.name} is declared twice`, {
        ...ctx,
        layer: l.name,
      });
    seen.add(l.name);
    if (!Number.isInteger(l.width) || l.width < 1 || l.width > LIMITS.maxLayerWidth) {
      throw invalidArgument(
        `run ${spec.runId}: layer ${l.name} has width ${l.width}; it must be an integer from 1 to ${LIMITS.maxLayerWidth}`,
        { ...ctx, layer: l.name },
      );
    }
    if (l.kind !== 'conv' && l.kind !== 'dense') {
      throw invalidArgument(
        `run ${spec.runId}: layer ${l.name} has kind ${String(l.kind)}; expected conv or dense`,
        { ...ctx, layer: l.name },
      );
    }
  }
  const tags = Object.entries(spec.tags ?? {});
  if (tags.length > LIMITS.maxTags)
    throw invalidArgument(`run ${spec.runId}: ${tags.length} tags; at most ${LIMITS.maxTags}`, ctx);
  for (const [k, v] of tags) {
    if (typeof v !== 'string') throw invalidArgument(`run ${spec.runId}: tag ${k} must be a string`, ctx);
    if (k.length > LIMITS.maxTagKeyLength || v.length > LIMITS.maxTagValueLength) {
      throw invalidArgument(
        `run ${spec.runId}: tag ${k.slice(0, 64)} is too long (keys up to ${LIMITS.maxTagKeyLength}, values up to ${LIMITS.maxTagValueLength} characters)`,
        ctx,
      );
    }
  }
}

/** Two specs describe the same run (a reconnecting client resends its RunStart). */
export function sameRunSpec(a: RunSpec, b: RunSpec): boolean {
  const layers = (s: RunSpec): string => JSON.stringify(s.layers.map((l) => [l.name, l.width, l.kind]));
  return (
    a.runId === b.runId &&
    a.bundleId === b.bundleId &&
    a.model === b.model &&
    a.paradigm === b.paradigm &&
    layers(a) === layers(b)
  );
}

/**
 * Check a checkpoint against the run's declared layers: every declared layer exactly once, shape
 * [D, N] or [D, H, W, C] with D = the bundle's probe images and N/C = the declared width, data
 * length = product of the shape, every value finite.
 */
export interface CheckpointValidation {
  /**
   * Leave the finiteness of avg-pooled raw [D, H, W, C] layers to the caller: their float64 means
   * are non-finite exactly when a value is, so the engine checks the pooled D x N values and reads
   * the raw tensor again (assertFinite, same error) only when one is not finite.
   */
  finiteAfterPooling?: boolean;
}

export function validateCheckpoint(
  runId: string,
  declared: ReadonlyMap<string, MonitoredLayer>,
  probeImages: number,
  cp: CheckpointData,
  opts: CheckpointValidation = {},
): void {
  if (!Number.isInteger(cp.step) || cp.step < 0 || cp.step > LIMITS.maxStep) {
    throw invalidArgument(
      `run ${runId}: checkpoint step must be an integer from 0 to ${LIMITS.maxStep}, got ${cp.step}`,
      { runId, step: cp.step },
      'the store keeps steps as UInt32',
    );
  }
  const ctx = { runId, step: cp.step };
  const metrics = Object.entries(cp.metrics ?? {});
  if (metrics.length > LIMITS.maxMetrics)
    throw invalidArgument(
      `run ${runId} step ${cp.step}: ${metrics.length} metrics; at most ${LIMITS.maxMetrics}`,
      ctx,
    );
  for (const [k, v] of metrics) {
    if (k.length === 0 || k.length > LIMITS.maxMetricNameLength) {
      throw invalidArgument(
        `run ${runId} step ${cp.step}: metric names must be 1..${LIMITS.maxMetricNameLength} characters`,
        { ...ctx, metric: k.slice(0, 64) },
      );
    }
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw invalidArgument(
        `run ${runId} step ${cp.step}: training metric ${k} is ${String(v)}; metrics must be finite numbers`,
        ctx,
      );
    }
  }
  const seen = new Set<string>();
  for (const layer of cp.layers) {
    const decl = declared.get(layer.layer);
    if (!decl) {
      throw invalidArgument(
        `run ${runId} step ${cp.step}: layer ${layer.layer} was not declared at run start`,
        { ...ctx, layer: layer.layer },
        `declared layers: ${[...declared.keys()].join(', ')}`,
      );
    }
    if (seen.has(layer.layer))
      throw invalidArgument(`run ${runId} step ${cp.step}: layer ${layer.layer} sent twice`, {
        ...ctx,
        layer: layer.layer,
      });
    seen.add(layer.layer);
    validateLayerShape(runId, cp.step, decl, probeImages, layer);
    if (!(opts.finiteAfterPooling && finiteAfterPooling(layer))) assertFinite(runId, cp.step, layer);
  }
  const missing = [...declared.keys()].filter((n) => !seen.has(n));
  if (missing.length) {
    throw invalidArgument(
      `run ${runId} step ${cp.step}: missing activations of declared layer(s) ${missing.join(', ')}`,
      { ...ctx, missing },
    );
  }
}

export function validateLayerShape(
  runId: string,
  step: number,
  decl: MonitoredLayer,
  probeImages: number,
  layer: LayerActivations,
): void {
  validateLayerHeader(runId, step, decl, probeImages, layer.layer, layer.shape);
  const shape = layer.shape;
  const count = shape.reduce((a, n) => a * n, 1);
  if (!(layer.data instanceof Float32Array) || layer.data.length !== count) {
    throw invalidArgument(
      `run ${runId} step ${step} layer ${layer.layer}: shape [${shape.join(', ')}] holds ${count} values, data has ${layer.data?.length ?? 0}`,
      { runId, step, layer: layer.layer, shape },
    );
  }
  if (layer.pooling !== undefined && layer.pooling !== 'avg' && layer.pooling !== 'max') {
    throw invalidArgument(
      `run ${runId} step ${step} layer ${layer.layer}: pooling ${String(layer.pooling)} must be avg or max`,
      {
        runId,
        step,
        layer: layer.layer,
      },
    );
  }
}

/**
 * The shape checks alone, before any data arrives: the gRPC boundary runs them on a layer's first
 * chunk so that a wrong shape is refused before the service buffers the tensor.
 */
export function validateLayerHeader(
  runId: string,
  step: number,
  decl: MonitoredLayer,
  probeImages: number,
  layerName: string,
  shape: readonly number[],
): void {
  const ctx = { runId, step, layer: layerName, shape };
  const where = `run ${runId} step ${step} layer ${layerName}`;
  if (
    !Array.isArray(shape) ||
    (shape.length !== 2 && shape.length !== 4) ||
    shape.some((n) => !Number.isInteger(n) || n < 1)
  ) {
    throw invalidArgument(
      `${where}: shape [${String(shape)}] must be [D, N] (pooled) or [D, H, W, C] (raw NHWC)`,
      ctx,
    );
  }
  if (shape[0] !== probeImages) {
    throw invalidArgument(
      `${where}: first dimension ${shape[0]} must equal the probe bundle's ${probeImages} images`,
      ctx,
      'compute activations on every probe image of the bundle, in bundle order',
    );
  }
  const width = shape[shape.length - 1];
  if (width !== decl.width) {
    throw invalidArgument(
      `${where}: last dimension ${width} does not match the declared width ${decl.width}`,
      ctx,
    );
  }
}

/** Whether a layer's finiteness shows in its pooled values: raw NHWC, average-pooled (a NaN or Inf makes its mean NaN or Inf). */
export function finiteAfterPooling(layer: Pick<LayerActivations, 'shape' | 'pooling'>): boolean {
  return layer.shape.length === 4 && (layer.pooling ?? 'avg') === 'avg';
}

/** Whether any value is NaN or +-Inf (one comparison per value). */
export function hasNonFinite(data: Float32Array): boolean {
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v - v !== 0) return true;
  }
  return false;
}

/** NaN or +-Inf anywhere -> an error naming the layer, the flat index and the index per dimension. */
export function assertFinite(runId: string, step: number, layer: LayerActivations): void {
  const d = layer.data;
  for (let i = 0; i < d.length; i++) {
    const v = d[i];
    // v - v is NaN for NaN and +-Inf: one comparison per value in the hot loop.
    if (v - v !== 0) {
      const index = unravel(i, layer.shape);
      throw invalidArgument(
        `run ${runId} step ${step} layer ${layer.layer}: value ${v} at index ${i} ([${index.join(', ')}]) is not finite`,
        { runId, step, layer: layer.layer, index: i, position: index },
        'check the training loss for divergence; activations must be finite',
      );
    }
  }
}

function unravel(flat: number, shape: readonly number[]): number[] {
  const out = new Array<number>(shape.length).fill(0);
  let rest = flat;
  for (let k = shape.length - 1; k >= 0; k--) {
    out[k] = rest % shape[k];
    rest = Math.floor(rest / shape[k]);
  }
  return out;
}
