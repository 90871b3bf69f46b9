/**
 * The receiving half of the chunk encoding (wire.ts checkpointToWire): a layer's ActivationChunks
 * copied, in place, into one buffer of total_bytes allocated up front, with the checks that make a
 * stream's bytes trustworthy — header known and consistent across chunks, total_bytes matching the
 * shape, offsets in order, nothing beyond total_bytes. Every failure is INVALID_ARGUMENT naming the
 * layer (`where`), which the service sends back as the stream's status.
 *
 * What the receiver's state decides (the run's declared layers, the step order, memory bounds)
 * stays with the receiver (libs/concept-server session.ts); this module only knows the contract.
 */
import { invalidArgument } from '@cm/core';
import type { LayerActivations } from '@cm/contracts';
import type { WireActivationChunk } from './types';
import { bytesPerValue, decodeFloats } from './wire';

/**
 * Check the header of a layer's first chunk: dtype and pooling are values this end knows (an enum
 * value it does not know is refused, not read as a default) and total_bytes is product(shape) x the
 * dtype's size. Returns the layer's byte size.
 */
export function validateChunkHeader(c: WireActivationChunk, where: string): number {
  if (c.dtype !== 'DTYPE_FLOAT32' && c.dtype !== 'DTYPE_FLOAT16' && c.dtype !== 'DTYPE_UNSPECIFIED') {
    throw invalidArgument(`${where}: dtype ${String(c.dtype)} is not float32 or float16`);
  }
  if (c.pooling !== 'POOLING_AVG' && c.pooling !== 'POOLING_MAX' && c.pooling !== 'POOLING_UNSPECIFIED') {
    throw invalidArgument(`${where}: pooling ${String(c.pooling)} is not avg or max`);
  }
  const expected = c.shape.reduce((x, n) => x * n, 1) * bytesPerValue(c.dtype);
  if (c.totalBytes !== expected) {
    throw invalidArgument(
      `${where}: total_bytes ${c.totalBytes} does not match shape [${c.shape.join(', ')}] (${expected} bytes)`,
    );
  }
  return expected;
}

/**
 * Where a layer's bytes go instead of one buffer: told each chunk's payload, in offset order, once
 * the chunk passed the checks (a receiver that pools the layer as it arrives never holds it whole).
 */
export type LayerByteSink = (bytes: Uint8Array) => void;

/** One layer being reassembled from its chunks (or, with a sink, checked and passed on chunk by chunk). */
export class LayerAssembly {
  readonly header: WireActivationChunk;
  private readonly buffer?: Buffer;
  private readonly sink?: LayerByteSink;
  private filled = 0;

  /**
   * `header` is the layer's first chunk, already checked by validateChunkHeader (not yet appended).
   * With `sink`, no buffer is allocated: each chunk's payload goes to the sink (toActivations then
   * has nothing to give).
   */
  constructor(header: WireActivationChunk, sink?: LayerByteSink) {
    this.header = header;
    if (sink) this.sink = sink;
    else this.buffer = Buffer.allocUnsafe(header.totalBytes);
  }

  /** Bytes copied in so far. */
  get received(): number {
    return this.filled;
  }
  get totalBytes(): number {
    return this.header.totalBytes;
  }
  get complete(): boolean {
    return this.filled === this.header.totalBytes;
  }

  /**
   * Copy the chunk's payload in at its offset. Throws when the header changed within the layer,
   * the offset is not where the previous chunk ended, or the payload runs past total_bytes.
   * Returns true once the layer is complete.
   */
  append(c: WireActivationChunk, where: string): boolean {
    const h = this.header;
    if (
      c.totalBytes !== h.totalBytes ||
      c.dtype !== h.dtype ||
      c.pooling !== h.pooling ||
      c.shape.join(',') !== h.shape.join(',')
    ) {
      throw invalidArgument(
        `${where}: chunk header (shape, dtype, pooling, total_bytes) changed within the layer`,
      );
    }
    if (c.offset !== this.filled)
      throw invalidArgument(
        `${where}: chunk offset ${c.offset}, expected ${this.filled} (chunks must be sent in order)`,
      );
    if (this.filled + c.data.length > h.totalBytes)
      throw invalidArgument(`${where}: chunks exceed total_bytes ${h.totalBytes}`);
    if (this.sink) this.sink(c.data);
    else this.buffer!.set(c.data, this.filled);
    this.filled += c.data.length;
    return this.complete;
  }

  /** The complete layer as float32 activations (float16 is widened; float32 is a view of the buffer). */
  toActivations(): LayerActivations {
    if (!this.complete)
      throw invalidArgument(
        `layer ${this.header.layer}: ${this.filled} of ${this.header.totalBytes} bytes received`,
      );
    if (!this.buffer)
      throw invalidArgument(`layer ${this.header.layer}: its bytes went to a sink, not assembled here`);
    return {
      layer: this.header.layer,
      shape: [...this.header.shape],
      data: decodeFloats(this.buffer, this.header.dtype),
      pooling: this.header.pooling === 'POOLING_MAX' ? 'max' : 'avg',
    };
  }
}

/** Bytes a receiver holds for one layer: its wire buffer, plus the float32 copy a float16 layer is decoded into. */
export function layerHeldBytes(wireBytes: number, dtype: WireActivationChunk['dtype']): number {
  return dtype === 'DTYPE_FLOAT16' ? wireBytes * 3 : wireBytes;
}
