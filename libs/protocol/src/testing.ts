/**
 * Fixtures of the wire contract for tests (import '@cm/protocol/src/testing'; not exported from the
 * package index): hand-made messages that reach a server with what the SDK's encoder would never
 * send (a chunk out of order, short, oversized, with an unknown enum value ...).
 */
import type { WireActivationChunk } from './types';

const BYTES_PER_VALUE = { DTYPE_FLOAT32: 4, DTYPE_FLOAT16: 2, DTYPE_UNSPECIFIED: 4 } as const;

/**
 * One ActivationChunk: by default the whole of a pooled float32 layer 'fc' [120, 6] at step 0 (avg
 * pooling), zero-filled. `totalBytes` follows `shape` and `dtype` and `data` is the whole layer
 * unless given; every other field given replaces its default as it is.
 */
export function testChunk(over: Partial<WireActivationChunk> = {}): WireActivationChunk {
  const shape = over.shape ?? [120, 6];
  const dtype = over.dtype ?? 'DTYPE_FLOAT32';
  const totalBytes = over.totalBytes ?? shape.reduce((a, b) => a * b, 1) * (BYTES_PER_VALUE[dtype] ?? 4);
  return {
    step: 0,
    layer: 'fc',
    pooling: 'POOLING_AVG',
    offset: 0,
    ...over,
    shape,
    dtype,
    totalBytes,
    data: over.data ?? Buffer.alloc(totalBytes),
  };
}
