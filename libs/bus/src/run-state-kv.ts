/**
 * The concept service's run-state store: a JetStream key-value bucket (RUN_STATE_BUCKET of
 * @cm/contracts, history 1), one key per run. Every replica of the service reads and writes the
 * same bucket, so a trainer that reconnects to a restarted or another replica carries its run on
 * there. Implements the RunStateStore seam of @cm/engine (structurally: the bus does not depend on
 * the engine).
 *
 * Values are JSON (inspectable with `nats kv get`), with every top-1 array as base64 of its
 * little-endian Int32 bytes: a 4096-neuron layer is 22 KB instead of ~40 KB of JSON numbers.
 */
import { nanos, type KV } from 'nats';
import { z } from 'zod';
import { RUN_STATE_BUCKET, runStateKey, type PersistedRunState, type RunCarry } from '@cm/contracts';
import { CmError, createLogger, errorMessage } from '@cm/core';
import type { Bus } from './bus';
import { bucketReplicas, bucketValueLimit, openBucket } from './kv-bucket';

const log = createLogger('bus');

/** Version of the value format; a value of another version is refused as CORRUPT. */
export const RUN_STATE_FORMAT = 1;

export interface RunStateKvOptions {
  /** Bucket replicas (CM_NATS_REPLICAS: 1 locally, 3 in a NATS cluster). */
  replicas?: number;
  /**
   * Drop a run's state this long after its last save (a run abandoned without RunEnd); 0 = keep
   * until the run ends. Changing it updates an existing bucket.
   */
  ttlMs?: number;
  /** Largest value written; default the server's max_payload less room for headers. */
  maxValueBytes?: number;
}

export interface RunStateKv {
  readonly kv: KV;
  load(runId: string): Promise<PersistedRunState | undefined>;
  save(runId: string, state: PersistedRunState): Promise<void>;
  delete(runId: string): Promise<void>;
}

// ---- codec (pure) ----

const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function int32ToBase64(a: Int32Array): string {
  const bytes = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  // every platform Node runs on today is little-endian; the swap keeps the format defined anyway
  return (littleEndian ? bytes : Buffer.from(bytes).swap32()).toString('base64');
}

function base64ToInt32(text: string, where: string): Int32Array {
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length % 4 !== 0)
    throw new Error(`${where}: ${bytes.length} bytes is not a whole number of int32`);
  const copy = Buffer.from(bytes); // own, aligned buffer
  if (!littleEndian) copy.swap32();
  return new Int32Array(copy.buffer, copy.byteOffset, copy.length / 4);
}

const ruleState = z.object({
  firing: z.boolean(),
  streak: z.number().int().min(0),
  alertId: z.string().optional(),
});
const layerState = z.object({
  lastStep: z.number().int(),
  diversityHistory: z.array(z.number()),
  interpretableHistory: z.array(z.number()),
  rules: z.record(z.string(), ruleState),
});
const carrySchema = z.object({
  top1: z.record(z.string(), z.string()),
  detector: z.record(z.string(), layerState).optional(),
});
const valueSchema = z.object({
  format: z.literal(RUN_STATE_FORMAT),
  spec: z.object({
    runId: z.string(),
    model: z.string(),
    paradigm: z.string(),
    bundleId: z.string(),
    layers: z.array(z.object({ name: z.string(), width: z.number().int(), kind: z.enum(['conv', 'dense']) })),
    tags: z.record(z.string(), z.string()),
  }),
  record: z.object({
    kind: z.literal('run'),
    runId: z.string(),
    model: z.string(),
    paradigm: z.string(),
    bundleId: z.string(),
    layers: z.array(z.object({ name: z.string(), width: z.number() })),
    tags: z.record(z.string(), z.string()),
    status: z.enum(['running', 'completed', 'failed']),
    startedAt: z.string(),
    endedAt: z.string().optional(),
    time: z.string(),
  }),
  lastStep: z.number().int().min(-1),
  current: carrySchema,
  recent: z.array(z.object({ step: z.number().int().min(0), before: carrySchema })),
});

function carryToJson(c: RunCarry): z.infer<typeof carrySchema> {
  const top1: Record<string, string> = {};
  for (const [layer, a] of Object.entries(c.top1)) top1[layer] = int32ToBase64(a);
  return c.detector === undefined ? { top1 } : { top1, detector: c.detector };
}

function carryFromJson(c: z.infer<typeof carrySchema>, where: string): RunCarry {
  const top1: Record<string, Int32Array> = {};
  for (const [layer, text] of Object.entries(c.top1))
    top1[layer] = base64ToInt32(text, `${where} layer ${layer}`);
  return c.detector === undefined ? { top1 } : { top1, detector: c.detector };
}

