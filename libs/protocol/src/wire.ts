/**
 * The pure conversions between contract objects (@cm/contracts) and wire messages, and the chunk
 * encoder: how a checkpoint becomes the messages that carry it. The client and the concept server
 * both use this module, so the two ends cannot drift apart.
 */
import { invalidArgument } from '@cm/core';
import type { CheckpointData, CheckpointResult, RunSpec } from '@cm/contracts';
import { float16ToFloat32, float32ToFloat16 } from './float16';
import type {
  TrainerMessage,
  WireActivationChunk,
  WireCheckpointAck,
  WireDType,
  WirePooling,
  WireRunStart,
} from './types';

/** Default chunk payload: a quarter of gRPC's 4 MiB default message limit. */
export const DEFAULT_CHUNK_BYTES = 1024 * 1024;

export function runStartToWire(spec: RunSpec, resume: boolean, startToken = ''): TrainerMessage {
  return {
    runStart: {
      runId: spec.runId,
      model: spec.model,
      paradigm: spec.paradigm,
      bundleId: spec.bundleId,
      layers: spec.layers.map((l) => ({
        name: l.name,
        width: l.width,
        kind: l.kind === 'conv' ? 'LAYER_KIND_CONV' : 'LAYER_KIND_DENSE',
      })),
      tags: { ...spec.tags },
      resume,
      startToken,
    },
  };
}

export function runStartFromWire(m: WireRunStart): RunSpec {
  return {
    runId: m.runId,
    model: m.model,
    paradigm: m.paradigm,
    bundleId: m.bundleId,
    layers: m.layers.map((l) => ({
      name: l.name,
      width: l.width,
      kind: l.kind === 'LAYER_KIND_CONV' ? 'conv' : 'dense',
    })),
    tags: { ...m.tags },
  };
}

export type WireFloat = 'float32' | 'float16';

/**
 * Encode a checkpoint as the messages that carry it: each layer's tensor in chunks of at most
 * `chunkBytes` payload bytes, then CheckpointEnd. The data is copied (a trainer may reuse its
 * arrays as soon as sendCheckpoint returns).
 */
export function checkpointToWire(
  cp: CheckpointData,
  dtype: WireFloat,
  chunkBytes = DEFAULT_CHUNK_BYTES,
): TrainerMessage[] {
  if (!Number.isInteger(cp.step) || cp.step < 0)
    throw invalidArgument(`checkpoint step must be a non-negative integer, got ${cp.step}`);
  if (chunkBytes < 1024) throw invalidArgument(`chunkBytes must be at least 1024, got ${chunkBytes}`);
  const out: TrainerMessage[] = [];
  for (const layer of cp.layers) {
    const expected = layer.shape.reduce((a, n) => a * n, 1);
    if (expected !== layer.data.length) {
      throw invalidArgument(
        `layer ${layer.layer}: shape [${layer.shape.join(', ')}] holds ${expected} values, data has ${layer.data.length}`,
        { layer: layer.layer, step: cp.step },
      );
    }
    const bytes = encodeFloats(layer.data, dtype);
    const wireDType: WireDType = dtype === 'float16' ? 'DTYPE_FLOAT16' : 'DTYPE_FLOAT32';
    const pooling: WirePooling = layer.pooling === 'max' ? 'POOLING_MAX' : 'POOLING_AVG';
    // Keep chunk boundaries on value boundaries (not needed by the receiver, but makes dumps readable).
    const step = chunkBytes - (chunkBytes % 4);
    let offset = 0;
    do {
      const data = bytes.subarray(offset, Math.min(offset + step, bytes.length));
      const chunk: WireActivationChunk = {
        step: cp.step,
        layer: layer.layer,
        shape: [...layer.shape],
        dtype: wireDType,
        pooling,
        offset,
        totalBytes: bytes.length,
        data,
      };
      out.push({ chunk });
      offset += data.length;
    } while (offset < bytes.length);
  }
  out.push({ checkpointEnd: { step: cp.step, metrics: { ...cp.metrics } } });
  return out;
}

function encodeFloats(data: Float32Array, dtype: WireFloat): Buffer {
  if (dtype === 'float16') {
    const half = float32ToFloat16(data);
    return Buffer.from(half.buffer, half.byteOffset, half.byteLength);
  }
  // Copy: Buffer.from(arrayBuffer) would alias the trainer's memory.
  const copy = Buffer.allocUnsafe(data.byteLength);
  copy.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return copy;
}

/** Decode a whole layer's bytes (little-endian) into float32 values. */
export function decodeFloats(bytes: Uint8Array, dtype: WireDType): Float32Array {
  if (dtype === 'DTYPE_FLOAT16') {
    const aligned = bytes.byteOffset % 2 === 0 ? bytes : Uint8Array.from(bytes);
    return float16ToFloat32(new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2));
  }
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : Uint8Array.from(bytes);
  return new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4);
}

export function bytesPerValue(dtype: WireDType): number {
  return dtype === 'DTYPE_FLOAT16' ? 2 : 4;
}

export function resultToWire(r: CheckpointResult): WireCheckpointAck {
  return {
    step: r.step,
    layers: r.layers.map(({ learnedFraction, ...l }) => ({
      ...l,
      // proto3 doubles have no "absent": the flag says whether the figure is known
      learnedFraction: typeof learnedFraction === 'number' ? learnedFraction : 0,
      hasLearnedFraction: typeof learnedFraction === 'number',
      topConcepts: l.topConcepts.map((c) => ({ ...c })),
    })),
    alerts: r.alerts.map((a) => ({ ...a })),
  };
}

export function resultFromWire(a: WireCheckpointAck): CheckpointResult {
  return {
    step: a.step,
    layers: a.layers.map((l) => ({
      layer: l.layer,
      learnedFraction: l.hasLearnedFraction ? l.learnedFraction : null,
      interpretableFraction: l.interpretableFraction,
      distinctConceptShare: l.distinctConceptShare,
      labelEntropy: l.labelEntropy,
      topConcepts: l.topConcepts.map((c) => ({ concept: c.concept, count: c.count })),
    })),
    alerts: a.alerts.map((x) => ({
      layer: x.layer,
      rule: x.rule,
      state: x.state === 'resolved' ? 'resolved' : 'firing',
      message: x.message,
    })),
  };
}

/** Byte size of the activation payload a message list carries (for memory accounting). */
export function payloadBytes(messages: readonly TrainerMessage[]): number {
  let n = 0;
  for (const m of messages) if ('chunk' in m && m.chunk) n += m.chunk.data.length + 64;
  return n + 256;
}
