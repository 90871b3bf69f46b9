/**
 * The concept service's random-init baselines (the learned-concept figure, docs/dissect.md): a
 * JetStream key-value bucket (BASELINE_BUCKET of @cm/contracts) that every replica reads and
 * writes, so a run has one baseline whichever replica dissects it. Implements the BaselineStore
 * seam of @cm/engine structurally (the bus does not depend on the engine).
 *
 * Keys (see @cm/contracts baselines.ts), each written once with `create` (the first value stays):
 *   <key>.init.<index>.<layer>  one layer of one dissected random initialisation (baselineLayerToJson)
 *   <key>.complete              which inits and layers make the complete baseline
 * One value per layer keeps each well under NATS's max_payload (a 4096-neuron layer over 20 000
 * concepts is ~160 KB of JSON); the complete baseline is read back from the init values, so every
 * replica that loads it gets the same numbers. No TTL: a baseline serves every later run of its
 * architecture.
 */
import type { KV } from 'nats';
import {
  BASELINE_BUCKET,
  baselineCompleteKey,
  baselineInitKey,
  baselineLayerFromJson,
  baselineLayerToJson,
  type BaselineLayer,
  type DecodedBaselineLayer,
} from '@cm/contracts';
import { CmError, errorMessage } from '@cm/core';
import type { Bus } from './bus';
import { bucketReplicas, bucketValueLimit, openBucket } from './kv-bucket';

/** Version of the value format; a value of another version is refused as CORRUPT. */
export const BASELINE_FORMAT = 1;

export interface BaselineKvOptions {
  /** Bucket replicas (CM_NATS_REPLICAS: 1 locally, 3 in a NATS cluster). */
  replicas?: number;
  /** Largest value written; default the server's max_payload less room for headers. */
  maxValueBytes?: number;
}

/** A complete baseline (StoredBaseline of @cm/engine). */
export interface KvBaseline<L extends BaselineLayer = BaselineLayer> {
  key: string;
  bundleId: string;
  model: string;
  inits: number;
  layers: Record<string, L[]>;
}

export interface BaselineKv {
  readonly kv: KV;
  load(key: string): Promise<KvBaseline<DecodedBaselineLayer> | undefined>;
  saveInit(key: string, index: number, init: Record<string, BaselineLayer>): Promise<void>;
  loadInits(
    key: string,
    indices: readonly number[],
    layers: readonly string[],
  ): Promise<Map<number, Record<string, DecodedBaselineLayer>>>;
  save(baseline: KvBaseline): Promise<KvBaseline<DecodedBaselineLayer>>;
}

const encode = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value));