/** The bucket value of a run state (JSON bytes). */
export function encodeRunState(state: PersistedRunState): Uint8Array {
  const value = {
    format: RUN_STATE_FORMAT,
    spec: state.spec,
    record: state.record,
    lastStep: state.lastStep,
    current: carryToJson(state.current),
    recent: state.recent.map((r) => ({ step: r.step, before: carryToJson(r.before) })),
  };
  return new TextEncoder().encode(JSON.stringify(value));
}

/** Parse and check a bucket value; anything malformed is CORRUPT, naming the run and the problem. */
export function decodeRunState(bytes: Uint8Array, runId: string): PersistedRunState {
  const corrupt = (what: string, cause?: unknown): CmError =>
    new CmError('CORRUPT', `saved state of run ${runId} (bucket ${RUN_STATE_BUCKET.name}): ${what}`, {
      context: { runId, bucket: RUN_STATE_BUCKET.name, key: runStateKey(runId) },
      cause,
      hint: `delete it (nats kv del ${RUN_STATE_BUCKET.name} ${runStateKey(runId)}) to restart the run without its history`,
    });
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw corrupt(`not JSON: ${errorMessage(e)}`, e);
  }
  const parsed = valueSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw corrupt(`${issue.path.join('.') || 'value'}: ${issue.message}`);
  }
  const v = parsed.data;
  if (v.spec.runId !== runId) throw corrupt(`it belongs to run ${v.spec.runId}`);
  try {
    return {
      spec: v.spec,
      record: v.record,
      lastStep: v.lastStep,
      current: carryFromJson(v.current, 'current'),
      recent: v.recent.map((r) => ({ step: r.step, before: carryFromJson(r.before, `step ${r.step}`) })),
    };
  } catch (e) {
    throw corrupt(errorMessage(e), e);
  }
}

/**
 * Encode within `maxBytes`: the resend history (`recent`) is dropped oldest first until the value
 * fits (a checkpoint resent after a restart beyond what was kept is then refused, not miscomputed);
 * a state that does not fit even without history is RESOURCE_EXHAUSTED.
 */
export function encodeRunStateWithin(state: PersistedRunState, maxBytes: number): Uint8Array {
  let recent = state.recent;
  for (;;) {
    const bytes = encodeRunState(recent === state.recent ? state : { ...state, recent });
    if (bytes.byteLength <= maxBytes) return bytes;
    if (recent.length === 0) {
      throw new CmError(
        'RESOURCE_EXHAUSTED',
        `state of run ${state.spec.runId} is ${bytes.byteLength} bytes, over the ${maxBytes}-byte value limit of bucket ${RUN_STATE_BUCKET.name}`,
        {
          context: { runId: state.spec.runId, bytes: bytes.byteLength, maxBytes },
          hint: 'raise NATS max_payload (the state holds one int32 per monitored neuron)',
        },
      );
    }
    recent = recent.slice(1);
  }
}

// ---- the store ----

/** Open (creating if needed) the run-state bucket on a connected bus. */
export async function openRunStateKv(
  bus: Pick<Bus, 'js' | 'jsm' | 'nc'>,
  opts: RunStateKvOptions = {},
): Promise<RunStateKv> {
  const replicas = bucketReplicas('run-state', opts.replicas);
  const ttlMs = opts.ttlMs ?? 0;
  if (!(ttlMs >= 0) || !Number.isFinite(ttlMs))
    throw new CmError('INVALID_ARGUMENT', `run-state TTL must be >= 0 ms, got ${ttlMs}`);
  const kv = await openBucket(
    bus,
    'run-state',
    RUN_STATE_BUCKET,
    { replicas, ...(ttlMs > 0 ? { ttl: ttlMs } : {}) },
    async () => {
      // An existing bucket keeps its configuration: bring its TTL to the configured one.
      const streamName = `KV_${RUN_STATE_BUCKET.name}`;
      const info = await bus.jsm.streams.info(streamName);
      if (info.config.max_age !== nanos(ttlMs)) {
        await bus.jsm.streams.update(streamName, { ...info.config, max_age: nanos(ttlMs) });
        log.info('run-state bucket TTL updated', { bucket: RUN_STATE_BUCKET.name, ttlMs });
      }
    },
  );
  const maxValueBytes = bucketValueLimit(bus, opts.maxValueBytes);

  return {
    kv,
    async load(runId) {
      const entry = await kv.get(runStateKey(runId));
      if (!entry || entry.operation !== 'PUT' || entry.value.length === 0) return undefined;
      return decodeRunState(entry.value, runId);
    },
    async save(runId, state) {
      if (state.spec.runId !== runId)
        throw new CmError('INVALID_ARGUMENT', `state of run ${state.spec.runId} saved under run ${runId}`);
      await kv.put(runStateKey(runId), encodeRunStateWithin(state, maxValueBytes));
    },
    async delete(runId) {
      // purge: no history of an ended run is kept, only the server's purge marker
      await kv.purge(runStateKey(runId));
    },
  };
}