/** Open (creating if needed) the baseline bucket on a connected bus. */
export async function openBaselineKv(
  bus: Pick<Bus, 'js' | 'nc'>,
  opts: BaselineKvOptions = {},
): Promise<BaselineKv> {
  const replicas = bucketReplicas('baseline', opts.replicas);
  const kv = await openBucket(bus, 'baseline', BASELINE_BUCKET, { replicas });
  const maxValueBytes = bucketValueLimit(bus, opts.maxValueBytes);

  const corrupt = (k: string, what: string, cause?: unknown): CmError =>
    new CmError('CORRUPT', `random-init baseline ${k} (bucket ${BASELINE_BUCKET.name}): ${what}`, {
      context: { bucket: BASELINE_BUCKET.name, key: k },
      cause,
      hint: `delete the architecture's keys (nats kv del ${BASELINE_BUCKET.name} <key>...): the next run computes the baseline again`,
    });

  async function getJson(k: string): Promise<Record<string, unknown> | undefined> {
    const entry = await kv.get(k);
    if (!entry || entry.operation !== 'PUT' || entry.value.length === 0) return undefined;
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder().decode(entry.value));
    } catch (e) {
      throw corrupt(k, `not JSON: ${errorMessage(e)}`, e);
    }
    if (!json || typeof json !== 'object' || (json as { format?: unknown }).format !== BASELINE_FORMAT)
      throw corrupt(k, `not a baseline value of format ${BASELINE_FORMAT}`);
    return json as Record<string, unknown>;
  }

  /** Write once: a value already there (another replica's) stays, and that is not an error. */
  async function putOnce(k: string, value: Uint8Array): Promise<void> {
    if (value.byteLength > maxValueBytes)
      throw new CmError(
        'RESOURCE_EXHAUSTED',
        `random-init baseline value ${k} is ${value.byteLength} bytes, over the ${maxValueBytes}-byte value limit of bucket ${BASELINE_BUCKET.name}`,
        {
          context: { key: k, bytes: value.byteLength, maxBytes: maxValueBytes },
          hint: 'raise NATS max_payload (a value holds one layer of one initialisation: 9 bytes per neuron, 4 per concept, as base64)',
        },
      );
    try {
      await kv.create(k, value);
    } catch (e) {
      const existing = await kv.get(k);
      if (existing?.operation === 'PUT') return;
      throw e;
    }
  }

  async function readLayer(
    key: string,
    index: number,
    layer: string,
  ): Promise<DecodedBaselineLayer | undefined> {
    const k = baselineInitKey(key, index, layer);
    const json = await getJson(k);
    if (!json) return undefined;
    if (json.key !== key || json.index !== index || json.layer !== layer)
      throw corrupt(
        k,
        `it holds layer ${String(json.layer)} of init ${String(json.index)} of ${String(json.key)}`,
      );
    try {
      return baselineLayerFromJson(json, `layer ${layer} init ${index}`);
    } catch (e) {
      throw corrupt(k, errorMessage(e), e);
    }
  }

  async function loadInits(
    key: string,
    indices: readonly number[],
    layers: readonly string[],
  ): Promise<Map<number, Record<string, DecodedBaselineLayer>>> {
    const found = await Promise.all(
      indices.map(async (index) => {
        const read = await Promise.all(layers.map((l) => readLayer(key, index, l)));
        if (read.some((l) => l === undefined)) return undefined;
        return [
          index,
          Object.fromEntries(layers.map((l, k) => [l, read[k] as DecodedBaselineLayer])),
        ] as const;
      }),
    );
    return new Map(found.filter((f) => f !== undefined));
  }

  async function load(key: string): Promise<KvBaseline<DecodedBaselineLayer> | undefined> {
    const k = baselineCompleteKey(key);
    const json = await getJson(k);
    if (!json) return undefined;
    const { inits, layers, bundleId, model } = json;
    if (
      json.key !== key ||
      !Number.isInteger(inits) ||
      !Array.isArray(layers) ||
      !layers.every((l) => typeof l === 'string') ||
      typeof bundleId !== 'string' ||
      typeof model !== 'string'
    )
      throw corrupt(k, 'not a complete-baseline record of this key');
    const names = layers as string[];
    const indices = Array.from({ length: inits as number }, (_, i) => i);
    const kept = await loadInits(key, indices, names);
    const missing = indices.filter((i) => !kept.has(i));
    if (missing.length > 0) throw corrupt(k, `complete, but init(s) ${missing.join(', ')} are missing`);
    return {
      key,
      bundleId,
      model,
      inits: inits as number,
      layers: Object.fromEntries(names.map((l) => [l, indices.map((i) => kept.get(i)![l])])),
    };
  }

  async function saveInit(key: string, index: number, init: Record<string, BaselineLayer>): Promise<void> {
    await Promise.all(
      Object.entries(init).map(([layer, l]) =>
        putOnce(
          baselineInitKey(key, index, layer),
          encode({ format: BASELINE_FORMAT, key, index, layer, ...baselineLayerToJson(l) }),
        ),
      ),
    );
  }

  async function save(baseline: KvBaseline): Promise<KvBaseline<DecodedBaselineLayer>> {
    const layers = Object.keys(baseline.layers);
    const indices = Array.from({ length: baseline.inits }, (_, i) => i);
    // the inits it is made of are in the bucket already when the engine saves (saveInit); any other is written now
    const present = await loadInits(baseline.key, indices, layers);
    for (const index of indices.filter((i) => !present.has(i)))
      await saveInit(
        baseline.key,
        index,
        Object.fromEntries(layers.map((l) => [l, baseline.layers[l][index]])),
      );
    await putOnce(
      baselineCompleteKey(baseline.key),
      encode({
        format: BASELINE_FORMAT,
        key: baseline.key,
        bundleId: baseline.bundleId,
        model: baseline.model,
        inits: baseline.inits,
        layers,
      }),
    );
    // what every replica loads: the first complete record, over the first value of each init
    const kept = await load(baseline.key);
    if (!kept) throw corrupt(baselineCompleteKey(baseline.key), 'written, but not there when read back');
    return kept;
  }

  return { kv, load, loadInits, saveInit, save };
}
